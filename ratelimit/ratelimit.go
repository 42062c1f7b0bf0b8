// Package ratelimit decides whether an API key may make one more request:
// a limit per minute and, when set, quotas per hour and per day. Memory
// keeps the budgets in this process; Redis shares them between every
// replica; Fallback asks Redis and answers from memory while Redis does
// not. The domain (keys) owns what a key's limits are; this package only
// counts.
//
// Every window is a GCRA (generic cell rate algorithm), the arithmetic of a
// token bucket kept as one timestamp: a window of N requests per period
// holds N at most, may spend them at once, and gets one back every
// period/N. Memory and Redis compute the same thing; Redis with its own
// clock, through github.com/go-redis/redis_rate.
package ratelimit

import (
	"context"
	"time"
)

// Window is one of the periods a key's requests are counted over.
type Window uint8

const (
	Minute Window = iota
	Hour
	Day
)

// windows lists every window, shortest first: the order they are spent in.
var windows = [...]Window{Minute, Hour, Day}

// String names the window as the RateLimit-Policy header does.
func (w Window) String() string {
	switch w {
	case Hour:
		return "hour"
	case Day:
		return "day"
	}
	return "minute"
}

// Period is the window's length.
func (w Window) Period() time.Duration {
	switch w {
	case Hour:
		return time.Hour
	case Day:
		return 24 * time.Hour
	}
	return time.Minute
}

// Limits is what one key may spend: PerMinute always, PerHour and PerDay
// when the key has those quotas (0: none).
type Limits struct {
	PerMinute int
	PerHour   int
	PerDay    int
}

// Of is the limit of window w, 0 when the key has none.
func (l Limits) Of(w Window) int {
	switch w {
	case Hour:
		return l.PerHour
	case Day:
		return l.PerDay
	}
	return l.PerMinute
}

// Decision is a limiter's answer for one request. Limit, Remaining and
// Reset describe the tightest window: the one that refused the request, or
// the one with the fewest requests left.
type Decision struct {
	Allowed    bool
	Window     Window
	Limit      int           // of Window
	Remaining  int           // requests Window allows now
	Reset      time.Duration // until Window is full again
	RetryAfter time.Duration // when refused: until the request would be allowed
}

// Limiter decides whether a key may make one more request, and spends it
// in every window if so. A refused request spends nothing (Redis states
// its one exception). now is the time for limiters that keep their own
// clock; Redis uses its server's.
type Limiter interface {
	Take(ctx context.Context, keyID int64, l Limits, now time.Time) (Decision, error)
}

// standing is one window's answer, before the tightest is chosen.
type standing struct {
	window     Window
	limit      int
	allowed    bool
	remaining  int
	reset      time.Duration
	retryAfter time.Duration
}

// tightest picks the window the headers describe, from standings listed
// shortest window first: the first that refused (Retry-After says when it
// has room; a longer window may still refuse then, and its own 429 says
// so); else the one with the fewest requests left, and on a tie the one
// with the longer wait until full, since a client that waits that long
// finds every window full.
func tightest(s []standing) Decision {
	if len(s) == 0 {
		return Decision{Allowed: true}
	}
	b := s[0]
	for _, w := range s[1:] {
		if !b.allowed {
			break
		}
		if !w.allowed || w.remaining < b.remaining || w.remaining == b.remaining && w.reset > b.reset {
			b = w
		}
	}
	d := Decision{Allowed: b.allowed, Window: b.window, Limit: b.limit, Remaining: b.remaining, Reset: b.reset}
	if !b.allowed {
		d.Remaining, d.RetryAfter = 0, b.retryAfter
	}
	return d
}
