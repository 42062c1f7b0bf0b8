package keys

import (
	"context"
	"strings"
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
	FilterUnused   Filter = "unused"   // works now, not used for 30 days (or never, and 30 days old)
	FilterDisabled Filter = "disabled" // paused, and not expired meanwhile
)

// Filters lists the filters in the order the dashboard shows them.
var Filters = []Filter{FilterAll, FilterActive, FilterExpiring, FilterExpired, FilterDisabled, FilterRevoked, FilterUnused}

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
// The time-dependent conditions are also ranges of the partial indexes
// api_keys_workspace_expires_idx and api_keys_workspace_used_idx, which
// the capped counts read.
func (f Filter) where(db *gorm.DB, now time.Time) *gorm.DB {
	live := "revoked_at IS NULL AND disabled_at IS NULL AND (expires_at IS NULL OR expires_at > ?)"
	switch f {
	case FilterActive:
		return db.Where(live, now)
	case FilterExpiring:
		return db.Where("revoked_at IS NULL AND disabled_at IS NULL AND rotated_to_id IS NULL AND expires_at > ? AND expires_at <= ?", now, now.Add(ExpiringSoon))
	case FilterExpired:
		return db.Where("revoked_at IS NULL AND expires_at <= ?", now)
	case FilterRevoked:
		return db.Where("revoked_at IS NOT NULL")
	case FilterUnused:
		return db.Where("revoked_at IS NULL AND disabled_at IS NULL AND COALESCE(last_used_at, created_at) <= ? AND (expires_at IS NULL OR expires_at > ?)", now.Add(-UnusedAfter), now)
	case FilterDisabled:
		return db.Where("revoked_at IS NULL AND disabled_at IS NOT NULL AND (expires_at IS NULL OR expires_at > ?)", now)
	}
	return db.Where("revoked_at IS NULL")
}

// CountCap is where the counts of the time-dependent filters (active,
// expiring, expired, unused) stop: each reads an index range of at most
// CountCap+1 keys, so a tab costs the same with 50,000 keys as with 5,000.
// All and Revoked are exact at any size (key_counts), and so is Active
// while Expired is.
const CountCap = 1_000

// Count is how many keys a filter holds: N, or more than N when Capped.
type Count struct {
	N      int64
	Capped bool // counting stopped at CountCap: "1,000+"
}

// Counts is every filter's count, for the filter tabs.
type Counts map[Filter]Count

// Page is one page of a key list.
type Page struct {
	Keys   []models.APIKey
	Counts Counts // keys in every filter, for the filter tabs
	Total  Count  // keys matching the filter
	// A keyset page (ListOptions.At) links the pages either side by cursor
	// (nil: none); an offset page (ListOptions.Page) has a number.
	Newer, Older *Cursor
	Page         int // 1-based: an offset page's number, or the number a keyset page's link carried
	PerPage      int
	HasMore      bool      // keys follow this page
	Now          time.Time // the instant the statuses were computed at
}

// Pages is how many pages the filter has, or 0 when the count is capped.
func (p Page) Pages() int {
	if p.Total.Capped {
		return 0
	}
	if p.Total.N == 0 {
		return 1
	}
	return int((p.Total.N + int64(p.PerPage) - 1) / int64(p.PerPage))
}

// ListOptions narrows and pages a key list.
type ListOptions struct {
	Filter    Filter
	Env       Env    // "" for both; keys listing keys see only their own
	CreatorID int64  // 0 for everyone's
	Search    string // part of a key's name or hint, in any case; "" for every key
	// At reads a keyset page (the dashboard): the same cost at any depth.
	// Page > 1 with a zero At reads an offset page (the API's page=).
	At      Position
	Page    int // 1-based
	PerPage int
}

