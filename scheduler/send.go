package scheduler

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"time"

	"gorm.io/gorm"

	"keysmith/accounts"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/outbox"
	"keysmith/views"
	"keysmith/views/emails"
)

// Compose writes the claimed reminders at send time, with one query or
// insert per claim for keys, people, workspaces and unsubscribe tokens
// (the outbox's Composer for reminders). Reminders of keys revoked,
// replaced or disabled meanwhile are cancelled.
func (r *Reminders) Compose(ctx context.Context, db *gorm.DB, ds []models.Delivery, now time.Time) ([]outbox.Ready, []int64, error) {
	keyIDs := make([]int64, 0, len(ds))
	for _, d := range ds {
		if !slices.Contains(keyIDs, *d.KeyID) {
			keyIDs = append(keyIDs, *d.KeyID)
		}
	}
	var ks []models.APIKey
	err := db.Select("id, workspace_id, name, hint, environment, expires_at, last_used_at, revoked_at, rotated_to_id, disabled_at").
		Where("id IN ?", keyIDs).Find(&ks).Error
	if err != nil {
		return nil, nil, err
	}
	for i := range ds {
		if j := slices.IndexFunc(ks, func(k models.APIKey) bool { return k.ID == *ds[i].KeyID }); j >= 0 {
			ds[i].Key = ks[j]
		}
	}
	var cancelled []int64
	var live []models.Delivery
	for _, d := range ds {
		if d.Key.ID == 0 || d.Key.ExpiresAt == nil || d.Key.RevokedAt != nil || d.Key.RotatedToID != nil || d.Key.DisabledAt != nil {
			cancelled = append(cancelled, d.ID)
		} else {
			live = append(live, d)
		}
	}
	if len(live) == 0 {
		return nil, cancelled, nil
	}
	users, workspaces, err := load(db, live)
	if err != nil {
		return nil, nil, err
	}
	// Every mail, a retry too, carries a fresh unsubscribe token, stored
	// before the mail leaves as its SHA-256 only; every link a user was
	// sent keeps working (accounts.UserByUnsubscribeToken).
	plain := make([]string, len(live))
	tokens := make([]models.UnsubscribeToken, len(live))
	for i, d := range live {
		plain[i] = rand.Text()
		tokens[i] = models.UnsubscribeToken{UserID: *d.UserID, TokenHash: accounts.HashToken(plain[i])}
	}
	if err := db.Create(&tokens).Error; err != nil {
		return nil, nil, err
	}
	ready := make([]outbox.Ready, len(live))
	for i, d := range live {
		subject, data := r.reminderMail(d, users[*d.UserID], workspaces[*d.WorkspaceID], plain[i], now)
		msg, err := r.mail.Reminder(ctx, d.Recipient, subject, data)
		if err != nil {
			return nil, nil, err
		}
		// Stable per delivery, so a resend after a crash is recognisable.
		msg.MessageID = fmt.Sprintf("reminder-%d@%s", d.ID, r.mail.Domain())
		ready[i] = outbox.Ready{Delivery: d, Send: func(ctx context.Context) (int, error) { return 0, r.mail.Send(ctx, msg) }}
	}
	return ready, cancelled, nil
}

// load reads the recipients and workspaces of a claim.
func load(db *gorm.DB, ds []models.Delivery) (map[int64]models.User, map[int64]string, error) {
	var userIDs, wsIDs []int64
	for _, d := range ds {
		if !slices.Contains(userIDs, *d.UserID) {
			userIDs = append(userIDs, *d.UserID)
		}
		if !slices.Contains(wsIDs, *d.WorkspaceID) {
			wsIDs = append(wsIDs, *d.WorkspaceID)
		}
	}
	users, workspaces := map[int64]models.User{}, map[int64]string{}
	var us []models.User
	if err := db.Where("id IN ?", userIDs).Find(&us).Error; err != nil {
		return nil, nil, err
	}
	for _, u := range us {
		users[u.ID] = u
	}
	var wss []models.Workspace
	if err := db.Where("id IN ?", wsIDs).Find(&wss).Error; err != nil {
		return nil, nil, err
	}
	for _, ws := range wss {
		workspaces[ws.ID] = ws.Name
	}
	return users, workspaces, nil
}

func (r *Reminders) reminderMail(d models.Delivery, user models.User, workspace, unsubscribe string, now time.Time) (string, emails.Reminder) {
	k := d.Key
	exp := *k.ExpiresAt
	data := emails.Reminder{
		Name:            user.DisplayName(),
		KeyName:         k.Name,
		Hint:            k.Hint,
		Workspace:       workspace,
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
	return subject, data
}
