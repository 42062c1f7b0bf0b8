package scheduler

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"keysmith/clock"
	"keysmith/keys"
	"keysmith/mailer"
	"keysmith/models"
	"keysmith/outbox"
	"keysmith/webhooks"
)

// Reminders plans expiry reminders (SPEC §7): for every key whose next
// reminder is due (api_keys.reminder_due_at, indexed), one pending
// delivery per recipient in the outbox. A unique index on (key, stage,
// recipient) makes planning idempotent across passes and replicas. The
// outbox sends them, asking Compose to write each at send time: a key
// revoked, replaced or disabled meanwhile cancels its reminders.
type Reminders struct {
	db      *gorm.DB
	clock   clock.Clock
	mail    *mailer.Mailer
	outbox  *outbox.Outbox
	baseURL string

	Batch int // keys planned at a time

	// OnStages hears of each batch of keys whose reminder stage was
	// planned (the key.expiring and key.expired webhooks); it must be
	// idempotent, as a pass that stops halfway plans the same stages again.
	OnStages func(ctx context.Context, db *gorm.DB, staged []webhooks.Staged) error
}

// NewReminders returns the reminder job, and registers it as the outbox's
// composer of reminders.
func NewReminders(db *gorm.DB, clk clock.Clock, mail *mailer.Mailer, ob *outbox.Outbox, baseURL string) *Reminders {
	r := &Reminders{db: db, clock: clk, mail: mail, outbox: ob, baseURL: strings.TrimRight(baseURL, "/"), Batch: 200}
	ob.Register(outbox.KindReminder, r)
	return r
}

