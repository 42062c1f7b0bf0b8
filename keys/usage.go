package keys

import (
	"context"
	"sync"
	"time"

	"gorm.io/gorm"

	"keysmith/metrics"
	"keysmith/models"
)

// Outcome is how the API answered one request made with a key, for the
// usage counts (SPEC §6): every request that names a known key counts
// once, under exactly one outcome.
type Outcome uint8

const (
	// OutcomeSuccess: answered 2xx (verify: VALID).
	OutcomeSuccess Outcome = iota
	// OutcomeRateLimited: refused 429 by the key's rate limit or a quota
	// (verify: RATE_LIMITED).
	OutcomeRateLimited
	// OutcomeForbidden: refused 403 for what the key may do or where from:
	// a missing scope, the other environment, an address outside its
	// allowlist (verify: INSUFFICIENT_SCOPE, IP_NOT_ALLOWED).
	OutcomeForbidden
	// OutcomeOther: every other refusal of a request that named the key:
	// 401 because it is disabled, expired or revoked (verify: DISABLED,
	// EXPIRED, REVOKED), an invalid request (400, 404, 405, 413, 422) or a
	// server error. Malformed and unknown keys name no key and are not
	// counted.
	OutcomeOther
)

// OutcomeOf is the outcome of an answer with this HTTP status.
func OutcomeOf(status int) Outcome {
	switch {
	case status < 400:
		return OutcomeSuccess
	case status == 429:
		return OutcomeRateLimited
	case status == 403:
		return OutcomeForbidden
	}
	return OutcomeOther
}

// UsageRetention is how long the hourly counts are kept (SPEC §6).
const UsageRetention = 90 * 24 * time.Hour

// HourOf is t's bucket in key_usage: whole hours since the Unix epoch.
func HourOf(t time.Time) int64 { return t.Unix() / 3600 }

// HourTime is the start of bucket h.
func HourTime(h int64) time.Time { return time.Unix(h*3600, 0).UTC() }

// Usage buffers each key's last use and its requests per hour by outcome
// in memory, and writes them in batches: per flush, one statement for the
// last uses (per 8,000 keys) and one for the counts (per 4,000 hour and day
// buckets), however many requests they served.
type Usage struct {
	db      *gorm.DB
	metrics *metrics.Metrics
	mu      sync.Mutex
	pending map[int64]use
	counts  map[bucket]*[4]int64 // by Outcome
}

type use struct {
	at        time.Time
	ip, agent string
}

type bucket struct{ key, hour int64 }

// NewUsage returns an empty buffer writing to db, counting its flushes in m.
func NewUsage(db *gorm.DB, m *metrics.Metrics) *Usage {
	return &Usage{db: db, metrics: m, pending: map[int64]use{}, counts: map[bucket]*[4]int64{}}
}

// Record notes that a key was used; the latest use of each key wins.
func (u *Usage) Record(keyID int64, at time.Time, ip, agent string) {
	u.mu.Lock()
	if prev, ok := u.pending[keyID]; !ok || !prev.at.After(at) {
		u.pending[keyID] = use{at: at, ip: ip, agent: agent}
	}
	u.mu.Unlock()
}

// Count adds one request with outcome o to a key's hour at.
func (u *Usage) Count(keyID int64, at time.Time, o Outcome) {
	u.add(bucket{keyID, HourOf(at)}, o, 1)
}

func (u *Usage) add(b bucket, o Outcome, n int64) {
	u.mu.Lock()
	c := u.counts[b]
	if c == nil {
		c = new([4]int64)
		u.counts[b] = c
	}
	c[o] += n
	u.mu.Unlock()
}

// Flush writes every buffered use and count in one transaction (see
// models.WriteLastUses and models.AddUsageCounts). On error both go back
// into the buffer for the next flush, so nothing is lost or counted twice.
func (u *Usage) Flush(ctx context.Context) error {
	u.mu.Lock()
	batch, counts := u.pending, u.counts
	u.pending, u.counts = map[int64]use{}, map[bucket]*[4]int64{}
	u.mu.Unlock()
	if len(batch) == 0 && len(counts) == 0 {
		return nil
	}
	uses := make([]models.LastUse, 0, len(batch))
	for id, x := range batch {
		uses = append(uses, models.LastUse{KeyID: id, At: x.at, IP: x.ip, UserAgent: models.StorableText(x.agent, 300)})
	}
	// Each hour's counts go to its hour and its day, summed per day here.
	rows := make([]models.UsageCount, 0, 2*len(counts))
	days := map[bucket]int{} // index in rows
	for b, c := range counts {
		rows = append(rows, models.UsageCount{KeyID: b.key, Span: 1, Hour: b.hour, Success: c[OutcomeSuccess],
			RateLimited: c[OutcomeRateLimited], Forbidden: c[OutcomeForbidden], Other: c[OutcomeOther]})
		day := bucket{b.key, b.hour - b.hour%24}
		i, ok := days[day]
		if !ok {
			i, days[day] = len(rows), len(rows)
			rows = append(rows, models.UsageCount{KeyID: b.key, Span: 24, Hour: day.hour})
		}
		d := &rows[i]
		d.Success += c[OutcomeSuccess]
		d.RateLimited += c[OutcomeRateLimited]
		d.Forbidden += c[OutcomeForbidden]
		d.Other += c[OutcomeOther]
	}
	err := u.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := models.WriteLastUses(tx, uses); err != nil {
			return err
		}
		return models.AddUsageCounts(tx, rows)
	})
	if err != nil {
		for id, x := range batch {
			u.Record(id, x.at, x.ip, x.agent)
		}
		for b, c := range counts {
			for o, n := range c {
				if n != 0 {
					u.add(b, Outcome(o), n)
				}
			}
		}
	}
	u.metrics.Flush(len(batch), err)
	return err
}
