package ratelimit

import (
	"context"
	"sync"
	"time"
)

// Memory keeps every key's windows in this process: the limiter of a
// single process, and Fallback's while Redis does not answer. It checks
// every window of a request before spending any, under one lock, so a
// refused request spends nothing at all.
type Memory struct {
	mu   sync.Mutex
	keys map[int64]*[len(windows)]cell
}

// cell is one window of one key.
type cell struct {
	limit int       // what tat was counted for: a changed limit starts the window afresh
	tat   time.Time // GCRA's theoretical arrival time: when the window is full again
}

// NewMemory returns a limiter with every window full.
func NewMemory() *Memory { return &Memory{keys: map[int64]*[len(windows)]cell{}} }

// Take spends one request of each of the key's windows if every one has
// it, at now. It never fails.
func (m *Memory) Take(_ context.Context, keyID int64, l Limits, now time.Time) (Decision, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cells := m.keys[keyID]
	if cells == nil {
		cells = new([len(windows)]cell)
		m.keys[keyID] = cells
	}
	var st [len(windows)]standing
	var next [len(windows)]time.Time
	n, allowed := 0, true
	for _, w := range windows {
		c := &cells[w]
		limit := l.Of(w)
		if limit <= 0 {
			*c = cell{}
			continue
		}
		if c.limit != limit {
			*c = cell{limit: limit}
		}
		st[n], next[n] = gcra(w, limit, c.tat, now)
		allowed = allowed && st[n].allowed
		n++
	}
	if allowed {
		for i, s := range st[:n] {
			cells[s.window].tat = next[i]
		}
	}
	return tightest(st[:n]), nil
}

// gcra is one window's answer at now, given when it is full again (tat),
// and the tat it has if the request is spent. It is redis_rate's
// arithmetic with a burst of the whole limit, in whole nanoseconds.
func gcra(w Window, limit int, tat, now time.Time) (standing, time.Time) {
	interval := w.Period() / time.Duration(limit) // one request comes back every interval
	burst := interval * time.Duration(limit)      // the window's length, as the limit's multiple
	tat = later(tat, now)
	s := standing{window: w, limit: limit}
	if debt := tat.Sub(now) + interval; debt > burst {
		s.reset, s.retryAfter = tat.Sub(now), debt-burst
		return s, tat
	}
	next := tat.Add(interval)
	s.allowed = true
	s.reset = next.Sub(now)
	s.remaining = int((burst - s.reset) / interval)
	return s, next
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
