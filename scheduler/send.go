package scheduler

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"

	"keysmith/accounts"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/views"
	"keysmith/views/emails"
)

// Send delivers the due deliveries this process can claim until none is
// left. It claims ClaimBatch at a time when its queue runs dry (so a slow
// relay leaves the rest to other replicas), sends Concurrency at once, and
// renews the leases of what it holds. When ctx ends it claims nothing more,
// gives back what it has not started, and waits up to Drain for the mails
// in flight, which it still records: their sends, renewals and marks do
// not use ctx.
//
// One goroutine does all of a pass's database work (claims, renewals,
// marks) while the senders render and talk SMTP: answers that arrive
// together are recorded in one statement, and SQLite never has two writers
// of ours waiting on each other.
func (r *Reminders) Send(ctx context.Context) error {
	work, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	p := &sendPass{r: r, token: rand.Text(), work: work, held: map[int64]bool{},
		users: map[int64]models.User{}, workspaces: map[int64]string{}}
	every := r.Renew
	if every <= 0 || every >= r.Lease {
		every = r.Lease / 4
	}
	renew := time.NewTicker(every)
	defer renew.Stop()
	slots := max(r.Concurrency, 1)
	batch := max(r.ClaimBatch, slots)
	outcomes := make(chan outcome, slots) // never blocks a sender: at most slots are busy
	var queue []reminderMail              // claimed and composed, waiting for a sender
	var answered []outcome                // sent or refused, not yet recorded
	var recordBy <-chan time.Time         // when the oldest answer must be recorded
	busy, exhausted, stopping, recordNow := 0, false, false, false
	cancelled, drain := ctx.Done(), (<-chan time.Time)(nil)
	for {
		if len(queue) == 0 && !exhausted && !stopping {
			claimed, mails, err := p.claim(ctx, batch)
			if err != nil && ctx.Err() == nil {
				p.fail(err)
			}
			exhausted = err != nil || claimed < batch // nothing else is due, or other replicas hold it
			queue = mails
		}
		for ; busy < slots && len(queue) > 0; busy++ {
			m := queue[0]
			queue = queue[1:]
			go func() { outcomes <- outcome{m.d, r.mail.SendReminder(work, m.d.Email, m.msgID, m.subject, m.data)} }()
		}
		if len(answered) > 0 && (busy == 0 || len(answered) >= batch || recordNow) {
			p.record(answered)
			answered, recordBy, recordNow = nil, nil, false
		}
		if len(queue) == 0 && !exhausted && !stopping && busy < slots {
			continue // senders idle and nothing queued (keys revoked meanwhile): claim again now
		}
		if busy == 0 && (exhausted || stopping) {
			return errors.Join(p.errs...)
		}
		select {
		case o := <-outcomes:
			busy--
			answered = append(answered, o)
			if recordBy == nil {
				recordBy = time.After(recordWithin)
			}
		case <-recordBy:
			recordNow = true
		case <-renew.C:
			p.renew()
		case <-cancelled:
			cancelled, stopping = nil, true // claim nothing more; let the mails in flight finish
			p.release(queue)
			queue = nil
			t := time.NewTimer(r.Drain)
			defer t.Stop()
			drain = t.C
		case <-drain:
			p.record(answered)
			abort()
			r.log.Error("shutdown: expiry reminders still being sent; each is sent again when its lease ends", "in_flight", busy, "drain", r.Drain)
			return errors.Join(append(p.errs, fmt.Errorf("%d reminders still being sent after %s", busy, r.Drain))...)
		}
	}
}

// recordWithin bounds how long an answer waits to be recorded with the
// answers to the other mails in flight: one statement for several marks,
// at the cost of a few milliseconds more in which a crash resends a mail.
const recordWithin = 5 * time.Millisecond

// sendPass is one Send: the token its claims carry, the deliveries it holds
// (renewed until they are recorded), and what it loaded to compose them.
// Only Send's goroutine uses it.
type sendPass struct {
	r     *Reminders
	token string          // written on every claim of this pass: the owner
	work  context.Context // composing, renewals and marks: outlives shutdown by at most Drain
	held  map[int64]bool  // claimed and not yet recorded: renewed
	errs  []error

	// A big pass mails the same few admins about many keys.
	users      map[int64]models.User
	workspaces map[int64]string
}

// reminderMail is one claimed delivery, composed and ready to send.
type reminderMail struct {
	d       models.ReminderDelivery
	msgID   string
	subject string
	data    emails.Reminder
}

// outcome is what the SMTP server said to one mail.
type outcome struct {
	d   models.ReminderDelivery
	err error
}

