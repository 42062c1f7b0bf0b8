package keys

import (
	"testing"
	"time"
)

func TestReminderStages(t *testing.T) {
	day := 24 * time.Hour
	created := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	exp := created.Add(30 * day)
	at := func(d time.Duration) time.Time { return exp.Add(d) }
	cases := []struct {
		name     string
		created  time.Time
		now      time.Time
		stage    Stage
		due      bool
		nextDiff time.Duration // next due, relative to expiry; -1 for none
	}{
		{"long before", created, at(-20 * day), "", false, -14 * day},
		{"14 days", created, at(-14 * day), Stage14d, true, -7 * day},
		{"10 days", created, at(-10 * day), Stage14d, true, -7 * day},
		{"catch-up at 3 days", created, at(-3 * day), Stage7d, true, -day},
		{"catch-up at 2 hours", created, at(-2 * time.Hour), Stage1d, true, 0},
		{"expired", created, at(time.Hour), StageExpired, true, -1},
		{"expired long ago", created, at(8 * day), "", false, -1},
		{"created with 10 days left", at(-10 * day), at(-9 * day), "", false, -7 * day},
		{"created with 10 days left, at 7", at(-10 * day), at(-7 * day), Stage7d, true, -day},
		{"created with exactly 7 days left", at(-7 * day), at(-7 * day), "", false, -day},
		{"created with 7 days and a few seconds left", at(-7*day - 5*time.Second), at(-7 * day), "", false, -day},
		{"created with exactly 7 days left, at 1", at(-7 * day), at(-day), Stage1d, true, 0},
		{"created with exactly 1 day left", at(-day), at(-day), "", false, 0},
	}
	for _, tc := range cases {
		stage, due, next := CurrentStage(tc.created, exp, tc.now)
		if stage != tc.stage || due != tc.due {
			t.Errorf("%s: stage %q due %v, want %q %v", tc.name, stage, due, tc.stage, tc.due)
		}
		switch {
		case tc.nextDiff == -1 && next != nil:
			t.Errorf("%s: next %s, want none", tc.name, next)
		case tc.nextDiff != -1 && (next == nil || !next.Equal(exp.Add(tc.nextDiff))):
			t.Errorf("%s: next %v, want expiry%+v", tc.name, next, tc.nextDiff)
		}
	}
	if FirstReminderAt(created, nil) != nil {
		t.Error("a key that never expires has a reminder")
	}
	if got := FirstReminderAt(exp.Add(-10*day), &exp); !got.Equal(exp.Add(-7 * day)) {
		t.Errorf("first reminder of a 10-day key: %s", got)
	}
	if got := FirstReminderAt(exp.Add(-7*day), &exp); !got.Equal(exp.Add(-day)) {
		t.Errorf("first reminder of a 7-day key: %s, want the 1-day one", got)
	}
}