// Run is one pass: plan, then send what is due (reminders and every
// other delivery the outbox holds).
func (r *Reminders) Run(ctx context.Context) error {
	if err := r.Plan(ctx); err != nil {
		return fmt.Errorf("plan reminders: %w", err)
	}
	if err := r.outbox.Send(ctx); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

// Plan creates the deliveries of every key whose reminder is due.
func (r *Reminders) Plan(ctx context.Context) error {
	now := r.clock.Now()
	for range 10_000 { // each batch moves its keys' due times past now
		var due []models.APIKey
		err := r.db.WithContext(ctx).Select("id, workspace_id, name, hint, environment, created_at, expires_at, created_by_id, reminder_due_at").
			Where("reminder_due_at <= ? AND revoked_at IS NULL AND disabled_at IS NULL AND rotated_to_id IS NULL AND expires_at IS NOT NULL", now).
			Order("reminder_due_at").Limit(r.Batch).Find(&due).Error // api_keys_reminder_due_idx
		if err != nil {
			return err
		}
		if len(due) == 0 {
			return nil
		}
		if err := r.planBatch(ctx, r.db.WithContext(ctx), due, now); err != nil {
			return err
		}
		if len(due) < r.Batch {
			return nil
		}
	}
	return nil
}

// planBatch creates a batch of keys' deliveries for their current stage and
// then moves each key's due time to its next stage, in a few statements
// whatever the batch's size: one recipients query per workspace, one
// multi-row insert, one update. It needs no transaction: a pass that stops
// between the insert and the update plans the same deliveries again, and
// the unique index keeps them once.
func (r *Reminders) planBatch(ctx context.Context, db *gorm.DB, due []models.APIKey, now time.Time) error {
	plans := make([]plan, 0, len(due))
	creators := map[int64][]int64{} // workspace → the creators of its due keys
	for _, k := range due {
		p := plan{key: k}
		p.stage, p.due, p.next = keys.CurrentStage(k.CreatedAt, *k.ExpiresAt, now)
		plans = append(plans, p)
		if p.due {
			ids := creators[k.WorkspaceID]
			if k.CreatedByID != nil && !slices.Contains(ids, *k.CreatedByID) {
				ids = append(ids, *k.CreatedByID)
			}
			creators[k.WorkspaceID] = ids
		}
	}
	people := make(map[int64][]recipient, len(creators))
	for ws, ids := range creators {
		rs, err := recipients(db, ws, ids)
		if err != nil {
			return err
		}
		people[ws] = rs
	}
	var deliveries []models.Delivery
	for _, p := range plans {
		if !p.due {
			continue
		}
		for _, u := range people[p.key.WorkspaceID] {
			if !u.admin && (p.key.CreatedByID == nil || *p.key.CreatedByID != u.ID) {
				continue
			}
			deliveries = append(deliveries, models.Delivery{
				Kind: string(outbox.KindReminder), WorkspaceID: &p.key.WorkspaceID, KeyID: &p.key.ID, Stage: string(p.stage),
				UserID: &u.ID, Recipient: u.Email, Status: "pending", NextAttemptAt: now, CreatedAt: now,
			})
		}
	}
	if r.OnStages != nil {
		staged := make([]webhooks.Staged, 0, len(plans))
		for _, p := range plans {
			if p.due {
				staged = append(staged, webhooks.Staged{Key: p.key, Stage: string(p.stage)})
			}
		}
		if err := r.OnStages(ctx, db, staged); err != nil {
			return err
		}
	}
	if len(deliveries) > 0 {
		// deliveries_reminder_once_idx: a delivery another pass planned stays as it is.
		if err := db.Clauses(clause.OnConflict{DoNothing: true}).Omit("Key").CreateInBatches(&deliveries, 250).Error; err != nil {
			return err
		}
	}
	return moveDue(db, plans)
}

// plan is one key's reminder now: the stage due (if any) and when the next
// one falls due.
type plan struct {
	key   models.APIKey
	stage keys.Stage
	due   bool
	next  *time.Time
}

// moveDue sets each planned key's reminder_due_at to its next stage in one
// statement, only where it is still what the batch read: a key revoked,
// rotated or given a new expiry meanwhile keeps what that change set.
func moveDue(db *gorm.DB, plans []plan) error {
	var sql strings.Builder
	args := make([]any, 0, 3*len(plans)+1)
	ids := make([]int64, len(plans))
	sql.WriteString("UPDATE api_keys SET reminder_due_at = CASE")
	for i, p := range plans {
		sql.WriteString(" WHEN id = ? AND reminder_due_at = ? THEN ?")
		args = append(args, p.key.ID, p.key.ReminderDueAt, p.next)
		ids[i] = p.key.ID
	}
	sql.WriteString(" ELSE reminder_due_at END WHERE id IN ?")
	return db.Exec(sql.String(), append(args, ids)...).Error
}

// recipient is a member who gets a workspace's reminders: every owner and
// admin, and each key's creator for their own keys.
type recipient struct {
	ID    int64
	Email string
	admin bool
}

// recipients are the workspace's owners and admins and those of creators
// who are still members, each once and in id order, without those who
// opted out.
func recipients(tx *gorm.DB, workspaceID int64, creators []int64) ([]recipient, error) {
	var rows []struct {
		ID    int64
		Email string
		Role  models.Role
	}
	q := tx.Table("users").Select("users.id, users.email, memberships.role").
		Joins("JOIN memberships ON memberships.user_id = users.id AND memberships.workspace_id = ?", workspaceID).
		Where("users.reminders_opt_out = ?", false)
	if len(creators) > 0 {
		q = q.Where("memberships.role IN ? OR users.id IN ?", []models.Role{models.RoleOwner, models.RoleAdmin}, creators)
	} else {
		q = q.Where("memberships.role IN ?", []models.Role{models.RoleOwner, models.RoleAdmin})
	}
	if err := q.Order("users.id").Scan(&rows).Error; err != nil {
		return nil, err
	}
	out := make([]recipient, len(rows))
	for i, row := range rows {
		out[i] = recipient{ID: row.ID, Email: row.Email, admin: row.Role.IsAdmin()}
	}
	return out, nil
}