// claim takes up to n due deliveries in one statement, each lease running
// from now, this claim's moment, and composes their mails.
func (p *sendPass) claim(ctx context.Context, n int) (int, []reminderMail, error) {
	r := p.r
	now := r.clock.Now()
	skipLocked := "" // SQLite runs one writer at a time
	if models.IsPostgres(r.db) {
		skipLocked = " FOR UPDATE SKIP LOCKED" // replicas claiming together take different rows
	}
	// Picked on reminder_deliveries_due_idx (status, next_attempt_at),
	// updated by primary key. The picked rows are materialized: PostgreSQL
	// would otherwise run the locking subquery again for each row and claim
	// far more than n. FOR UPDATE re-checks the conditions on a row another
	// replica changed since the statement began; on SQLite the statement is
	// the only writer.
	var ds []models.ReminderDelivery
	err := r.db.WithContext(ctx).Raw(`WITH picked AS MATERIALIZED (
			SELECT id FROM reminder_deliveries
			WHERE status = 'pending' AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until < ?)
			ORDER BY next_attempt_at LIMIT ?`+skipLocked+`)
		UPDATE reminder_deliveries SET claimed_until = ?, claim_token = ?
		WHERE id IN (SELECT id FROM picked)
		RETURNING id, workspace_id, key_id, stage, user_id, email, attempts`, now, now, n, now.Add(r.Lease), p.token).Scan(&ds).Error
	if err != nil || len(ds) == 0 {
		return 0, nil, err
	}
	slices.SortFunc(ds, func(a, b models.ReminderDelivery) int { return cmp.Compare(a.ID, b.ID) })
	for _, d := range ds {
		p.held[d.ID] = true
	}
	// Claimed: from here on the work context, so shutdown cannot strand a
	// claim half composed.
	mails, err := p.compose(r.db.WithContext(p.work), ds, now)
	if err != nil {
		for _, d := range ds {
			delete(p.held, d.ID) // no longer renewed: retried when the leases end
		}
		return len(ds), nil, err
	}
	return len(ds), mails, nil
}

// compose writes the claimed deliveries' mails, with one query or insert
// per claim for keys, people, workspaces and unsubscribe tokens.
// Deliveries of keys revoked, replaced or disabled meanwhile are cancelled.
func (p *sendPass) compose(db *gorm.DB, ds []models.ReminderDelivery, now time.Time) ([]reminderMail, error) {
	keyIDs := make([]int64, 0, len(ds))
	for _, d := range ds {
		if !slices.Contains(keyIDs, d.KeyID) {
			keyIDs = append(keyIDs, d.KeyID)
		}
	}
	var ks []models.APIKey
	err := db.Select("id, workspace_id, name, hint, environment, expires_at, last_used_at, revoked_at, rotated_to_id, disabled_at").
		Where("id IN ?", keyIDs).Find(&ks).Error
	if err != nil {
		return nil, err
	}
	for i := range ds {
		if j := slices.IndexFunc(ks, func(k models.APIKey) bool { return k.ID == ds[i].KeyID }); j >= 0 {
			ds[i].Key = ks[j]
		}
	}
	var cancelled []int64
	var live []models.ReminderDelivery
	for _, d := range ds {
		if d.Key.ID == 0 || d.Key.ExpiresAt == nil || d.Key.RevokedAt != nil || d.Key.RotatedToID != nil || d.Key.DisabledAt != nil {
			cancelled = append(cancelled, d.ID)
			delete(p.held, d.ID)
		} else {
			live = append(live, d)
		}
	}
	if len(cancelled) > 0 {
		err := p.mine(db, cancelled...).Updates(map[string]any{"status": "cancelled", "claimed_until": nil, "claim_token": ""}).Error
		if err != nil {
			return nil, err
		}
	}
	if len(live) == 0 {
		return nil, nil
	}
	if err := p.load(db, live); err != nil {
		return nil, err
	}
	// Every mail, a retry too, carries a fresh unsubscribe token, stored
	// before the mail leaves as its SHA-256 only; every link a user was
	// sent keeps working (accounts.UserByUnsubscribeToken).
	plain := make([]string, len(live))
	tokens := make([]models.UnsubscribeToken, len(live))
	for i, d := range live {
		plain[i] = rand.Text()
		tokens[i] = models.UnsubscribeToken{UserID: d.UserID, TokenHash: accounts.HashToken(plain[i])}
	}
	if err := db.Create(&tokens).Error; err != nil {
		return nil, err
	}
	mails := make([]reminderMail, len(live))
	for i, d := range live {
		mails[i] = p.r.reminderMail(d, p.users[d.UserID], p.workspaces[d.WorkspaceID], plain[i], now)
	}
	return mails, nil
}

// load reads the recipients and workspaces this pass has not seen yet.
func (p *sendPass) load(db *gorm.DB, ds []models.ReminderDelivery) error {
	var userIDs, wsIDs []int64
	for _, d := range ds {
		if _, ok := p.users[d.UserID]; !ok && !slices.Contains(userIDs, d.UserID) {
			userIDs = append(userIDs, d.UserID)
		}
		if _, ok := p.workspaces[d.WorkspaceID]; !ok && !slices.Contains(wsIDs, d.WorkspaceID) {
			wsIDs = append(wsIDs, d.WorkspaceID)
		}
	}
	if len(userIDs) > 0 {
		var users []models.User
		if err := db.Where("id IN ?", userIDs).Find(&users).Error; err != nil {
			return err
		}
		for _, u := range users {
			p.users[u.ID] = u
		}
	}
	if len(wsIDs) > 0 {
		var wss []models.Workspace
		if err := db.Where("id IN ?", wsIDs).Find(&wss).Error; err != nil {
			return err
		}
		for _, ws := range wss {
			p.workspaces[ws.ID] = ws.Name
		}
	}
	return nil
}

