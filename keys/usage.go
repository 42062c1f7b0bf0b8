package keys

import (
	"context"
	"strings"
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

// Flush writes every buffered use in one transaction. It never moves
// last_used_at backwards (another replica may have written a later use),
// and leaves updated_at alone: a use is not a change to the key. On error
// the uses go back into the buffer for the next flush.
func (u *Usage) Flush(ctx context.Context) error {
	u.mu.Lock()
	batch := u.pending
	u.pending = map[int64]use{}
	u.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	err := u.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		for id, x := range batch {
			err := tx.Model(&models.APIKey{}).
				Where("id = ? AND (last_used_at IS NULL OR last_used_at < ?)", id, x.at).
				UpdateColumns(map[string]any{"last_used_at": x.at, "last_used_ip": x.ip, "last_used_user_agent": truncate(x.agent, 300)}).Error
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		for id, x := range batch {
			u.Record(id, x.at, x.ip, x.agent)
		}
	}
	u.metrics.Flush(len(batch), err)
	return err
}

// truncate cuts s to at most n bytes of text any column can hold: valid
// UTF-8 (a cut rune or a client's invalid bytes become U+FFFD) without NUL.
// One unstorable User-Agent must not fail a whole batch on PostgreSQL.
func truncate(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}
