package ratelimit

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"keysmith/metrics"
)

// How Fallback treats Redis: each call gets Timeout at most; after a
// failure Redis is asked again once RetryEvery has passed (by Take's now),
// one request at a time, so an outage costs the other requests nothing.
const (
	Timeout    = 50 * time.Millisecond
	RetryEvery = time.Second
)

// Fallback is the limiter of replicas that share Redis: it asks Redis,
// and when Redis fails or is slow it answers from this process's Memory,
// so the API keeps answering. While Redis is away every replica counts on
// its own, so a key may make up to its limit on each. An outage is logged
// once when it starts and once when Redis is back, and every decision
// taken in memory is counted (keysmith_redis_fallbacks_total).
type Fallback struct {
	shared  *Redis
	local   *Memory
	log     *slog.Logger
	metrics *metrics.Metrics

	healthy atomic.Bool // the hot path's only shared read while Redis answers
	mu      sync.Mutex
	lastErr error     // why Redis is unhealthy
	retryAt time.Time // while unhealthy: when Take asks Redis again
}

// NewFallback returns a limiter that asks shared, else local. m may be nil.
func NewFallback(shared *Redis, local *Memory, log *slog.Logger, m *metrics.Metrics) *Fallback {
	f := &Fallback{shared: shared, local: local, log: log, metrics: m}
	f.healthy.Store(true)
	return f
}

// Take decides with Redis when it answers within Timeout, else in memory.
// It never fails.
func (f *Fallback) Take(ctx context.Context, keyID int64, l Limits, now time.Time) (Decision, error) {
	if f.ask(now) {
		rctx, cancel := context.WithTimeout(ctx, Timeout)
		d, err := f.shared.Take(rctx, keyID, l, now)
		cancel()
		if err == nil {
			f.answered()
			return d, nil
		}
		if ctx.Err() == nil { // Redis failed, not the request that ended
			f.failed(err, now.Add(RetryEvery))
		}
	}
	f.metrics.RedisFallback()
	return f.local.Take(ctx, keyID, l, now)
}

// ask reports whether this request should ask Redis: always while it
// answers; while it does not, one request once RetryEvery has passed.
func (f *Fallback) ask(now time.Time) bool {
	if f.healthy.Load() {
		return true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if now.Before(f.retryAt) {
		return false
	}
	f.retryAt = now.Add(RetryEvery)
	return true
}

func (f *Fallback) answered() {
	if f.healthy.Load() {
		return
	}
	f.mu.Lock()
	back := !f.healthy.Swap(true)
	f.lastErr = nil
	f.mu.Unlock()
	if back {
		f.log.Info("rate limits: Redis is back; limits are shared by every replica again")
	}
}

func (f *Fallback) failed(err error, retryAt time.Time) {
	f.mu.Lock()
	lost := f.healthy.Swap(false)
	f.lastErr = err
	if !retryAt.IsZero() {
		f.retryAt = retryAt
	}
	f.mu.Unlock()
	if lost {
		f.log.Warn("rate limits: Redis does not answer; each replica counts on its own until it does", "err", err)
	}
}

// Healthy reports whether Redis answered the last time it was asked.
func (f *Fallback) Healthy() bool { return f.healthy.Load() }

// Err is why Redis is unhealthy; nil while it answers.
func (f *Fallback) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastErr
}

// Ping asks Redis now (within Timeout), for /readyz, and records the
// answer as Take would.
func (f *Fallback) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	err := f.shared.Ping(ctx)
	if err != nil {
		f.failed(err, time.Time{})
		return err
	}
	f.answered()
	return nil
}

// Close closes the connections to Redis.
func (f *Fallback) Close() error { return f.shared.Close() }
