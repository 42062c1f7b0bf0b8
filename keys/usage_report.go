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
	read := models.UsageHours
	if r.Granularity == ByDay {
		read = models.UsageDays
	}
	rows, err := read(s.db.WithContext(ctx), ids, from, to)
	if err != nil {
		return nil, err
	}
	n, step := r.Buckets(), int64(r.Granularity.Step()/time.Hour)
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

// PruneUsage deletes the usage counts older than UsageRetention; the
// scheduler runs it.
func (s *Service) PruneUsage(ctx context.Context) error {
	_, err := models.PruneUsage(s.db.WithContext(ctx), HourOf(s.clock.Now().Add(-UsageRetention)))
	return err
}