// List returns one page of a workspace's keys, newest first, with their
// creators and rotation links, and the count of every filter.
func (s *Service) List(ctx context.Context, workspaceID int64, o ListOptions) (Page, error) {
	now := s.clock.Now()
	out := Page{Page: max(o.Page, 1), PerPage: max(o.PerPage, 1), Now: now}
	var err error
	if out.Counts, err = s.count(ctx, workspaceID, o, now); err != nil {
		return out, err
	}
	out.Total = out.Counts[o.Filter]
	walk := walkCreated(out.Total, out.Counts[FilterAll].N+out.Counts[FilterRevoked].N, out.PerPage)
	query := func() *gorm.DB {
		db := s.db.WithContext(ctx)
		if walk && !models.IsPostgres(db) {
			db = db.Table("api_keys INDEXED BY api_keys_workspace_created_idx")
		}
		return o.Filter.where(inWorkspace(db, workspaceID, o), now).
			Preload("CreatedBy").Preload("Replaces").Preload("RotatedTo")
	}
	if out.Page == 1 || o.At != (Position{}) {
		l := keyset[models.APIKey]{
			older: func(c *Cursor) *gorm.DB {
				q := query()
				if c != nil {
					q = q.Where("(created_at, id) < (?, ?)", c.At, c.ID)
				}
				return q.Order("created_at DESC, id DESC")
			},
			newer: func(c Cursor) *gorm.DB {
				return query().Where("(created_at, id) > (?, ?)", c.At, c.ID).Order("created_at ASC, id ASC")
			},
			at: keyCursor,
		}
		out.Keys, out.Newer, out.Older, err = l.page(o.At, out.PerPage)
		out.HasMore = out.Older != nil
		// The number a keyset page shows is the one its link carried,
		// and 1 wherever nothing lies above.
		if out.Newer == nil {
			out.Page = 1
		} else {
			out.Page = max(out.Page, 2)
		}
		return out, err
	}
	if last := out.Pages(); last > 0 && out.Page > last {
		out.Page = last
	}
	err = query().Order("created_at DESC, id DESC").Limit(out.PerPage + 1).Offset((out.Page - 1) * out.PerPage).Find(&out.Keys).Error
	if len(out.Keys) > out.PerPage {
		out.Keys, out.HasMore = out.Keys[:out.PerPage], true
		out.Older = new(keyCursor(out.Keys[out.PerPage-1]))
	}
	if out.Page > 1 && len(out.Keys) > 0 {
		out.Newer = new(keyCursor(out.Keys[0]))
	}
	return out, err
}

// walkCreated says whether a page of a filter matching n of a workspace's
// total keys is read best by walking api_keys_workspace_created_idx newest
// first, skipping what does not match (about perPage·total/n rows), rather
// than reading the filter's index range and sorting it (n rows). Either
// way a page reads at most about √(perPage·total) rows: 1,100 of 50,000.
// A capped count walks: at most perPage·total/CountCap rows.
// PostgreSQL's planner makes this choice from its statistics; SQLite's,
// without any, would sort the range every time.
func walkCreated(n Count, total int64, perPage int) bool {
	return n.Capped || n.N*n.N >= int64(perPage+1)*total
}

func keyCursor(k models.APIKey) Cursor { return Cursor{At: k.CreatedAt.UTC(), ID: k.ID} }

// Count counts every filter of a workspace.
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
	if q := strings.ToLower(strings.TrimSpace(o.Search)); q != "" {
		pattern := "%" + likeEscaper.Replace(q) + "%"
		db = db.Where(`(LOWER(name) LIKE ? ESCAPE '\' OR LOWER(hint) LIKE ? ESCAPE '\')`, pattern, pattern)
	}
	return db
}

// likeEscaper makes a search's % and _ stand for themselves in LIKE.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// count reads All and Revoked from key_counts, and counts the
// time-dependent filters through their index ranges, each up to CountCap:
// one statement of scalar subqueries, one round trip. One creator's keys
// (o.CreatorID) are counted in one pass over them, and so are a search's
// (o.Search): a substring match has no index, so that pass reads the
// workspace's keys once, and the page reads no more.
func (s *Service) count(ctx context.Context, workspaceID int64, o ListOptions, now time.Time) (Counts, error) {
	if o.CreatorID != 0 || strings.TrimSpace(o.Search) != "" {
		return s.countEach(ctx, workspaceID, o, now)
	}
	db := s.db.WithContext(ctx)
	kept := func(revoked int) *gorm.DB {
		q := db.Table("key_counts").Select("COALESCE(SUM(n), 0)").Where("workspace_id = ? AND revoked = ?", workspaceID, revoked)
		if o.Env != "" {
			q = q.Where("environment = ?", string(o.Env))
		}
		return q
	}
	capped := func(f Filter) *gorm.DB {
		sub := f.where(inWorkspace(db, workspaceID, o), now).Select("1").Limit(CountCap + 1)
		return db.Table("(?) AS capped", sub).Select("COUNT(*)")
	}
	var row struct{ All, Revoked, Expired, Expiring, Unused, Active, Disabled int64 }
	err := db.Raw(`SELECT (?) AS "all", (?) AS revoked, (?) AS expired, (?) AS expiring, (?) AS unused, (?) AS active, (?) AS disabled`,
		kept(0), kept(1), capped(FilterExpired), capped(FilterExpiring), capped(FilterUnused), capped(FilterActive), capped(FilterDisabled)).Scan(&row).Error
	if err != nil {
		return nil, err
	}
	count := func(n int64) Count {
		if n > CountCap {
			return Count{N: CountCap, Capped: true}
		}
		return Count{N: n}
	}
	out := Counts{FilterAll: {N: row.All}, FilterRevoked: {N: row.Revoked}, FilterExpired: count(row.Expired),
		FilterExpiring: count(row.Expiring), FilterUnused: count(row.Unused), FilterActive: count(row.Active),
		FilterDisabled: count(row.Disabled)}
	if !out[FilterExpired].Capped && !out[FilterDisabled].Capped { // then Active is exact at any size
		out[FilterActive] = Count{N: row.All - row.Expired - row.Disabled}
	}
	return out, nil
}

