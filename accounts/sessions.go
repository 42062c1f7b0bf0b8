package accounts

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"time"

	"gorm.io/gorm"

	"keysmith/clock"
	"keysmith/models"
)

// Sessions is the list of a user's signed-in browsers that Settings →
// Security shows and ends. It sits beside the scs session store, keyed by
// the same hash of the session token the store keys its rows by; the
// token itself is never stored or shown.
type Sessions struct {
	db    *gorm.DB
	clock clock.Clock
	// idle and lifetime are the session manager's timeouts: a session
	// idle or old past them is over, whatever its row says.
	idle, lifetime time.Duration
}

// SeenEvery is how often a session's last-active time is written: more
// often would be a write per page view.
const SeenEvery = time.Minute

// NewSessions returns the sessions list for sessions that end after idle
// without a request or lifetime after they began.
func NewSessions(s *Service, idle, lifetime time.Duration) *Sessions {
	return &Sessions{db: s.db, clock: s.clock, idle: idle, lifetime: lifetime}
}

// SessionTokenHash is how scs keys a session in its store
// (HashTokenInStore): SHA-256, base64url without padding.
func SessionTokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Started records a session signed in (or renewed, under a new token, as a
// password change does) by the user. A renewed session keeps its row, so
// "signed in" stays the time the user signed in.
func (s *Sessions) Started(ctx context.Context, userID int64, oldHash, newHash, ip, userAgent string) error {
	now := s.clock.Now()
	db := s.db.WithContext(ctx)
	ua := models.StorableText(userAgent, 300)
	if oldHash != "" {
		res := db.Model(&models.UserSession{}).
			Where("token_hash = ? AND user_id = ? AND ended_at IS NULL", oldHash, userID). // user_sessions_token_hash_idx
			Updates(map[string]any{"token_hash": newHash, "ip": ip, "user_agent": ua, "last_seen_at": now})
		if res.Error != nil || res.RowsAffected > 0 {
			return res.Error
		}
	}
	return db.Create(&models.UserSession{UserID: userID, TokenHash: newHash, IP: ip, UserAgent: ua, CreatedAt: now, LastSeenAt: now}).Error
}

// Seen notes a request of the session, at most once per SeenEvery, and
// reports whether the session was ended from the list (the caller then
// ends it). A session from before the list existed gets its row now.
func (s *Sessions) Seen(ctx context.Context, userID int64, hash, ip, userAgent string) (ended bool, err error) {
	db := s.db.WithContext(ctx)
	now := s.clock.Now()
	var row models.UserSession
	if err := db.Where("token_hash = ?", hash).Limit(1).Find(&row).Error; err != nil { // user_sessions_token_hash_idx
		return false, err
	}
	switch {
	case row.ID == 0:
		ua := models.StorableText(userAgent, 300)
		return false, db.Create(&models.UserSession{UserID: userID, TokenHash: hash, IP: ip, UserAgent: ua, CreatedAt: now, LastSeenAt: now}).Error
	case row.EndedAt != nil || row.UserID != userID:
		return true, nil
	case now.Sub(row.LastSeenAt) >= SeenEvery || row.IP != ip:
		return false, db.Model(&row).Updates(map[string]any{"last_seen_at": now, "ip": ip}).Error
	}
	return false, nil
}

// List returns the user's live sessions, the most recently active first.
func (s *Sessions) List(ctx context.Context, userID int64) ([]models.UserSession, error) {
	now := s.clock.Now()
	var rows []models.UserSession
	err := s.db.WithContext(ctx).
		Where("user_id = ? AND ended_at IS NULL AND last_seen_at > ? AND created_at > ?", userID, now.Add(-s.idle), now.Add(-s.lifetime)). // user_sessions_user_idx
		Order("last_seen_at DESC, id DESC").Find(&rows).Error
	return rows, err
}

// End ends one of the user's sessions: its row is marked, and the stored
// session deleted, so its cookie opens nothing. ErrNotFound if the user
// has no such session.
func (s *Sessions) End(ctx context.Context, userID, id int64) error {
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var row models.UserSession
		if err := tx.Where("id = ? AND user_id = ? AND ended_at IS NULL", id, userID).Limit(1).Find(&row).Error; err != nil {
			return err
		}
		if row.ID == 0 {
			return ErrNotFound
		}
		return s.end(tx, []models.UserSession{row}, true)
	})
}

// EndOthers ends every session of the user but the one whose token hashes
// to keepHash, and returns how many it ended.
func (s *Sessions) EndOthers(ctx context.Context, userID int64, keepHash string) (int, error) {
	return s.endOthers(ctx, userID, keepHash, true)
}

// Unlist takes every session of the user but keepHash's off the list,
// after a change of the user's session epoch ended them: their stored
// sessions stay, so their next request learns why it was logged out.
func (s *Sessions) Unlist(ctx context.Context, userID int64, keepHash string) error {
	_, err := s.endOthers(ctx, userID, keepHash, false)
	return err
}

func (s *Sessions) endOthers(ctx context.Context, userID int64, keepHash string, deleteStored bool) (int, error) {
	var n int
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var rows []models.UserSession
		if err := tx.Where("user_id = ? AND ended_at IS NULL AND token_hash <> ?", userID, keepHash).Find(&rows).Error; err != nil {
			return err
		}
		n = len(rows)
		return s.end(tx, rows, deleteStored)
	})
	return n, err
}

// Ended marks the session whose token hashes to hash as ended (a logout).
func (s *Sessions) Ended(ctx context.Context, hash string) error {
	return s.db.WithContext(ctx).Model(&models.UserSession{}).Where("token_hash = ? AND ended_at IS NULL", hash).
		Update("ended_at", s.clock.Now()).Error
}

func (s *Sessions) end(tx *gorm.DB, rows []models.UserSession, deleteStored bool) error {
	if len(rows) == 0 {
		return nil
	}
	ids := make([]int64, len(rows))
	hashes := make([]string, len(rows))
	for i, r := range rows {
		ids[i], hashes[i] = r.ID, r.TokenHash
	}
	if err := tx.Model(&models.UserSession{}).Where("id IN ?", ids).Update("ended_at", s.clock.Now()).Error; err != nil || !deleteStored {
		return err
	}
	// The scs store's own table (migration 1), keyed by the same hash.
	return tx.Exec("DELETE FROM sessions WHERE token IN ?", hashes).Error
}

// Purge deletes rows of sessions over for a day or more; the scheduler
// calls it.
func (s *Sessions) Purge(ctx context.Context) error {
	now := s.clock.Now()
	cutoff := now.Add(-24 * time.Hour)
	return s.db.WithContext(ctx).
		Where("ended_at < ? OR last_seen_at < ? OR created_at < ?", cutoff, cutoff.Add(-s.idle), cutoff.Add(-s.lifetime)).
		Delete(&models.UserSession{}).Error
}
