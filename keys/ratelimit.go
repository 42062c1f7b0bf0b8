package keys

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Default rate limits per minute (SPEC §6); admins may set one per key.
const (
	DefaultSecretLimit      = 1000
	DefaultPublishableLimit = 100
)

// LimitFor is a key's limit per minute: its own, or its kind's default.
func LimitFor(kind string, own *int) int {
	if own != nil {
		return *own
	}
	if Kind(kind) == Publishable {
		return DefaultPublishableLimit
	}
	return DefaultSecretLimit
}

// Decision is a rate limiter's answer for one request, with what the
// RateLimit-* and Retry-After headers report.
type Decision struct {
	Allowed    bool
	Limit      int
	Remaining  int
	Reset      time.Duration // until the bucket is full again
	RetryAfter time.Duration // until the next request is allowed, when refused
}

// Limiter decides whether a key may make one more request. The in-memory
// one below serves one process; a shared store (Redis) can implement the
// same interface for replicas that must share one budget.
type Limiter interface {
	Take(keyID int64, perMinute int, now time.Time) Decision
}

// MemoryLimiter is a token bucket per key (golang.org/x/time/rate): a full
// minute's budget as burst, refilled evenly over the minute.
type MemoryLimiter struct {
	mu      sync.Mutex
	buckets map[int64]*bucket
}

type bucket struct {
	perMinute int
	lim       *rate.Limiter
}

// NewMemoryLimiter returns an empty limiter.
func NewMemoryLimiter() *MemoryLimiter { return &MemoryLimiter{buckets: map[int64]*bucket{}} }

// Take spends one token of the key's bucket if it has one.
func (m *MemoryLimiter) Take(keyID int64, perMinute int, now time.Time) Decision {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.buckets[keyID]
	if b == nil || b.perMinute != perMinute {
		b = &bucket{perMinute: perMinute, lim: rate.NewLimiter(rate.Limit(float64(perMinute)/60), perMinute)}
		b.lim.SetBurstAt(now, perMinute) // starts full at now, not at the zero time
		m.buckets[keyID] = b
	}
	d := Decision{Limit: perMinute}
	if b.lim.AllowN(now, 1) {
		d.Allowed = true
	} else {
		// One token comes back every 60/perMinute seconds.
		missing := 1 - b.lim.TokensAt(now)
		d.RetryAfter = time.Duration(missing * 60 / float64(perMinute) * float64(time.Second))
	}
	tokens := b.lim.TokensAt(now)
	d.Remaining = max(int(math.Floor(tokens)), 0)
	d.Reset = time.Duration((float64(perMinute) - tokens) * 60 / float64(perMinute) * float64(time.Second))
	return d
}
