package ratelimit_test

import (
	"testing"
	"time"

	"keysmith/ratelimit"
	"keysmith/testutil"
)

var epoch = testutil.Epoch

// limiters runs fn on each implementation that keeps a budget: Memory,
// and Redis on KEYSMITH_TEST_REDIS_URL (skipped, saying why, without it).
// Redis keeps its own clock, so fn gets only what holds within a moment.
func limiters(t *testing.T, fn func(t *testing.T, l ratelimit.Limiter)) {
	t.Run("memory", func(t *testing.T) { fn(t, ratelimit.NewMemory()) })
	t.Run("redis", func(t *testing.T) { fn(t, newRedis(t, testutil.NewRedis(t))) })
}

func newRedis(t *testing.T, r testutil.Redis) *ratelimit.Redis {
	t.Helper()
	l, err := ratelimit.NewRedis(r.URL, r.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func take(t *testing.T, l ratelimit.Limiter, keyID int64, lim ratelimit.Limits) ratelimit.Decision {
	t.Helper()
	d, err := l.Take(t.Context(), keyID, lim, epoch)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// allowedInARow counts the requests allowed before the first refusal.
func allowedInARow(t *testing.T, l ratelimit.Limiter, keyID int64, lim ratelimit.Limits) (int, ratelimit.Decision) {
	t.Helper()
	for n := 0; n <= 1000; n++ {
		if d := take(t, l, keyID, lim); !d.Allowed {
			return n, d
		}
	}
	t.Fatal("never refused")
	return 0, ratelimit.Decision{}
}

func TestAMinuteLimitRefusesPastItsBudget(t *testing.T) {
	limiters(t, func(t *testing.T, l ratelimit.Limiter) {
		lim := ratelimit.Limits{PerMinute: 5}
		d := take(t, l, 1, lim)
		if !d.Allowed || d.Window != ratelimit.Minute || d.Limit != 5 || d.Remaining < 3 || d.Remaining > 4 || d.Reset <= 0 || d.Reset > time.Minute {
			t.Fatalf("first request: %+v", d)
		}
		n, d := allowedInARow(t, l, 1, lim)
		if n != 4 || d.Window != ratelimit.Minute || d.Limit != 5 || d.Remaining != 0 || d.RetryAfter <= 0 || d.RetryAfter > 12*time.Second {
			t.Fatalf("after the first, %d more allowed; refusal %+v", n, d)
		}
		if d := take(t, l, 2, lim); !d.Allowed {
			t.Fatal("another key shares the budget")
		}
	})
}

// A request refused by its hourly quota spends nothing of the minute.
func TestARefusedRequestSpendsNoOtherWindow(t *testing.T) {
	limiters(t, func(t *testing.T, l ratelimit.Limiter) {
		// Three requests spend 3 of the hour's 5; the minute limit then
		// changes, which starts the minute afresh, so the hour refuses
		// while the minute has room.
		if n, _ := allowedInARow(t, l, 7, ratelimit.Limits{PerMinute: 3, PerHour: 5}); n != 3 {
			t.Fatalf("%d allowed at 3 a minute", n)
		}
		both := ratelimit.Limits{PerMinute: 10, PerHour: 5}
		n, d := allowedInARow(t, l, 7, both)
		if n != 2 || d.Window != ratelimit.Hour || d.Limit != 5 || d.RetryAfter <= 0 || d.RetryAfter > 12*time.Minute {
			t.Fatalf("%d allowed before the hour refused; refusal %+v", n, d)
		}
		for range 5 {
			if d := take(t, l, 7, both); d.Allowed || d.Window != ratelimit.Hour {
				t.Fatalf("over the hourly quota: %+v", d)
			}
		}
		if n, _ := allowedInARow(t, l, 7, ratelimit.Limits{PerMinute: 10}); n != 8 {
			t.Fatalf("the minute has %d left after 2 allowed and 6 refused; want 8", n)
		}
	})
}

func TestTheTightestWindowIsReported(t *testing.T) {
	limiters(t, func(t *testing.T, l ratelimit.Limiter) {
		lim := ratelimit.Limits{PerMinute: 10, PerHour: 12, PerDay: 100}
		if d := take(t, l, 3, lim); d.Window != ratelimit.Minute || d.Limit != 10 {
			t.Fatalf("fresh key: %+v", d)
		}
		allowedInARow(t, l, 3, lim)
		// A fresh minute of 20: the hour, with 2 left, is now the tightest.
		lim.PerMinute = 20
		if d := take(t, l, 3, lim); !d.Allowed || d.Window != ratelimit.Hour || d.Limit != 12 || d.Remaining > 1 {
			t.Fatalf("hour nearly spent: %+v", d)
		}
		if d := take(t, l, 3, lim); !d.Allowed || d.Window != ratelimit.Hour || d.Remaining != 0 {
			t.Fatalf("hour spent: %+v", d)
		}
		if d := take(t, l, 3, lim); d.Allowed || d.Window != ratelimit.Hour || d.Limit != 12 {
			t.Fatalf("past the hour: %+v", d)
		}
		// A daily quota refuses as the hourly one does.
		if n, d := allowedInARow(t, l, 4, ratelimit.Limits{PerMinute: 5, PerDay: 7}); n != 5 || d.Window != ratelimit.Minute {
			t.Fatalf("%d allowed at 5 a minute; refusal %+v", n, d)
		}
		if n, d := allowedInARow(t, l, 4, ratelimit.Limits{PerMinute: 10, PerDay: 7}); n != 2 || d.Window != ratelimit.Day || d.Limit != 7 {
			t.Fatalf("%d allowed before the day refused; refusal %+v", n, d)
		}
	})
}
