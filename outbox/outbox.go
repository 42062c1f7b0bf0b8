// Package outbox is Keysmith's one durable delivery queue (SPEC §10):
// every email and every webhook call is a row in deliveries before it is
// sent, claimed with a lease, sent, and marked sent only once the receiver
// accepted it. Failures are retried with backoff, then marked failed for
// an admin to see and retry. Nothing is sent outside it, so nothing is
// lost to a crash or an outage.
//
// A pass claims due deliveries a batch at a time, paced to what its
// senders answer in about a second (at most ClaimBatch), each with a
// lease that runs from the moment it is claimed and the pass's claim
// token as its owner (a conditional UPDATE that only one process wins, on
// SQLite and PostgreSQL alike). A Composer per kind turns the claimed rows
// into sends: reminders are written at send time (a key revoked meanwhile
// cancels its reminder), mails and webhook calls were written when they
// were enqueued and wait sealed. Up to Concurrency sends run at once; the
// leases of what the pass holds are renewed every Renew, and a renewal or
// a mark only applies while the row still carries the pass's token, so a
// claim another replica took over is never extended or marked by this one.
//
// At shutdown a pass claims nothing more, gives back the claims it has not
// started, lets the sends in flight finish and records them, for at most
// Drain.
//
// The honest limit: a crash after the receiver accepted a message and
// before it was marked sent (a few milliseconds later) sends it again once
// the lease expires, with the same Message-ID or webhook-id, so the
// duplicate is recognisable.
package outbox

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"keysmith/clock"
	"keysmith/metrics"
	"keysmith/models"
)

// Kind says what a delivery carries; each kind has a Composer.
type Kind string

const (
	KindReminder Kind = "reminder" // an expiry reminder, written at send time (package scheduler)
	KindMail     Kind = "mail"     // any other email, written when enqueued
	KindWebhook  Kind = "webhook"  // a webhook call, signed at send time
)

// Sealer keeps payloads encrypted at rest (tokens.Service).
type Sealer interface {
	Seal(purpose string, plaintext []byte) ([]byte, error)
	Open(purpose string, sealed []byte) ([]byte, error)
}

// Ready is a claimed delivery, composed: Send delivers it and says what
// the receiver answered (an HTTP status for webhooks, 0 for mail).
type Ready struct {
	Delivery models.Delivery
	Send     func(ctx context.Context) (code int, err error)
}

// Composer prepares the claimed deliveries of its kind: each either ready
// to send or cancelled (no longer wanted: its key was revoked, say).
type Composer interface {
	Compose(ctx context.Context, db *gorm.DB, ds []models.Delivery, now time.Time) (ready []Ready, cancelled []int64, err error)
}

// Message is what Enqueue takes: one delivery to make.
type Message struct {
	Kind        Kind
	WorkspaceID int64 // 0: none (a sign-up link)
	KeyID       int64
	UserID      int64
	EndpointID  int64
	Stage       string
	Recipient   string // an email address, or the webhook's URL
	Subject     string // what the delivery log shows
	Payload     any    // JSON, sealed at rest; nil for none
	Dedupe      string // when set, a second delivery with the same value is not made
}

// Outbox is the delivery queue. It is safe for concurrent use.
type Outbox struct {
	db        *gorm.DB
	clock     clock.Clock
	sealer    Sealer
	log       *slog.Logger
	metrics   *metrics.Metrics
	composers map[Kind]Composer
	now       sync.WaitGroup // sends started by Deliver

	Lease       time.Duration // how long a claim lasts unless renewed (clock time)
	Renew       time.Duration // how often a pass extends the claims it holds (wall time); less than Lease
	Concurrency int           // sends at once (KEYSMITH_MAIL_CONCURRENCY)
	ClaimBatch  int           // the most a claim takes (at least Concurrency); see New
	Drain       time.Duration // at shutdown, how long sends in flight may take (KEYSMITH_SHUTDOWN_TIMEOUT)
	MaxAttempts int           // then the delivery is failed
}

