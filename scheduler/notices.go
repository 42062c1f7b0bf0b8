package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"gorm.io/gorm"

	"keysmith/clock"
	"keysmith/keys"
	"keysmith/mailer"
	"keysmith/models"
	"keysmith/outbox"
	"keysmith/views"
	"keysmith/views/emails"
	"keysmith/webhooks"
)

// Notices tells a key's people what happened to it outside their hands:
// a scanner found it leaked (always mailed: it is a security matter), or
// the inactivity policy warns of it or acted on it (mailed like expiry
// reminders, which a member may turn off). Mails go through the outbox;
// the matching webhooks come from the audit log, but for the inactivity
// warning, which is not a change, so it is queued here.
type Notices struct {
	db       *gorm.DB
	clock    clock.Clock
	log      *slog.Logger
	mail     *mailer.Mailer
	outbox   *outbox.Outbox
	webhooks *webhooks.Service
	baseURL  string
}

// NewNotices returns the notices.
func NewNotices(db *gorm.DB, clk clock.Clock, log *slog.Logger, mail *mailer.Mailer, ob *outbox.Outbox, wh *webhooks.Service, baseURL string) *Notices {
	return &Notices{db: db, clock: clk, log: log, mail: mail, outbox: ob, webhooks: wh, baseURL: strings.TrimRight(baseURL, "/")}
}

// KeyLeaked mails the key's creator and the workspace's owners and admins
// that a scanner found the key and Keysmith revoked it.
func (n *Notices) KeyLeaked(ctx context.Context, k models.APIKey, r keys.LeakReport) {
	facts := []string{"Key: " + k.Name + " (" + k.Hint + ")", "Found: " + r.URL}
	if r.Source != "" {
		facts = append(facts, "Where: "+r.Source)
	}
	n.tell(ctx, k, true, "Your API key "+k.Name+" was found in public and revoked", emails.Notice{
		Headline: fmt.Sprintf("A secret scanner found the API key %q in a public place, and Keysmith revoked it.", k.Name),
		Facts:    facts,
		Body:     "Requests with this key now fail. Remove the key from where it was found, create a replacement, and check the key's audit log for use you do not recognise.",
	})
}

// InactivityWarning warns that the policy will act on an unused key at
// actAt, by mail and by a key.expiring webhook whose stage is "inactive".
func (n *Notices) InactivityWarning(ctx context.Context, k models.APIKey, actAt time.Time) {
	now := n.clock.Now()
	n.tell(ctx, k, false, "Your API key "+k.Name+" is unused and will be switched off "+views.Relative(actAt, now), emails.Notice{
		Headline: fmt.Sprintf("The API key %q has not been used for a while. The workspace's inactivity policy acts on it %s.", k.Name, views.Relative(actAt, now)),
		Facts:    []string{"Key: " + k.Name + " (" + k.Hint + ")", "On: " + actAt.UTC().Format("Mon 2 Jan 2006 15:04 UTC")},
		Body:     "If something still needs this key, use it once before then and nothing happens. Otherwise there is nothing to do.",
	})
	data := webhooks.EventData{WorkspaceID: k.WorkspaceID, Key: &webhooks.KeyData{ID: k.ID, Name: k.Name, Hint: k.Hint, Environment: k.Environment, ExpiresAt: k.ExpiresAt},
		Stage: "inactive", Message: "unused; the inactivity policy acts on it at " + actAt.UTC().Format(time.RFC3339), At: now.UTC()}
	if err := n.webhooks.Emit(ctx, n.db, "key.expiring", data, fmt.Sprintf("key.expiring:%d:inactive:%d", k.ID, actAt.Unix())); err != nil {
		n.fail(err)
	}
}

// InactivityAction tells of a key the policy disabled or revoked.
func (n *Notices) InactivityAction(ctx context.Context, k models.APIKey, action string) {
	done := "disabled"
	if action == string(keys.InactivityRevoke) {
		done = "revoked"
	}
	n.tell(ctx, k, false, "Your unused API key "+k.Name+" was "+done, emails.Notice{
		Headline: fmt.Sprintf("The workspace's inactivity policy %s the unused API key %q.", done, k.Name),
		Facts:    []string{"Key: " + k.Name + " (" + k.Hint + ")"},
		Body:     "Requests with this key now fail. A disabled key can be enabled again from its page; a revoked one cannot.",
	})
}

// tell mails the key's creator and the workspace's owners and admins;
// always, or only those who get expiry reminders.
func (n *Notices) tell(ctx context.Context, k models.APIKey, always bool, subject string, notice emails.Notice) {
	var creators []int64
	if k.CreatedByID != nil {
		creators = []int64{*k.CreatedByID}
	}
	db := n.db.WithContext(ctx)
	rs, err := people(db, k.WorkspaceID, creators, always)
	if err != nil {
		n.fail(err)
		return
	}
	notice.Link, notice.LinkLabel = fmt.Sprintf("%s/settings/api-keys/%d?workspace=%d", n.baseURL, k.ID, k.WorkspaceID), "Open the key"
	var mails []outbox.Mail
	for _, r := range rs {
		msg, err := n.mail.Notice(ctx, r.Email, subject, withName(notice, r.Name))
		if err != nil {
			n.fail(err)
			return
		}
		mails = append(mails, outbox.Mail{Message: msg, WorkspaceID: k.WorkspaceID, UserID: r.ID, KeyID: k.ID})
	}
	if err := n.outbox.SendMail(ctx, mails...); err != nil {
		n.fail(err)
	}
}

func withName(n emails.Notice, name string) emails.Notice { n.Name = name; return n }

// fail logs a notice not queued: the change it is about stands.
func (n *Notices) fail(err error) {
	n.log.Error("a notice about a key was not queued", "err", err)
}

// person is someone a notice goes to.
type person struct {
	ID          int64
	Email, Name string
}

// people are the workspace's owners and admins and the creators given,
// every one of them or only those who get expiry reminders.
func people(db *gorm.DB, workspaceID int64, creators []int64, always bool) ([]person, error) {
	var out []person
	q := db.Table("users").Select("users.id, users.email, users.name").
		Joins("JOIN memberships ON memberships.user_id = users.id AND memberships.workspace_id = ?", workspaceID)
	if !always {
		q = q.Where("users.reminders_opt_out = ?", false)
	}
	roles := []models.Role{models.RoleOwner, models.RoleAdmin}
	if len(creators) > 0 {
		q = q.Where("memberships.role IN ? OR users.id IN ?", roles, creators)
	} else {
		q = q.Where("memberships.role IN ?", roles)
	}
	err := q.Order("users.id").Scan(&out).Error
	for i := range out {
		if out[i].Name == "" {
			out[i].Name = out[i].Email
		}
	}
	return out, err
}
