package scheduler

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"keysmith/accounts"
	"keysmith/clock"
	"keysmith/keys"
	"keysmith/mailer"
	"keysmith/models"
	"keysmith/views"
	"keysmith/views/emails"
)

// Reminders sends expiry reminders (SPEC §7) in two steps per pass:
//
//   - Plan: for every key whose next reminder is due (api_keys.reminder_due_at,
//     indexed), insert one pending delivery per recipient. A unique index on
//     (key, stage, recipient) makes planning idempotent across passes and
//     replicas.
//   - Send: claim due deliveries with a lease (a conditional UPDATE that only
//     one process can win, on SQLite and PostgreSQL alike), send, and mark
//     them sent only after the SMTP server accepted the message. Failures
//     are retried with exponential backoff, then marked failed for an admin
//     to see and retry.
//
// The honest limit: a crash after the server accepted a message and before
// it was marked sent resends it once the lease expires. Its Message-ID is
// the same both times, so the duplicate is recognisable.
type Reminders struct {
	db      *gorm.DB
	clock   clock.Clock
	mail    *mailer.Mailer
	baseURL string
	log     *slog.Logger

	Lease       time.Duration // how long a claim lasts
	MaxAttempts int           // then the delivery is failed
	Batch       int
}

// NewReminders returns the reminder job.
func NewReminders(db *gorm.DB, clk clock.Clock, mail *mailer.Mailer, baseURL string, log *slog.Logger) *Reminders {
	return &Reminders{db: db, clock: clk, mail: mail, baseURL: strings.TrimRight(baseURL, "/"), log: log,
		Lease: 2 * time.Minute, MaxAttempts: 8, Batch: 200}
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
		err := r.db.WithContext(ctx).
			Where("reminder_due_at <= ? AND revoked_at IS NULL AND rotated_to_id IS NULL AND expires_at IS NOT NULL", now).
			Order("reminder_due_at").Limit(r.Batch).Find(&due).Error // api_keys_reminder_due_idx
		if err != nil {
			return err
		}
		// One transaction per batch: a commit per key would dominate a big pass.
		err = r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			for _, k := range due {
				if err := r.plan(tx, k, now); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(due) < r.Batch {
			return nil
		}
	}
	return nil
}

// plan creates one key's deliveries for its current stage and moves its
// due time to the next stage.
func (r *Reminders) plan(tx *gorm.DB, k models.APIKey, now time.Time) error {
	stage, due, next := keys.CurrentStage(k.CreatedAt, *k.ExpiresAt, now)
	if due {
		users, err := recipients(tx, k)
		if err != nil {
			return err
		}
		for _, u := range users {
			d := models.ReminderDelivery{
				WorkspaceID: k.WorkspaceID, KeyID: k.ID, Stage: string(stage), UserID: u.ID, Email: u.Email,
				Status: "pending", NextAttemptAt: now,
			}
			if err := tx.Clauses(clause.OnConflict{DoNothing: true}).Create(&d).Error; err != nil {
				return err
			}
		}
	}
	return tx.Model(&models.APIKey{}).Where("id = ? AND reminder_due_at = ?", k.ID, k.ReminderDueAt).
		UpdateColumn("reminder_due_at", next).Error
}

// recipients are the key's creator and the workspace's owners and admins,
// each once, without those who opted out.
func recipients(tx *gorm.DB, k models.APIKey) ([]models.User, error) {
	var users []models.User
	q := tx.Model(&models.User{}).Distinct("users.*").
		Joins("JOIN memberships ON memberships.user_id = users.id AND memberships.workspace_id = ?", k.WorkspaceID).
		Where("users.reminders_opt_out = ?", false)
	if k.CreatedByID != nil {
		q = q.Where("memberships.role IN ? OR users.id = ?", []string{"owner", "admin"}, *k.CreatedByID)
	} else {
		q = q.Where("memberships.role IN ?", []string{"owner", "admin"})
	}
	err := q.Order("users.id").Find(&users).Error
	return users, err
}

// passCache keeps the users and workspaces one pass has loaded: a big pass
// mails the same few admins about many keys.
type passCache struct {
	users      map[int64]models.User
	workspaces map[int64]string
}

// Send delivers every due delivery this process can claim, in batches.
func (r *Reminders) Send(ctx context.Context) error {
	now := r.clock.Now()
	cache := &passCache{users: map[int64]models.User{}, workspaces: map[int64]string{}}
	var errs []error
	afterID := int64(0)
	for {
		var ids []int64
		err := r.db.WithContext(ctx).Model(&models.ReminderDelivery{}).
			Where("status = ? AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until < ?) AND id > ?", "pending", now, now, afterID).
			Order("id").Limit(r.Batch).Pluck("id", &ids).Error // reminder_deliveries_due_idx
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		for _, id := range ids {
			if err := r.deliver(ctx, id, now, cache); err != nil {
				errs = append(errs, err)
			}
		}
		if len(ids) < r.Batch || ctx.Err() != nil {
			return errors.Join(errs...)
		}
		afterID = ids[len(ids)-1]
	}
}

