package keys

import (
	"context"
	"time"

	"gorm.io/gorm"

	"keysmith/models"
)

// Filter narrows the key list (SPEC §5).
type Filter string

const (
	FilterAll      Filter = ""         // everything but revoked keys
	FilterActive   Filter = "active"   // works now (includes expiring and rotating)
	FilterExpiring Filter = "expiring" // works now, expires within 14 days, not already replaced
	FilterExpired  Filter = "expired"
	FilterRevoked  Filter = "revoked"
	FilterUnused   Filter = "unused" // works now, not used for 30 days (or never, and 30 days old)
)

// Filters lists the filters in the order the dashboard shows them.
var Filters = []Filter{FilterAll, FilterActive, FilterExpiring, FilterExpired, FilterRevoked, FilterUnused}

// UnusedAfter is how long without use makes a key stale.
const UnusedAfter = 30 * 24 * time.Hour

// Valid reports whether f is a known filter.
func (f Filter) Valid() bool {
	for _, g := range Filters {
		if f == g {
			return true
		}
	}
	return false
}

// where is the SQL condition of a filter, at now. Every list query also
// has workspace_id = ?, and orders by created_at, id: the index
// api_keys_workspace_created_idx (workspace_id, created_at, id) serves both.
func (f Filter) where(db *gorm.DB, now time.Time) *gorm.DB {
	live := "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)"
	switch f {
	case FilterActive:
		return db.Where(live, now)
	case FilterExpiring:
		return db.Where("revoked_at IS NULL AND rotated_to_id IS NULL AND expires_at > ? AND expires_at <= ?", now, now.Add(ExpiringSoon))
	case FilterExpired:
		return db.Where("revoked_at IS NULL AND expires_at <= ?", now)
	case FilterRevoked:
		return db.Where("revoked_at IS NOT NULL")
	case FilterUnused:
		return db.Where(live+" AND COALESCE(last_used_at, created_at) <= ?", now, now.Add(-UnusedAfter))
	}
	return db.Where("revoked_at IS NULL")
}

// Page is one page of a key list.
type Page struct {
	Keys    []models.APIKey
	Counts  Counts // keys in every filter, for the filter tabs
	Total   int64  // keys matching the filter
	Page    int    // 1-based
	PerPage int
	Now     time.Time // the instant the statuses were computed at
}

// Pages is how many pages the filter has.
func (p Page) Pages() int {
	if p.Total == 0 {
		return 1
	}
	return int((p.Total + int64(p.PerPage) - 1) / int64(p.PerPage))
}

// ListOptions narrows and pages a key list.
type ListOptions struct {
	Filter    Filter
	Env       Env   // "" for both; keys listing keys see only their own
	CreatorID int64 // 0 for everyone's
	Page      int   // 1-based
	PerPage   int
}

// List returns one page of a workspace's keys, newest first, with their
// creators and rotation links, and the count of every filter. Two queries:
// one pass over the workspace's keys for the counts, one indexed page.
func (s *Service) List(ctx context.Context, workspaceID int64, o ListOptions) (Page, error) {
	now := s.clock.Now()
	out := Page{Page: max(o.Page, 1), PerPage: o.PerPage, Now: now}
	var err error
	if out.Counts, err = s.count(ctx, workspaceID, o, now); err != nil {
		return out, err
	}
	out.Total = out.Counts[o.Filter]
	if last := out.Pages(); out.Page > last {
		out.Page = last
	}
	f, perPage := o.Filter, o.PerPage
	err = f.where(inWorkspace(s.db.WithContext(ctx), workspaceID, o), now).
		Preload("CreatedBy").Preload("Replaces").Preload("RotatedTo").
		Order("created_at DESC, id DESC").Limit(perPage).Offset((out.Page - 1) * perPage).
		Find(&out.Keys).Error
	return out, err
}

// Counts is how many keys each filter holds, for the filter tabs.
type Counts map[Filter]int64

// Count counts every filter of a workspace in one pass over its keys.
func (s *Service) Count(ctx context.Context, workspaceID int64) (Counts, error) {
	return s.count(ctx, workspaceID, ListOptions{}, s.clock.Now())
}

func inWorkspace(db *gorm.DB, workspaceID int64, o ListOptions) *gorm.DB {
	db = db.Model(&models.APIKey{}).Where("workspace_id = ?", workspaceID)
	if o.Env != "" {
		db = db.Where("environment = ?", string(o.Env))
	}
	if o.CreatorID != 0 {
		db = db.Where("created_by_id = ?", o.CreatorID)
	}
	return db
}

// count's conditions are Filter.where's, folded into one aggregate; the
// tests check each filter's count against its list.
func (s *Service) count(ctx context.Context, workspaceID int64, o ListOptions, now time.Time) (Counts, error) {
	var row struct{ All, Active, Expiring, Expired, Revoked, Unused int64 }
	err := inWorkspace(s.db.WithContext(ctx), workspaceID, o).Select(`
		COALESCE(SUM(CASE WHEN revoked_at IS NULL THEN 1 ELSE 0 END), 0) AS "all",
		COALESCE(SUM(CASE WHEN revoked_at IS NULL AND (expires_at IS NULL OR expires_at > @now) THEN 1 ELSE 0 END), 0) AS active,
		COALESCE(SUM(CASE WHEN revoked_at IS NULL AND rotated_to_id IS NULL AND expires_at > @now AND expires_at <= @soon THEN 1 ELSE 0 END), 0) AS expiring,
		COALESCE(SUM(CASE WHEN revoked_at IS NULL AND expires_at <= @now THEN 1 ELSE 0 END), 0) AS expired,
		COALESCE(SUM(CASE WHEN revoked_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS revoked,
		COALESCE(SUM(CASE WHEN revoked_at IS NULL AND (expires_at IS NULL OR expires_at > @now)
			AND COALESCE(last_used_at, created_at) <= @stale THEN 1 ELSE 0 END), 0) AS unused`,
		map[string]any{"now": now, "soon": now.Add(ExpiringSoon), "stale": now.Add(-UnusedAfter)},
	).Scan(&row).Error
	return Counts{FilterAll: row.All, FilterActive: row.Active, FilterExpiring: row.Expiring,
		FilterExpired: row.Expired, FilterRevoked: row.Revoked, FilterUnused: row.Unused}, err
}
