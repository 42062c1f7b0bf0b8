package scheduler_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"keysmith/models"
	"keysmith/testutil"
)

// eventually waits (real time) until cond holds, failing after a generous
// deadline: for things that happen in other goroutines, never for timing.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// messageIDs counts the reminder Message-IDs the SMTP server accepted.
func messageIDs(t *testing.T, smtp *testutil.SMTPServer) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for _, m := range smtp.Messages() {
		msg, _ := testutil.MIMEParts(t, m.Data)
		seen[strings.Trim(msg.Header.Get("Message-Id"), "<>")]++
	}
	return seen
}

// Three replicas on one PostgreSQL share a relay that takes far longer per
// mail than a claim's lease, while the fake clock runs on; one replica is
// stopped in the middle of its pass and a new one starts. Every reminder
// arrives exactly once: leases run from each claim and are renewed while
// the mail is in flight, and a stopping replica finishes and records what
// it has in flight.
func TestSlowRelayAndRestartSendEachReminderOnce(t *testing.T) {
	dbURL := testutil.DatabaseURL(t, "postgres")
	smtp := testutil.StartSMTP(t)
	setup := testutil.StartApp(t, dbURL, testutil.WithSMTP(smtp))
	clk := setup.Clock
	tm := newTeam(t, setup)
	setup.Accounts.SetReminders(t.Context(), tm.admin.ID, false) // one recipient per key: the owner
	owner := tm.actor(tm.owner, models.RoleOwner)
	const reminders = 60
	for i := range reminders {
		tm.key(t, owner, fmt.Sprintf("key-%02d", i), "7")
	}

	// Time runs 100 times faster than the wall clock: a mail held 800 ms
	// by the relay takes 80 s, longer than a lease of 60 s, which only a
	// renewal every 25 ms (2.5 s) keeps alive.
	smtp.SetDelay(800 * time.Millisecond)
	ticking := make(chan struct{})
	var clockRuns sync.WaitGroup
	clockRuns.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ticking:
				return
			case <-tick.C:
				clk.Advance(time.Second)
			}
		}
	})
	defer clockRuns.Wait()
	defer close(ticking)
	replica := func() *testutil.App {
		app := testutil.StartApp(t, dbURL, testutil.WithSMTP(smtp), testutil.WithClock(clk), testutil.WithQuietLogs())
		app.Outbox.Lease, app.Outbox.Renew = time.Minute, 25*time.Millisecond
		return app
	}
	var passes sync.WaitGroup
	pass := func(app *testutil.App) {
		passes.Go(func() {
			if err := app.Reminders.Run(context.Background()); err != nil {
				t.Errorf("pass: %v", err)
			}
		})
	}

	stopped := replica()
	stopped.Scheduler.Start() // a pass now, cancelled by Close as a SIGTERM would
	pass(replica())
	pass(replica())
	eventually(t, "a dozen reminders to arrive", func() bool { return len(smtp.Messages()) >= 12 })
	if err := stopped.Close(); err != nil {
		t.Fatalf("stopping a replica mid-send: %v", err)
	}
	pass(replica()) // its replacement
	passes.Wait()

	// Whatever is still pending (nothing, unless a send failed) goes out on
	// later passes.
	last := replica()
	for range 10 {
		var pending int64
		last.DB.Model(&models.Delivery{}).Where("status = ?", "pending").Count(&pending)
		if pending == 0 {
			break
		}
		clk.Advance(time.Hour)
		if err := last.Reminders.Run(t.Context()); err != nil {
			t.Fatal(err)
		}
	}

	eachSentOnce(t, last, smtp, reminders)
}

// eachSentOnce checks that want reminders were planned, and that each was
// sent at its first attempt and arrived exactly once.
func eachSentOnce(t *testing.T, app *testutil.App, smtp *testutil.SMTPServer, want int) {
	t.Helper()
	var ds []models.Delivery
	app.DB.Order("id").Find(&ds)
	if len(ds) != want {
		t.Fatalf("%d deliveries planned, want %d", len(ds), want)
	}
	seen := messageIDs(t, smtp)
	for _, d := range ds {
		id := fmt.Sprintf("reminder-%d@keysmith.localhost", d.ID)
		if n := seen[id]; n != 1 || d.Status != "sent" || d.Attempts != 1 {
			t.Errorf("delivery %d: %s after %d attempts, arrived %d times", d.ID, d.Status, d.Attempts, n)
		}
		delete(seen, id)
	}
	if len(seen) > 0 {
		t.Errorf("unexpected messages: %v", slices.Collect(maps.Keys(seen)))
	}
}

