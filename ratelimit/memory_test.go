package ratelimit_test

import (
	"testing"
	"time"

	"keysmith/ratelimit"
)

// Memory takes its time from the caller, so its arithmetic can be walked
// exactly: a window of N per period holds N and gets one back every
// period/N.
func TestMemoryWindowsOverTime(t *testing.T) {
	type step struct {
		at         time.Duration // since the first request
		allowed    bool
		window     ratelimit.Window
		limit      int
		remaining  int
		reset      time.Duration
		retryAfter time.Duration
	}
	min3 := ratelimit.Limits{PerMinute: 3}
	quota := ratelimit.Limits{PerMinute: 3, PerHour: 4}
	day := ratelimit.Limits{PerMinute: 2, PerDay: 2}
	cases := []struct {
		name   string
		limits ratelimit.Limits
		steps  []step
	}{
		{"a minute's budget at once, then one every 20 s", min3, []step{
			{0, true, ratelimit.Minute, 3, 2, 20 * time.Second, 0},
			{0, true, ratelimit.Minute, 3, 1, 40 * time.Second, 0},
			{0, true, ratelimit.Minute, 3, 0, time.Minute, 0},
			{0, false, ratelimit.Minute, 3, 0, time.Minute, 20 * time.Second},
			{19 * time.Second, false, ratelimit.Minute, 3, 0, 41 * time.Second, time.Second},
			{20 * time.Second, true, ratelimit.Minute, 3, 0, time.Minute, 0},
			{80 * time.Second, true, ratelimit.Minute, 3, 2, 20 * time.Second, 0},
		}},
		{"an hourly quota refuses while the minute has room", quota, []step{
			{0, true, ratelimit.Minute, 3, 2, 20 * time.Second, 0},
			{0, true, ratelimit.Minute, 3, 1, 40 * time.Second, 0},
			{0, true, ratelimit.Minute, 3, 0, time.Minute, 0},
			// A minute later the minute is full; the hour has 1 left (one
			// request back every 15 minutes, 1 minute's worth refilled).
			{time.Minute, true, ratelimit.Hour, 4, 0, 59 * time.Minute, 0},
			{time.Minute, false, ratelimit.Hour, 4, 0, 59 * time.Minute, 14 * time.Minute},
			{time.Minute, false, ratelimit.Hour, 4, 0, 59 * time.Minute, 14 * time.Minute},
			{15 * time.Minute, true, ratelimit.Hour, 4, 0, time.Hour, 0},
		}},
		{"a daily quota; on a tie the longer window", day, []step{
			{0, true, ratelimit.Day, 2, 1, 12 * time.Hour, 0},
			{0, true, ratelimit.Day, 2, 0, 24 * time.Hour, 0},
			{0, false, ratelimit.Minute, 2, 0, time.Minute, 30 * time.Second},
			{time.Minute, false, ratelimit.Day, 2, 0, 24*time.Hour - time.Minute, 12*time.Hour - time.Minute},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := ratelimit.NewMemory()
			for i, s := range tc.steps {
				d, err := m.Take(t.Context(), 1, tc.limits, epoch.Add(s.at))
				want := ratelimit.Decision{Allowed: s.allowed, Window: s.window, Limit: s.limit, Remaining: s.remaining, Reset: s.reset, RetryAfter: s.retryAfter}
				if err != nil || d != want {
					t.Fatalf("step %d at +%s:\n got %+v\nwant %+v", i+1, s.at, d, want)
				}
			}
		})
	}
}

// Changing a key's limit starts its window afresh, as Redis does (the
// limit is part of the Redis key); dropping a quota forgets it.
func TestMemoryLimitChangeStartsAfresh(t *testing.T) {
	m := ratelimit.NewMemory()
	for range 3 {
		m.Take(t.Context(), 1, ratelimit.Limits{PerMinute: 3, PerHour: 3}, epoch)
	}
	d, _ := m.Take(t.Context(), 1, ratelimit.Limits{PerMinute: 5, PerHour: 3}, epoch)
	if d.Allowed || d.Window != ratelimit.Hour {
		t.Fatalf("the hour, unchanged, is spent: %+v", d)
	}
	d, _ = m.Take(t.Context(), 1, ratelimit.Limits{PerMinute: 5}, epoch)
	if !d.Allowed || d.Window != ratelimit.Minute || d.Remaining != 4 {
		t.Fatalf("a new minute of 5 and no hour: %+v", d)
	}
	d, _ = m.Take(t.Context(), 1, ratelimit.Limits{PerMinute: 5, PerHour: 3}, epoch)
	if !d.Allowed || d.Window != ratelimit.Hour || d.Remaining != 2 {
		t.Fatalf("the hour quota set again starts full: %+v", d)
	}
}
