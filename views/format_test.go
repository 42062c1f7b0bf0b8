package views

import (
	"testing"
	"time"
)

func TestRelative(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	cases := map[time.Duration]string{
		-10 * time.Second:                "just now",
		-time.Minute:                     "1 minute ago",
		-59 * time.Minute:                "59 minutes ago",
		-2 * time.Hour:                   "2 hours ago",
		-24 * time.Hour:                  "1 day ago",
		-44 * 24 * time.Hour:             "44 days ago",
		-90 * 24 * time.Hour:             "3 months ago",
		-800 * 24 * time.Hour:            "2 years ago",
		3 * 24 * time.Hour:               "in 3 days",
		89 * time.Minute:                 "in 1 hour",
		13*24*time.Hour + 23*time.Hour:   "in 14 days",
		47 * time.Hour:                   "in 2 days",
		25 * time.Hour:                   "in 1 day",
		-59*time.Minute - 50*time.Second: "1 hour ago",
	}
	for d, want := range cases {
		if got := Relative(now.Add(d), now); got != want {
			t.Errorf("Relative(now%+v) = %q, want %q", d, got, want)
		}
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "immediately", time.Hour: "1 hour", 24 * time.Hour: "1 day", 72 * time.Hour: "3 days", 15 * time.Minute: "15 minutes"} {
		if got := Duration(d); got != want {
			t.Errorf("Duration(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 50000: "50,000", 1234567: "1,234,567"} {
		if got := Thousands(n); got != want {
			t.Errorf("Thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
