package keys

import (
	"context"
	"sync"
	"time"

	"gorm.io/gorm"

	"keysmith/metrics"
	"keysmith/models"
)

// Usage buffers each key's last use in memory and writes them in batches:
// at most one UPDATE per key per flush, however many requests it served.
type Usage struct {
	db      *gorm.DB
	metrics *metrics.Metrics
	mu      sync.Mutex
	pending map[int64]use
}

type use struct {
	at        time.Time
	ip, agent string
}

// NewUsage returns an empty buffer writing to db, counting its flushes in m.
func NewUsage(db *gorm.DB, m *metrics.Metrics) *Usage {
	return &Usage{db: db, metrics: m, pending: map[int64]use{}}
}

// Record notes that a key was used; the latest use of each key wins.
func (u *Usage) Record(keyID int64, at time.Time, ip, agent string) {
	u.mu.Lock()
	if prev, ok := u.pending[keyID]; !ok || !prev.at.After(at) {
		u.pending[keyID] = use{at: at, ip: ip, agent: agent}
	}
	u.mu.Unlock()
}

// Flush writes every buffered use with one statement (per 8,000 keys;
// see models.WriteLastUses). On error the uses go back into the buffer for
// the next flush.
func (u *Usage) Flush(ctx context.Context) error {
	u.mu.Lock()
	batch := u.pending
	u.pending = map[int64]use{}
	u.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	uses := make([]models.LastUse, 0, len(batch))
	for id, x := range batch {
		uses = append(uses, models.LastUse{KeyID: id, At: x.at, IP: x.ip, UserAgent: models.StorableText(x.agent, 300)})
	}
	err := models.WriteLastUses(u.db.WithContext(ctx), uses)
	if err != nil {
		for id, x := range batch {
			u.Record(id, x.at, x.ip, x.agent)
		}
	}
	u.metrics.Flush(len(batch), err)
	return err
}