// New returns the outbox. m may be nil.
//
// A claim takes up to 128 deliveries: each claim, compose and record is a
// write of its own whatever its size, so on SQLite a pass of 5,000
// reminders took 1.05 s claiming 16 at a time and 0.41 s claiming 128
// (docs/BENCHMARKS-notes.md). Claims are paced (claimSize): a pass takes
// what its senders answer in about a second, so slow receivers keep it to
// one per sender and the rest stays for other replicas. What a pass holds
// and has not started is renewed, and given back at shutdown.
func New(db *gorm.DB, clk clock.Clock, sealer Sealer, log *slog.Logger, m *metrics.Metrics) *Outbox {
	o := &Outbox{db: db, clock: clk, sealer: sealer, log: log, metrics: m, composers: map[Kind]Composer{},
		Lease: 2 * time.Minute, Renew: 30 * time.Second, Concurrency: 4, ClaimBatch: 128, Drain: 15 * time.Second, MaxAttempts: 8}
	m.PendingDeliveries(o.PendingCount)
	return o
}

// Register makes c the composer of kind k.
func (o *Outbox) Register(k Kind, c Composer) { o.composers[k] = c }

// Backoff is the wait before retry n (1-based): 1, 2, 4 … minutes, at most an hour.
func Backoff(n int) time.Duration {
	d := time.Minute << min(n-1, 6)
	return min(d, time.Hour)
}

// sealPurpose binds a payload to its kind.
func sealPurpose(k string) string { return "outbox " + k }

// Enqueue adds deliveries, due now, in db (a transaction of the caller's,
// so a delivery exists exactly when the change it reports does; nil for
// the outbox's own).
func (o *Outbox) Enqueue(ctx context.Context, db *gorm.DB, msgs ...Message) ([]int64, error) {
	if db == nil {
		db = o.db
	}
	now := o.clock.Now()
	rows := make([]models.Delivery, len(msgs))
	for i, m := range msgs {
		d := models.Delivery{Kind: string(m.Kind), Stage: m.Stage, Recipient: m.Recipient, Subject: m.Subject,
			Status: "pending", NextAttemptAt: now, CreatedAt: now}
		if m.Dedupe != "" {
			d.DedupeKey = &m.Dedupe
		}
		for _, p := range []struct {
			v   int64
			dst **int64
		}{{m.WorkspaceID, &d.WorkspaceID}, {m.KeyID, &d.KeyID}, {m.UserID, &d.UserID}, {m.EndpointID, &d.EndpointID}} {
			if p.v != 0 {
				v := p.v
				*p.dst = &v
			}
		}
		if m.Payload != nil {
			b, err := json.Marshal(m.Payload)
			if err != nil {
				return nil, err
			}
			if d.Payload, err = o.sealer.Seal(sealPurpose(d.Kind), b); err != nil {
				return nil, err
			}
		}
		rows[i] = d
	}
	if len(rows) == 0 {
		return nil, nil
	}
	// deliveries_dedupe_idx: a delivery made before stays as it is. Rows
	// that may be skipped go one at a time, so each gets its own id back.
	if !slices.ContainsFunc(rows, func(d models.Delivery) bool { return d.DedupeKey != nil }) {
		if err := db.WithContext(ctx).Omit("Key").Create(&rows).Error; err != nil {
			return nil, err
		}
	} else {
		for i := range rows {
			if err := db.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).Omit("Key").Create(&rows[i]).Error; err != nil {
				return nil, err
			}
		}
	}
	ids := make([]int64, 0, len(rows))
	for _, r := range rows {
		if r.ID != 0 {
			ids = append(ids, r.ID)
		}
	}
	return ids, nil
}

// Deliver enqueues msgs and sends them at once in the background (so a
// request's timing says nothing about what it sent); what fails stays in
// the queue for the scheduler's passes to retry.
func (o *Outbox) Deliver(ctx context.Context, msgs ...Message) error {
	ids, err := o.Enqueue(ctx, nil, msgs...)
	if err != nil {
		return err
	}
	o.now.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := o.send(ctx, ids); err != nil {
			o.log.Warn("outbox: a delivery was not sent at once; the next pass retries it", "err", err)
		}
	})
	return nil
}

// Wait waits for the sends Deliver started: shutdown calls it, and tests
// before they read a mailbox.
func (o *Outbox) Wait() { o.now.Wait() }

// Open reads a delivery's payload into v.
func (o *Outbox) Open(d models.Delivery, v any) error {
	b, err := o.sealer.Open(sealPurpose(d.Kind), d.Payload)
	if err != nil {
		return fmt.Errorf("open delivery %d: %w", d.ID, err)
	}
	return json.Unmarshal(b, v)
}

// Send delivers every due delivery this process can claim until none is
// left (a scheduler pass).
func (o *Outbox) Send(ctx context.Context) error { return o.send(ctx, nil) }

