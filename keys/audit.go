package keys

import (
	"context"
	"strings"
	"time"

	"gorm.io/gorm"

	"keysmith/models"
)

// AuditFilter narrows the audit log; zero fields do not filter.
type AuditFilter struct {
	Actor  string // part of the actor's email or key hint
	Action string
	From   *time.Time // inclusive
	To     *time.Time // exclusive
}

// AuditPage is one page of a workspace's audit log, newest first, with the
// cursors of the pages either side (nil: there is none).
type AuditPage struct {
	Events []models.AuditEvent
	Newer  *Cursor // read with Position{After: Newer}
	Older  *Cursor // read with Position{Before: Older}
}

// auditQuery is the filtered log. Which index serves it (migration 11):
//   - no action: audit_events_workspace_created_idx (workspace_id, created_at, id)
//   - an action: audit_events_workspace_action_idx (workspace_id, action, created_at, id)
//
// Dates and the keyset cursor are ranges on (created_at, id) within either.
// The actor filter matches part of a label, which no B-tree index can seek:
// it is checked on the rows the index walk meets, newest first, so a page
// of a rare actor reads as many events as lie between its matches.
func (s *Service) auditQuery(ctx context.Context, workspaceID int64, f AuditFilter) *gorm.DB {
	q := s.db.WithContext(ctx).Model(&models.AuditEvent{}).Where("workspace_id = ?", workspaceID)
	if f.Action != "" {
		q = q.Where("action = ?", f.Action)
	}
	if f.From != nil {
		q = q.Where("created_at >= ?", f.From.UTC())
	}
	if f.To != nil {
		q = q.Where("created_at < ?", f.To.UTC())
	}
	if f.Actor != "" {
		q = q.Where("LOWER(actor_label) LIKE ?", "%"+strings.ToLower(f.Actor)+"%")
	}
	return q
}

// older and newer are the filtered log on one side of a cursor, nearest
// first (older with no cursor: the whole log, newest first). A row value compares (created_at, id) as one key, so both engines
// seek the index to the cursor instead of counting past every row above it.
// A date bound on the same side is dropped when the cursor implies it, or
// the cursor when the bound does: SQLite's planner, given three ranges on
// created_at, would walk the date range of the whole workspace rather than
// one action's index.
func (s *Service) older(ctx context.Context, workspaceID int64, f AuditFilter, c *Cursor) *gorm.DB {
	if c == nil || f.To != nil && !c.At.Before(*f.To) {
		return s.auditQuery(ctx, workspaceID, f).Order("created_at DESC, id DESC")
	}
	f.To = nil
	return s.auditQuery(ctx, workspaceID, f).Where("(created_at, id) < (?, ?)", c.At, c.ID).Order("created_at DESC, id DESC")
}

func (s *Service) newer(ctx context.Context, workspaceID int64, f AuditFilter, c Cursor) *gorm.DB {
	if f.From != nil && f.From.After(c.At) {
		return s.auditQuery(ctx, workspaceID, f).Order("created_at ASC, id ASC")
	}
	f.From = nil
	return s.auditQuery(ctx, workspaceID, f).Where("(created_at, id) > (?, ?)", c.At, c.ID).Order("created_at ASC, id ASC")
}

// Audit reads one page of a workspace's audit log, newest first, ordered by
// (created_at, id). No page counts past another: the cost of a page is the
// cost of its rows, on the first page as after a million events.
func (s *Service) Audit(ctx context.Context, workspaceID int64, f AuditFilter, at Position, perPage int) (AuditPage, error) {
	l := keyset[models.AuditEvent]{
		older: func(c *Cursor) *gorm.DB { return s.older(ctx, workspaceID, f, c) },
		newer: func(c Cursor) *gorm.DB { return s.newer(ctx, workspaceID, f, c) },
		at:    eventCursor,
	}
	var out AuditPage
	var err error
	out.Events, out.Newer, out.Older, err = l.page(at, perPage)
	return out, err
}

func eventCursor(e models.AuditEvent) Cursor { return Cursor{At: e.CreatedAt.UTC(), ID: e.ID} }

// AuditExportBatch is how many events an export reads per query.
const AuditExportBatch = 1000

// AuditEach hands every event the filter matches to fn, newest first, in
// batches of AuditExportBatch read by keyset, so an export of a million
// events holds one batch in memory and no query stays open while fn writes.
// Events added during the walk are newer than its first batch and are left
// out: the export is the log as it stood when it began.
func (s *Service) AuditEach(ctx context.Context, workspaceID int64, f AuditFilter, fn func([]models.AuditEvent) error) error {
	batch := make([]models.AuditEvent, 0, AuditExportBatch)
	var cursor *Cursor
	for {
		batch = batch[:0]
		if err := s.older(ctx, workspaceID, f, cursor).Limit(AuditExportBatch).Find(&batch).Error; err != nil {
			return err
		}
		if len(batch) == 0 {
			return nil
		}
		if err := fn(batch); err != nil {
			return err
		}
		if len(batch) < AuditExportBatch {
			return nil
		}
		c := eventCursor(batch[len(batch)-1])
		cursor = &c
	}
}
