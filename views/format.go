package views

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Relative says how far t is from now in the words people use:
// "just now", "5 minutes ago", "in 3 days", "2 months ago", rounded to the
// nearest unit (47 hours is "2 days", not "1 day").
func Relative(t, now time.Time) string {
	d := now.Sub(t)
	future := d < 0
	if future {
		d = -d
	}
	var s string
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour-30*time.Second:
		s = plural(round(d, time.Minute), "minute")
	case d < 24*time.Hour-30*time.Minute:
		s = plural(round(d, time.Hour), "hour")
	case d < 45*24*time.Hour:
		s = plural(round(d, 24*time.Hour), "day")
	case d < 365*24*time.Hour:
		s = plural(round(d, 30*24*time.Hour), "month")
	default:
		s = plural(round(d, 365*24*time.Hour), "year")
	}
	if future {
		return "in " + s
	}
	return s + " ago"
}

// Exact is the full UTC timestamp shown on hover.
func Exact(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// Date is a short date, "2 Mar 2026".
func Date(t time.Time) string { return t.UTC().Format("2 Jan 2006") }

func round(d, unit time.Duration) int { return int((d + unit/2) / unit) }

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	if strings.HasSuffix(unit, "y") && !strings.HasSuffix(unit, "ay") && !strings.HasSuffix(unit, "ey") {
		return fmt.Sprintf("%d %sies", n, unit[:len(unit)-1])
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// Duration names a grace period: "immediately", "1 hour", "3 days".
func Duration(d time.Duration) string {
	switch {
	case d == 0:
		return "immediately"
	case d%(24*time.Hour) == 0:
		return plural(int(d/(24*time.Hour)), "day")
	case d%time.Hour == 0:
		return plural(int(d/time.Hour), "hour")
	default:
		return plural(int(d/time.Minute), "minute")
	}
}

// Thousands writes a count with a comma between groups of three digits:
// 12,345.
func Thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}