func (r *Reminders) reminderMail(d models.ReminderDelivery, user models.User, workspace, unsubscribe string, now time.Time) reminderMail {
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
	// Stable per delivery, so a resend after a crash is recognisable.
	msgID := fmt.Sprintf("reminder-%d@%s", d.ID, r.mail.Domain())
	return reminderMail{d: d, msgID: msgID, subject: subject, data: data}
}

// record writes what the SMTP server said to the mails that came back
// together, only where the claim is still this pass's: sent (one statement
// for all of them), retried after a backoff, or failed after MaxAttempts.
func (p *sendPass) record(done []outcome) {
	r := p.r
	db := r.db.WithContext(p.work)
	now := r.clock.Now()
	var sent []int64
	for _, o := range done {
		delete(p.held, o.d.ID)
		if o.err == nil {
			sent = append(sent, o.d.ID)
			r.metrics.Delivery("sent")
			continue
		}
		attempts := o.d.Attempts + 1
		update := map[string]any{"attempts": attempts, "last_error": truncate(o.err.Error(), 500), "claimed_until": nil, "claim_token": ""}
		if attempts >= r.MaxAttempts {
			update["status"] = "failed"
			r.metrics.Delivery("failed")
			r.log.Error("expiry reminder failed for good", "delivery_id", o.d.ID, "key_id", o.d.KeyID, "attempts", attempts, "err", o.err)
		} else {
			update["next_attempt_at"] = now.Add(Backoff(attempts))
			r.metrics.Delivery("retry")
			r.log.Warn("expiry reminder not sent, will retry", "delivery_id", o.d.ID, "attempt", attempts, "err", o.err)
		}
		res := p.mine(db, o.d.ID).Updates(update)
		switch {
		case res.Error != nil:
			p.fail(fmt.Errorf("record delivery %d: %w", o.d.ID, res.Error)) // the lease ends, then it is retried
		case res.RowsAffected == 0:
			p.lost(o.d.ID, "not sent")
		}
	}
	if len(sent) == 0 {
		return
	}
	var marked []int64
	err := db.Raw(`UPDATE reminder_deliveries
		SET status = 'sent', sent_at = ?, attempts = attempts + 1, last_error = '', claimed_until = NULL, claim_token = ''
		WHERE id IN ? AND claim_token = ? AND status = 'pending' RETURNING id`, now, sent, p.token).Scan(&marked).Error
	if err != nil {
		// The claims stay until their leases end; then the mails are sent
		// again, with the same Message-IDs.
		p.fail(fmt.Errorf("mark %d reminders sent: %w", len(sent), err))
		return
	}
	for _, id := range sent {
		if !slices.Contains(marked, id) {
			p.lost(id, "sent")
		}
	}
}

// release gives back claims this pass will not send after all (it is
// stopping), for another pass or replica to take at once.
func (p *sendPass) release(mails []reminderMail) {
	if len(mails) == 0 {
		return
	}
	ids := make([]int64, len(mails))
	for i, m := range mails {
		ids[i] = m.d.ID
		delete(p.held, m.d.ID)
	}
	err := p.mine(p.r.db.WithContext(p.work), ids...).Updates(map[string]any{"claimed_until": nil, "claim_token": ""}).Error
	if err != nil {
		p.r.log.Warn("expiry reminder claims not given back; taken again when their leases end", "deliveries", len(ids), "err", err)
	}
}

func (p *sendPass) lost(id int64, outcome string) {
	p.r.log.Warn("expiry reminder claim lost: its lease ended and another process took the delivery over", "delivery_id", id, "outcome", outcome)
}

// mine narrows to deliveries this pass still holds: a claim another process
// took over carries its token, not ours.
func (p *sendPass) mine(db *gorm.DB, ids ...int64) *gorm.DB {
	return db.Model(&models.ReminderDelivery{}).Where("id IN ? AND claim_token = ? AND status = ?", ids, p.token, "pending")
}

// renew extends the leases of what the pass holds (queued or in flight), so
// a slow relay never lets a claim lapse while its mail is being sent.
func (p *sendPass) renew() {
	if len(p.held) == 0 {
		return
	}
	ids := make([]int64, 0, len(p.held))
	for id := range p.held {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	err := p.mine(p.r.db.WithContext(p.work), ids...).UpdateColumn("claimed_until", p.r.clock.Now().Add(p.r.Lease)).Error
	if err != nil {
		p.r.log.Warn("expiry reminder leases not renewed", "deliveries", len(ids), "err", err)
	}
}

func (p *sendPass) fail(err error) { p.errs = append(p.errs, err) }

// truncate shortens an SMTP error to at most n bytes of text PostgreSQL
// stores: valid UTF-8 cut between characters, without NUL bytes.
func truncate(s string, n int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