// send is one pass, over every due delivery or only those of ids.
//
// One goroutine does all of a pass's database work (claims, renewals,
// marks) while the senders talk to the receivers: answers that arrive
// together are recorded in one statement, and SQLite never has two writers
// of ours waiting on each other.
func (o *Outbox) send(ctx context.Context, only []int64) error {
	work, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	p := &pass{o: o, token: rand.Text(), work: work, held: map[int64]bool{}, only: only, lastClaim: time.Now()}
	every := o.Renew
	if every <= 0 || every >= o.Lease {
		every = o.Lease / 4
	}
	renew := time.NewTicker(every)
	defer renew.Stop()
	slots := max(o.Concurrency, 1)
	batch := max(o.ClaimBatch, slots)
	outcomes := make(chan outcome, slots) // never blocks a sender: at most slots are busy
	var queue []Ready                     // claimed and composed, waiting for a sender
	var answered []outcome                // sent or refused, not yet recorded
	var recordBy <-chan time.Time         // when the oldest answer must be recorded
	busy, exhausted, stopping, recordNow := 0, false, false, false
	cancelled, drain := ctx.Done(), (<-chan time.Time)(nil)
	for {
		if len(queue) == 0 && !exhausted && !stopping {
			want := p.claimSize(slots, batch, time.Now())
			claimed, ready, err := p.claim(ctx, want)
			if err != nil && ctx.Err() == nil {
				p.fail(err)
			}
			exhausted = err != nil || claimed < want || only != nil // nothing else is due, or other replicas hold it
			queue = ready
		}
		for ; busy < slots && len(queue) > 0; busy++ {
			r := queue[0]
			queue = queue[1:]
			go func() {
				code, err := r.Send(work)
				outcomes <- outcome{r.Delivery, code, err}
			}()
		}
		if len(answered) > 0 && (busy == 0 || len(answered) >= batch || recordNow) {
			p.record(answered)
			answered, recordBy, recordNow = nil, nil, false
		}
		if len(queue) == 0 && !exhausted && !stopping && busy < slots {
			continue // senders idle and nothing queued (all cancelled): claim again now
		}
		if busy == 0 && (exhausted || stopping) {
			return errors.Join(p.errs...)
		}
		select {
		case o := <-outcomes:
			busy--
			p.answers++
			answered = append(answered, o)
			if recordBy == nil {
				recordBy = time.After(recordWithin)
			}
		case <-recordBy:
			recordNow = true
		case <-renew.C:
			p.renew()
		case <-cancelled:
			cancelled, stopping = nil, true // claim nothing more; let the sends in flight finish
			p.release(queue)
			queue = nil
			t := time.NewTimer(o.Drain)
			defer t.Stop()
			drain = t.C
		case <-drain:
			p.record(answered)
			abort()
			o.log.Error("shutdown: deliveries still being sent; each is sent again when its lease ends", "in_flight", busy, "drain", o.Drain)
			return errors.Join(append(p.errs, fmt.Errorf("%d deliveries still being sent after %s", busy, o.Drain))...)
		}
	}
}

// recordWithin bounds how long an answer waits to be recorded with the
// answers to the other sends in flight: one statement for several marks,
// at the cost of a few milliseconds more in which a crash resends.
const recordWithin = 5 * time.Millisecond

// pass is one send: the token its claims carry, the deliveries it holds
// (renewed until they are recorded), its pace. Only its goroutine uses it.
type pass struct {
	o       *Outbox
	token   string          // written on every claim of this pass: the owner
	work    context.Context // composing, renewals and marks: outlives shutdown by at most Drain
	held    map[int64]bool  // claimed and not yet recorded: renewed
	only    []int64         // Deliver's: only these
	answers int             // sends answered so far
	errs    []error

	lastClaim       time.Time // wall time, for the pace
	answersAtClaims int       // answers when the last claim was made
}

// claimPace is how much work a claim takes: what the senders have been
// answering in this time (wall time), so that a pass holds little beyond
// what it can send soon and leaves the rest to other replicas' passes.
const claimPace = time.Second