// twoReplicas starts two replicas on one PostgreSQL sharing a relay and a
// clock, and a team whose reminders go to the key's owner alone.
func twoReplicas(t *testing.T) (first, second *testutil.App, smtp *testutil.SMTPServer, tm *team) {
	t.Helper()
	dbURL := testutil.DatabaseURL(t, "postgres")
	smtp = testutil.StartSMTP(t)
	first = testutil.StartApp(t, dbURL, testutil.WithSMTP(smtp))
	second = testutil.StartApp(t, dbURL, testutil.WithSMTP(smtp), testutil.WithClock(first.Clock))
	tm = newTeam(t, first)
	first.Accounts.SetReminders(t.Context(), tm.admin.ID, false) // one recipient per key: the owner
	return first, second, smtp, tm
}

// A SIGTERM in the middle of an SMTP transaction lets it finish and
// records the mail as sent before the database closes, so a later process
// never sends it again.
func TestShutdownFinishesTheMailInFlight(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		smtp := testutil.StartSMTP(t)
		smtp.SetDelay(500 * time.Millisecond)
		app := testutil.StartApp(t, dbURL, testutil.WithSMTP(smtp))
		tm := newTeam(t, app)
		app.Accounts.SetReminders(t.Context(), tm.admin.ID, false)
		tm.key(t, tm.actor(tm.owner, models.RoleOwner), "in-flight", "7")

		app.Scheduler.Start()
		eventually(t, "the relay to hold the reminder", func() bool { return smtp.Holding() == 1 })
		if err := app.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		if n := len(smtp.Messages()); n != 1 {
			t.Fatalf("%d messages accepted by the time Close returned, want 1", n)
		}

		next := testutil.StartApp(t, dbURL, testutil.WithSMTP(smtp), testutil.WithClock(app.Clock))
		var d models.Delivery
		next.DB.Take(&d)
		if d.Status != "sent" || d.Attempts != 1 || d.SentAt == nil || d.ClaimedUntil != nil {
			t.Fatalf("after shutdown: %+v", d)
		}
		for range 3 { // past any lease and backoff
			next.Clock.Advance(time.Hour)
			if err := next.Reminders.Run(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		if n := len(smtp.Messages()); n != 1 {
			t.Fatalf("%d messages, want exactly 1", n)
		}
	})
}

// When a replica's lease lapsed (it did not renew) and another replica
// took the delivery over, the first one's mark changes nothing: the row
// records the attempt of the replica that holds it.
func TestAMarkNeverAppliesToAClaimTakenOver(t *testing.T) {
	first, second, smtp, tm := twoReplicas(t)
	tm.key(t, tm.actor(tm.owner, models.RoleOwner), "contested", "7")

	smtp.SetDelay(500 * time.Millisecond)
	var passes sync.WaitGroup
	passes.Go(func() { first.Reminders.Run(context.Background()) })
	eventually(t, "the first replica's mail to reach the relay", func() bool { return smtp.Holding() == 1 })
	first.Clock.Advance(first.Outbox.Lease + time.Second) // its lease lapses (no renewal in that time)
	passes.Go(func() { second.Reminders.Run(context.Background()) })
	passes.Wait()

	var d models.Delivery
	first.DB.Take(&d)
	if d.Status != "sent" || d.Attempts != 1 || d.ClaimToken != "" {
		t.Fatalf("delivery %+v, want sent once by the replica holding the claim", d)
	}
	if !strings.Contains(first.Logs.String(), "claim lost") {
		t.Error("the first replica did not log that it lost the claim")
	}
	if n := len(smtp.Messages()); n != 2 { // the price of a lapsed lease, with one Message-ID
		t.Fatalf("%d messages", n)
	}
}

// A pass claims what its senders can answer soon, not a batch of 128:
// while a slow relay holds one mail per sender, the replica holds at most
// those and as many queued, and a second replica sends the rest beside it.
// Each reminder still arrives once.
func TestASlowRelayLeavesTheRestToOtherReplicas(t *testing.T) {
	first, second, smtp, tm := twoReplicas(t)
	owner := tm.actor(tm.owner, models.RoleOwner)
	const reminders = 24
	for i := range reminders {
		tm.key(t, owner, fmt.Sprintf("key-%02d", i), "7")
	}
	slots := first.Outbox.Concurrency

	smtp.SetDelay(time.Second)
	var passes sync.WaitGroup
	passes.Go(func() { first.Reminders.Run(context.Background()) })
	eventually(t, "the relay to hold one mail per sender", func() bool { return smtp.Holding() == slots })
	var held int64
	first.DB.Model(&models.Delivery{}).Where("status = ? AND claim_token <> ''", "pending").Count(&held)
	if held > int64(2*slots) {
		t.Fatalf("the first replica holds %d deliveries while %d are in flight; want at most %d", held, slots, 2*slots)
	}
	passes.Go(func() { second.Reminders.Run(context.Background()) })
	eventually(t, "both replicas to send at once", func() bool { return smtp.Holding() == 2*slots })
	smtp.SetDelay(0)
	passes.Wait()

	eachSentOnce(t, first, smtp, reminders)
}
