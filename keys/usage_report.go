package keys

import (
	"context"
	"time"

	"keysmith/models"
)

// Granularity is the bucket size of a usage report.
type Granularity string

const (
	ByHour Granularity = "hour"
	ByDay  Granularity = "day"
)

// Step is the length of one bucket.
func (g Granularity) Step() time.Duration {
	if g == ByDay {
		return 24 * time.Hour
	}
	return time.Hour
}

// MaxUsageBuckets bounds one report: a month by hour, a year by day.
var MaxUsageBuckets = map[Granularity]int{ByHour: 31 * 24, ByDay: 366}

// UsagePoint is one bucket of a key's usage; Requests is the sum of the
// four outcomes.
type UsagePoint struct {
	Start       time.Time
	Requests    int64
	Success     int64
	RateLimited int64
	Forbidden   int64
	Other       int64
}

// UsageRange is a report's buckets: From (inclusive) to To (exclusive),
// both on bucket boundaries (UTC hours or days).
type UsageRange struct {
	Granularity Granularity
	From, To    time.Time
}

// Buckets is how many buckets the range holds.
func (r UsageRange) Buckets() int { return int(r.To.Sub(r.From) / r.Granularity.Step()) }

// LastUsage is the range of the last n buckets up to and including the one
// now falls in.
func LastUsage(g Granularity, n int, now time.Time) UsageRange {
	to := now.UTC().Truncate(g.Step()).Add(g.Step())
	return UsageRange{Granularity: g, From: to.Add(-time.Duration(n) * g.Step()), To: to}
}

// Usage reports the usage of keys over r, one point per bucket (buckets
// without requests included, as zeros), by key id. It reads every key in
// one query; say which keys the reader may see before calling it.
func (s *Service) Usage(ctx context.Context, r UsageRange, ids ...int64) (map[int64][]UsagePoint, error) {
	from, to := HourOf(r.From), HourOf(r.To)
	step := int64(r.Granularity.Step() / time.Hour)
	rows, err := models.UsageBuckets(s.db.WithContext(ctx), ids, int(step), from, to)
	if err != nil {
		return nil, err
	}
	n := r.Buckets()
	out := make(map[int64][]UsagePoint, len(ids))
	for _, id := range ids {
		pts := make([]UsagePoint, n)
		for i := range pts {
			pts[i].Start = r.From.Add(time.Duration(i) * r.Granularity.Step())
		}
		out[id] = pts
	}
	for _, row := range rows {
		i := int((row.Hour - from) / step)
		pts := out[row.KeyID]
		if i < 0 || i >= len(pts) {
			continue
		}
		p := &pts[i]
		p.Success += row.Success
		p.RateLimited += row.RateLimited
		p.Forbidden += row.Forbidden
		p.Other += row.Other
		p.Requests = p.Success + p.RateLimited + p.Forbidden + p.Other
	}
	return out, nil
}

// PruneUsage deletes the usage counts older than UsageRetention, counted
// in whole UTC days so an hour and its day go together; the scheduler runs
// it.
func (s *Service) PruneUsage(ctx context.Context) error {
	_, err := models.PruneUsage(s.db.WithContext(ctx), HourOf(s.clock.Now().Add(-UsageRetention).Truncate(24*time.Hour)))
	return err
}

// DailyTotals is each key's requests on each of the last days UTC days up
// to today, oldest first (zeros for a key without requests): the list's
// sparklines, in one query for the page's keys.
func (s *Service) DailyTotals(ctx context.Context, days int, now time.Time, ids ...int64) (map[int64][]int64, error) {
	r := LastUsage(ByDay, days, now)
	totals, err := models.DailyTotals(s.db.WithContext(ctx), ids, HourOf(r.From), days)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if totals[id] == nil {
			totals[id] = make([]int64, days)
		}
	}
	return totals, nil
}