// countEach counts every filter in one pass over the keys o selects. Its
// conditions are Filter.where's, folded into one aggregate; the tests
// check each filter's count against its list and against count.
func (s *Service) countEach(ctx context.Context, workspaceID int64, o ListOptions, now time.Time) (Counts, error) {
	var row struct{ All, Active, Expiring, Expired, Revoked, Unused, Disabled int64 }
	err := inWorkspace(s.db.WithContext(ctx), workspaceID, o).Select(`
		COALESCE(SUM(CASE WHEN revoked_at IS NULL THEN 1 ELSE 0 END), 0) AS "all",
		COALESCE(SUM(CASE WHEN revoked_at IS NULL AND disabled_at IS NULL AND (expires_at IS NULL OR expires_at > @now) THEN 1 ELSE 0 END), 0) AS active,
		COALESCE(SUM(CASE WHEN revoked_at IS NULL AND disabled_at IS NULL AND rotated_to_id IS NULL AND expires_at > @now AND expires_at <= @soon THEN 1 ELSE 0 END), 0) AS expiring,
		COALESCE(SUM(CASE WHEN revoked_at IS NULL AND expires_at <= @now THEN 1 ELSE 0 END), 0) AS expired,
		COALESCE(SUM(CASE WHEN revoked_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS revoked,
		COALESCE(SUM(CASE WHEN revoked_at IS NULL AND disabled_at IS NULL AND COALESCE(last_used_at, created_at) <= @stale
			AND (expires_at IS NULL OR expires_at > @now) THEN 1 ELSE 0 END), 0) AS unused,
		COALESCE(SUM(CASE WHEN revoked_at IS NULL AND disabled_at IS NOT NULL AND (expires_at IS NULL OR expires_at > @now) THEN 1 ELSE 0 END), 0) AS disabled`,
		map[string]any{"now": now, "soon": now.Add(ExpiringSoon), "stale": now.Add(-UnusedAfter)},
	).Scan(&row).Error
	return Counts{FilterAll: {N: row.All}, FilterActive: {N: row.Active}, FilterExpiring: {N: row.Expiring},
		FilterExpired: {N: row.Expired}, FilterRevoked: {N: row.Revoked}, FilterUnused: {N: row.Unused}, FilterDisabled: {N: row.Disabled}}, err
}

// tally moves a key in key_counts, in the transaction of the change: +1
// for a new key, -1 for a key leaving a bucket (which holds it already).
func tally(tx *gorm.DB, workspaceID int64, env string, revoked bool, delta int) error {
	r := 0
	if revoked {
		r = 1
	}
	if delta < 0 {
		return tx.Exec("UPDATE key_counts SET n = n + ? WHERE workspace_id = ? AND environment = ? AND revoked = ?",
			delta, workspaceID, env, r).Error
	}
	return tx.Exec(`INSERT INTO key_counts (workspace_id, environment, revoked, n) VALUES (?, ?, ?, ?)
		ON CONFLICT (workspace_id, environment, revoked) DO UPDATE SET n = key_counts.n + excluded.n`,
		workspaceID, env, r, delta).Error
}

// Recount rewrites a workspace's key_counts from its keys: for keys
// written around the service (bulk imports, benchmarks), and the tests'
// check that the kept counts equal a recount.
func (s *Service) Recount(ctx context.Context, workspaceID int64) error {
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec("DELETE FROM key_counts WHERE workspace_id = ?", workspaceID).Error; err != nil {
			return err
		}
		return tx.Exec(`INSERT INTO key_counts (workspace_id, environment, revoked, n)
			SELECT workspace_id, environment, CASE WHEN revoked_at IS NULL THEN 0 ELSE 1 END, COUNT(*)
			FROM api_keys WHERE workspace_id = ?
			GROUP BY workspace_id, environment, CASE WHEN revoked_at IS NULL THEN 0 ELSE 1 END`, workspaceID).Error
	})
}