// deliver claims one delivery, sends it and records the outcome.
func (r *Reminders) deliver(ctx context.Context, id int64, now time.Time, cache *passCache) error {
	db := r.db.WithContext(ctx)
	token := rand.Text()
	claim := db.Model(&models.ReminderDelivery{}).
		Where("id = ? AND status = ? AND (claimed_until IS NULL OR claimed_until < ?)", id, "pending", now).
		Updates(map[string]any{"claimed_until": now.Add(r.Lease), "claim_token": token})
	if claim.Error != nil || claim.RowsAffected == 0 {
		return claim.Error // another process has it
	}
	mine := db.Model(&models.ReminderDelivery{}).Where("id = ? AND claim_token = ?", id, token)

	var d models.ReminderDelivery
	if err := db.Preload("Key").Take(&d, id).Error; err != nil {
		return err
	}
	if d.Key.RevokedAt != nil || d.Key.RotatedToID != nil {
		return mine.Updates(map[string]any{"status": "cancelled", "claimed_until": nil}).Error
	}
	subject, data, err := r.compose(ctx, d, now, cache)
	if err != nil {
		return err
	}
	msgID := fmt.Sprintf("reminder-%d@%s", d.ID, r.mail.Domain())
	sendCtx, cancel := context.WithTimeout(ctx, r.Lease/2)
	sendErr := r.mail.SendReminder(sendCtx, d.Email, msgID, subject, data)
	cancel()
	if sendErr == nil {
		return mine.Updates(map[string]any{"status": "sent", "sent_at": r.clock.Now(), "claimed_until": nil, "attempts": d.Attempts + 1, "last_error": ""}).Error
	}
	attempts := d.Attempts + 1
	update := map[string]any{"attempts": attempts, "claimed_until": nil, "last_error": truncate(sendErr.Error(), 500)}
	if attempts >= r.MaxAttempts {
		update["status"] = "failed"
		r.log.Error("expiry reminder failed for good", "delivery_id", d.ID, "key_id", d.KeyID, "attempts", attempts, "err", sendErr)
	} else {
		update["next_attempt_at"] = now.Add(Backoff(attempts))
		r.log.Warn("expiry reminder not sent, will retry", "delivery_id", d.ID, "attempt", attempts, "err", sendErr)
	}
	return mine.Updates(update).Error
}

func (r *Reminders) compose(ctx context.Context, d models.ReminderDelivery, now time.Time, cache *passCache) (string, emails.Reminder, error) {
	db := r.db.WithContext(ctx)
	user, ok := cache.users[d.UserID]
	if !ok {
		if err := db.Take(&user, d.UserID).Error; err != nil {
			return "", emails.Reminder{}, err
		}
		cache.users[d.UserID] = user
	}
	// Every mail, a retry too, carries a fresh unsubscribe token, stored
	// before the mail leaves as its SHA-256 only; every link a user was
	// sent keeps working (accounts.UserByUnsubscribeToken).
	unsubscribe := rand.Text()
	if err := db.Create(&models.UnsubscribeToken{UserID: user.ID, TokenHash: accounts.HashToken(unsubscribe)}).Error; err != nil {
		return "", emails.Reminder{}, err
	}
	wsName, ok := cache.workspaces[d.WorkspaceID]
	if !ok {
		var ws models.Workspace
		if err := db.Take(&ws, d.WorkspaceID).Error; err != nil {
			return "", emails.Reminder{}, err
		}
		wsName = ws.Name
		cache.workspaces[d.WorkspaceID] = wsName
	}
	k := d.Key
	exp := *k.ExpiresAt
	data := emails.Reminder{
		Name:            user.DisplayName(),
		KeyName:         k.Name,
		Hint:            k.Hint,
		Workspace:       wsName,
		Environment:     k.Environment,
		ExpiresUTC:      exp.UTC().Format("Mon 2 Jan 2006 15:04 UTC"),
		ExpiresRelative: views.Relative(exp, now),
		LastUsed:        "never",
		KeyURL:          fmt.Sprintf("%s/settings/api-keys/%d?workspace=%d", r.baseURL, k.ID, k.WorkspaceID),
		UnsubscribeURL:  r.baseURL + "/unsubscribe/" + unsubscribe,
		Expired:         keys.Stage(d.Stage) == keys.StageExpired,
	}
	if k.LastUsedAt != nil {
		data.LastUsed = views.Exact(*k.LastUsedAt) + " (" + views.Relative(*k.LastUsedAt, now) + ")"
	}
	subject := fmt.Sprintf("Your API key %q expires %s", k.Name, data.ExpiresRelative)
	if data.Expired {
		subject = fmt.Sprintf("Your API key %q has expired", k.Name)
	}
	data.Headline = subject + "."
	return subject, data, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// Deliveries lists a workspace's newest reminder deliveries, for its
// admins' delivery log (index reminder_deliveries_workspace_idx).
func (r *Reminders) Deliveries(ctx context.Context, workspaceID int64, limit int) ([]models.ReminderDelivery, error) {
	var out []models.ReminderDelivery
	err := r.db.WithContext(ctx).Preload("Key").Where("workspace_id = ?", workspaceID).
		Order("created_at DESC, id DESC").Limit(limit).Find(&out).Error
	return out, err
}

// ErrNotRetryable: only a failed delivery can be retried.
var ErrNotRetryable = errors.New("scheduler: only failed deliveries can be retried")

// Retry puts a failed delivery back in the queue, due now.
func (r *Reminders) Retry(ctx context.Context, workspaceID, id int64) error {
	res := r.db.WithContext(ctx).Model(&models.ReminderDelivery{}).
		Where("id = ? AND workspace_id = ? AND status = ?", id, workspaceID, "failed").
		Updates(map[string]any{"status": "pending", "attempts": 0, "next_attempt_at": r.clock.Now(), "last_error": ""})
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		return ErrNotRetryable
	}
	return nil
}
