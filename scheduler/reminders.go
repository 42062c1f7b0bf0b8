package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"keysmith/clock"
	"keysmith/keys"
	"keysmith/mailer"
	"keysmith/metrics"
	"keysmith/models"
)

// Reminders sends expiry reminders (SPEC §7) in two steps per pass:
//
//   - Plan: for every key whose next reminder is due (api_keys.reminder_due_at,
//     indexed), insert one pending delivery per recipient. A unique index on
//     (key, stage, recipient) makes planning idempotent across passes and
//     replicas.
//   - Send: claim due deliveries a few at a time (ClaimBatch), each with a
//     lease that runs from the moment it is claimed and this pass's claim
//     token as its owner (a conditional UPDATE that only one process wins, on
//     SQLite and PostgreSQL alike). Up to Concurrency mails are sent at once;
//     the leases of what the pass holds are renewed every Renew, and a
//     renewal or a mark only applies while the row still carries the pass's
//     token, so a claim another replica took over is never extended or
//     marked by this one. A delivery is marked sent only after the SMTP
//     server accepted it. Failures are retried with exponential backoff, then
//     marked failed for an admin to see and retry.
//
// At shutdown (the pass's context cancelled) a pass claims nothing more,
// gives back the claims it has not started, lets the mails in flight finish
// and records them, for at most Drain: the sends do not use the context
// shutdown cancels, so a SIGTERM never cuts an SMTP transaction short.
//
// The honest limit: a crash after the server accepted a message and before
// it was marked sent (a few milliseconds later), or a Drain that runs out
// with the message still at the server, resends it once the lease expires.
// Its Message-ID is the same both times, so the duplicate is recognisable.
type Reminders struct {
	db      *gorm.DB
	clock   clock.Clock
	mail    *mailer.Mailer
	baseURL string
	log     *slog.Logger
	metrics *metrics.Metrics

	Lease       time.Duration // how long a claim lasts unless renewed (clock time)
	Renew       time.Duration // how often a pass extends the claims it holds (wall time); less than Lease
	Concurrency int           // mails sent at once (KEYSMITH_MAIL_CONCURRENCY)
	ClaimBatch  int           // deliveries claimed at a time (at least Concurrency): a few seconds' work
	Drain       time.Duration // at shutdown, how long mails in flight may take to finish (KEYSMITH_SHUTDOWN_TIMEOUT)
	MaxAttempts int           // then the delivery is failed
	Batch       int           // keys planned at a time
}

// NewReminders returns the reminder job. m may be nil; otherwise it counts
// each attempt's outcome and reports the queue's depth.
func NewReminders(db *gorm.DB, clk clock.Clock, mail *mailer.Mailer, baseURL string, log *slog.Logger, m *metrics.Metrics) *Reminders {
	r := &Reminders{db: db, clock: clk, mail: mail, baseURL: strings.TrimRight(baseURL, "/"), log: log, metrics: m,
		Lease: 2 * time.Minute, Renew: 30 * time.Second, Concurrency: 4, ClaimBatch: 16, Drain: 15 * time.Second, MaxAttempts: 8, Batch: 200}
	m.PendingDeliveries(r.PendingCount)
	return r
}

// Run is one pass: plan, then send.
func (r *Reminders) Run(ctx context.Context) error {
	if err := r.Plan(ctx); err != nil {
		return fmt.Errorf("plan reminders: %w", err)
	}
	if err := r.Send(ctx); err != nil {
		return fmt.Errorf("send reminders: %w", err)
	}
	return nil
}

// Backoff is the wait before retry n (1-based): 1, 2, 4 … minutes, at most an hour.
func Backoff(n int) time.Duration {
	d := time.Minute << min(n-1, 6)
	return min(d, time.Hour)
}

// Plan creates the deliveries of every key whose reminder is due.
func (r *Reminders) Plan(ctx context.Context) error {
	now := r.clock.Now()
	for range 10_000 { // each batch moves its keys' due times past now
		var due []models.APIKey
		err := r.db.WithContext(ctx).Select("id, workspace_id, created_at, expires_at, created_by_id, reminder_due_at").
			Where("reminder_due_at <= ? AND revoked_at IS NULL AND disabled_at IS NULL AND rotated_to_id IS NULL AND expires_at IS NOT NULL", now).
			Order("reminder_due_at").Limit(r.Batch).Find(&due).Error // api_keys_reminder_due_idx
		if err != nil {
			return err
		}
		if len(due) == 0 {
			return nil
		}
		if err := planBatch(r.db.WithContext(ctx), due, now); err != nil {
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
func planBatch(db *gorm.DB, due []models.APIKey, now time.Time) error {
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
	var deliveries []models.ReminderDelivery
	for _, p := range plans {
		if !p.due {
			continue
		}
		for _, u := range people[p.key.WorkspaceID] {
			if !u.admin && (p.key.CreatedByID == nil || *p.key.CreatedByID != u.ID) {
				continue
			}
			deliveries = append(deliveries, models.ReminderDelivery{
				WorkspaceID: p.key.WorkspaceID, KeyID: p.key.ID, Stage: string(p.stage), UserID: u.ID, Email: u.Email,
				Status: "pending", NextAttemptAt: now,
			})
		}
	}
	if len(deliveries) > 0 {
		// reminder_deliveries_once_idx: a delivery another pass planned stays as it is.
		if err := db.Clauses(clause.OnConflict{DoNothing: true}).CreateInBatches(&deliveries, 250).Error; err != nil {
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