// claimSize is how many deliveries the claim made at now takes: as many
// as the senders answer in claimPace at the pace they answered since the
// last claim, at least one per sender and at most most. With no answer
// since (the first claims of a pass, or senders all waiting) it is one
// per sender. A relay answering a mail a millisecond reaches most at
// once; a receiver that takes ten seconds to time out brings claims back
// to one per sender after the claim it slowed down, instead of holding
// most of them for minutes. Deliver's pass claims its deliveries in one
// go.
func (p *pass) claimSize(slots, most int, now time.Time) int {
	if p.only != nil {
		return most
	}
	n := slots
	if answered := p.answers - p.answersAtClaims; answered > 0 {
		elapsed := max(now.Sub(p.lastClaim), time.Millisecond)
		n = int(float64(answered) * float64(claimPace) / float64(elapsed))
	}
	p.lastClaim, p.answersAtClaims = now, p.answers
	return min(max(n, slots), most)
}

// outcome is what the receiver said to one delivery.
type outcome struct {
	d    models.Delivery
	code int
	err  error
}

// claim takes up to n due deliveries in one statement, each lease running
// from now, this claim's moment, and composes them.
func (p *pass) claim(ctx context.Context, n int) (int, []Ready, error) {
	o := p.o
	now := o.clock.Now()
	skipLocked := "" // SQLite runs one writer at a time
	if models.IsPostgres(o.db) {
		skipLocked = " FOR UPDATE SKIP LOCKED" // replicas claiming together take different rows
	}
	only, args := "", []any{now, now}
	if p.only != nil {
		only, args = " AND id IN ?", append(args, p.only)
	}
	// Picked on deliveries_due_idx (status, next_attempt_at), updated by
	// primary key. The picked rows are materialized: PostgreSQL would
	// otherwise run the locking subquery again for each row and claim far
	// more than n. FOR UPDATE re-checks the conditions on a row another
	// replica changed since the statement began.
	var ds []models.Delivery
	err := o.db.WithContext(ctx).Raw(`WITH picked AS MATERIALIZED (
			SELECT id FROM deliveries
			WHERE status = 'pending' AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until < ?)`+only+`
			ORDER BY next_attempt_at LIMIT ?`+skipLocked+`)
		UPDATE deliveries SET claimed_until = ?, claim_token = ?
		WHERE id IN (SELECT id FROM picked)
		RETURNING id, kind, workspace_id, key_id, stage, user_id, endpoint_id, recipient, subject, payload, attempts, created_at`,
		append(args, n, now.Add(o.Lease), p.token)...).Scan(&ds).Error
	if err != nil || len(ds) == 0 {
		return 0, nil, err
	}
	slices.SortFunc(ds, func(a, b models.Delivery) int { return cmp.Compare(a.ID, b.ID) })
	for _, d := range ds {
		p.held[d.ID] = true
	}
	// Claimed: from here on the work context, so shutdown cannot strand a
	// claim half composed.
	ready, err := p.compose(o.db.WithContext(p.work), ds, now)
	if err != nil {
		for _, d := range ds {
			delete(p.held, d.ID) // no longer renewed: retried when the leases end
		}
		return len(ds), nil, err
	}
	return len(ds), ready, nil
}

// compose hands each kind's claimed deliveries to its composer, and
// cancels what they no longer want.
func (p *pass) compose(db *gorm.DB, ds []models.Delivery, now time.Time) ([]Ready, error) {
	var ready []Ready
	var cancelled []int64
	for len(ds) > 0 {
		kind := ds[0].Kind
		var group, rest []models.Delivery
		for _, d := range ds {
			if d.Kind == kind {
				group = append(group, d)
			} else {
				rest = append(rest, d)
			}
		}
		ds = rest
		c, ok := p.o.composers[Kind(kind)]
		if !ok {
			return nil, fmt.Errorf("outbox: no composer for kind %q", kind)
		}
		r, cx, err := c.Compose(p.work, db, group, now)
		if err != nil {
			return nil, err
		}
		ready, cancelled = append(ready, r...), append(cancelled, cx...)
	}
	if len(cancelled) > 0 {
		for _, id := range cancelled {
			delete(p.held, id)
		}
		err := p.mine(db, cancelled...).Updates(map[string]any{"status": "cancelled", "claimed_until": nil, "claim_token": ""}).Error
		if err != nil {
			return nil, err
		}
	}
	return ready, nil
}

// record writes what the receivers said to the deliveries that came back
// together, only where the claim is still this pass's: sent (one statement
// for all of them), retried after a backoff, or failed after MaxAttempts.
func (p *pass) record(done []outcome) {
	o := p.o
	db := o.db.WithContext(p.work)
	now := o.clock.Now()
	var sent []outcome
	for _, r := range done {
		delete(p.held, r.d.ID)
		if r.err == nil {
			sent = append(sent, r)
			o.metrics.Delivery("sent")
			continue
		}
		attempts := r.d.Attempts + 1
		update := map[string]any{"attempts": attempts, "last_error": truncate(r.err.Error(), 500), "claimed_until": nil, "claim_token": ""}
		if r.code != 0 {
			update["response_code"] = r.code
		}
		if attempts >= o.MaxAttempts {
			update["status"] = "failed"
			o.metrics.Delivery("failed")
			o.log.Error("delivery failed for good", "delivery_id", r.d.ID, "kind", r.d.Kind, "attempts", attempts, "err", r.err)
		} else {
			update["next_attempt_at"] = now.Add(Backoff(attempts))
			o.metrics.Delivery("retry")
			o.log.Warn("delivery not sent, will retry", "delivery_id", r.d.ID, "kind", r.d.Kind, "attempt", attempts, "err", r.err)
		}
		res := p.mine(db, r.d.ID).Updates(update)
		switch {
		case res.Error != nil:
			p.fail(fmt.Errorf("record delivery %d: %w", r.d.ID, res.Error)) // the lease ends, then it is retried
		case res.RowsAffected == 0:
			p.lost(r.d.ID, "not sent")
		}
	}
	if len(sent) == 0 {
		return
	}
	// One statement for every delivery sent; a webhook's answer code, if
	// any, by CASE.
	ids := make([]int64, len(sent))
	codes, args := "", []any{now}
	for i, r := range sent {
		ids[i] = r.d.ID
		if r.code != 0 {
			codes += " WHEN id = ? THEN ?"
			args = append(args, r.d.ID, r.code)
		}
	}
	code := "response_code"
	if codes != "" {
		code = "CASE" + codes + " ELSE response_code END"
	}
	var marked []int64
	err := db.Raw(`UPDATE deliveries
		SET status = 'sent', sent_at = ?, response_code = `+code+`, attempts = attempts + 1, last_error = '', claimed_until = NULL, claim_token = ''
		WHERE id IN ? AND claim_token = ? AND status = 'pending' RETURNING id`, append(args, ids, p.token)...).Scan(&marked).Error
	if err != nil {
		// The claims stay until their leases end; then the deliveries are
		// sent again, with the same ids.
		p.fail(fmt.Errorf("mark %d deliveries sent: %w", len(sent), err))
		return
	}
	for _, id := range ids {
		if !slices.Contains(marked, id) {
			p.lost(id, "sent")
		}
	}
}

// release gives back claims this pass will not send after all (it is
// stopping), for another pass or replica to take at once.
func (p *pass) release(ready []Ready) {
	if len(ready) == 0 {
		return
	}
	ids := make([]int64, len(ready))
	for i, r := range ready {
		ids[i] = r.Delivery.ID
		delete(p.held, r.Delivery.ID)
	}
	err := p.mine(p.o.db.WithContext(p.work), ids...).Updates(map[string]any{"claimed_until": nil, "claim_token": ""}).Error
	if err != nil {
		p.o.log.Warn("delivery claims not given back; taken again when their leases end", "deliveries", len(ids), "err", err)
	}
}

func (p *pass) lost(id int64, outcome string) {
	p.o.log.Warn("delivery claim lost: its lease ended and another process took the delivery over", "delivery_id", id, "outcome", outcome)
}

// mine narrows to deliveries this pass still holds: a claim another process
// took over carries its token, not ours.
func (p *pass) mine(db *gorm.DB, ids ...int64) *gorm.DB {
	return db.Model(&models.Delivery{}).Where("id IN ? AND claim_token = ? AND status = ?", ids, p.token, "pending")
}

// renew extends the leases of what the pass holds (queued or in flight), so
// a slow receiver never lets a claim lapse while it is being sent.
func (p *pass) renew() {
	if len(p.held) == 0 {
		return
	}
	ids := make([]int64, 0, len(p.held))
	for id := range p.held {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	err := p.mine(p.o.db.WithContext(p.work), ids...).UpdateColumn("claimed_until", p.o.clock.Now().Add(p.o.Lease)).Error
	if err != nil {
		p.o.log.Warn("delivery leases not renewed", "deliveries", len(ids), "err", err)
	}
}

func (p *pass) fail(err error) { p.errs = append(p.errs, err) }

// truncate shortens an error to at most n bytes of text PostgreSQL stores:
// valid UTF-8 cut between characters, without NUL bytes.
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
