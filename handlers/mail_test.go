package handlers_test

import (
	"bytes"
	"net/http"
	"net/mail"
	"strings"
	"testing"
	"time"

	"keysmith/models"
	"keysmith/outbox"
	"keysmith/testutil"
)

func TestSignUpMailOverRealSMTP(t *testing.T) {
	smtp := testutil.StartSMTP(t)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"), testutil.WithSMTP(smtp))
	signUp(t, app, "ada@example.com")

	got := smtp.Messages()
	if len(got) != 1 || got[0].To[0] != "ada@example.com" {
		t.Fatalf("SMTP server received %+v, want one mail to ada", got)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(got[0].Data))
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get("Subject") != "Confirm your email for Keysmith" {
		t.Errorf("subject %q", msg.Header.Get("Subject"))
	}
	if res, _ := http.Get(app.URL("/dev/mailbox")); res.StatusCode != http.StatusNotFound {
		t.Errorf("dev mailbox served although mail goes over SMTP: %d", res.StatusCode)
	}
}

// Every account mail goes through the outbox: refused by the SMTP server,
// it waits in the queue and the next pass after its backoff delivers it,
// once, with a link that still works.
func TestEveryAccountMailSurvivesAnSMTPOutage(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		smtp := testutil.StartSMTP(t)
		app := testutil.StartApp(t, dbURL, testutil.WithSMTP(smtp))
		owner := signUp(t, app, "owner@example.com")
		ctx := t.Context()
		outage := func(what string, act func()) {
			t.Helper()
			before := len(smtp.Messages())
			smtp.Refuse(1)
			act()
			app.Outbox.Wait()
			if n := len(smtp.Messages()); n != before {
				t.Fatalf("%s: %d mails arrived during the outage", what, n-before)
			}
			var pending int64
			app.DB.Model(&models.Delivery{}).Where("status = 'pending' AND attempts = 1").Count(&pending)
			if pending != 1 {
				t.Fatalf("%s: %d refused deliveries waiting, want 1", what, pending)
			}
			app.Clock.Advance(outbox.Backoff(1))
			if err := app.Outbox.Send(ctx); err != nil {
				t.Fatal(err)
			}
			if err := app.Outbox.Send(ctx); err != nil { // a second pass sends nothing again
				t.Fatal(err)
			}
			if n := len(smtp.Messages()); n != before+1 {
				t.Fatalf("%s: %d mails after the outage, want exactly 1", what, n-before)
			}
		}

		c := app.NewClient(t)
		outage("sign-up link", func() {
			c.Submit(c.Get("/signup"), "form[action='/signup']", map[string]string{"email": "ada@example.com", "password": password})
		})
		mail := mailTo(t, app, "ada@example.com")
		page := c.Get(strings.TrimPrefix(linkIn(t, mail.Text, "/signup/confirm?token="), app.Server.URL))
		if page = c.Submit(page, "form[action='/signup/confirm']", nil); page.URL.Path != "/settings/api-keys" {
			t.Fatalf("the link mailed after the outage: %s", page.URL)
		}
		outage("account exists", func() {
			x := app.NewClient(t)
			x.Submit(x.Get("/signup"), "form[action='/signup']", map[string]string{"email": "ada@example.com", "password": password})
		})
		outage("password reset", func() {
			x := app.NewClient(t)
			x.Submit(x.Get("/forgot-password"), "form[action='/forgot-password']", map[string]string{"email": "ada@example.com"})
		})
		if m := mailTo(t, app, "ada@example.com"); m.Subject != "Reset your Keysmith password" {
			t.Fatalf("newest mail to ada: %q", m.Subject)
		}
		outage("invitation", func() {
			owner.Submit(owner.Get("/settings/team"), "form.invite", map[string]string{"email": "grace@example.com", "role": "editor"})
		})
		if m := mailTo(t, app, "grace@example.com"); !strings.Contains(m.Subject, "invited you to") {
			t.Fatalf("invitation after the outage: %+v", m.Message)
		}
		// The owner's delivery log shows the invitation, which belongs to
		// the workspace; sign-up links and resets belong to no workspace.
		if log := owner.Get("/settings/notifications"); !strings.Contains(log.Text("table.deliveries"), "grace@example.com") {
			t.Fatalf("the delivery log does not show the invitation:\n%s", log.Text("main"))
		}
	})
}

// A process that claimed a mail and died before sending it holds its lease
// no longer than Lease: then another pass sends it, once.
func TestAMailClaimedByACrashedProcessIsSentOnce(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		smtp := testutil.StartSMTP(t)
		app := testutil.StartApp(t, dbURL, testutil.WithSMTP(smtp))
		msg, err := app.Mailer.AccountExists(t.Context(), "ada@example.com", "Ada")
		if err != nil {
			t.Fatal(err)
		}
		if err := app.Outbox.EnqueueMail(t.Context(), nil, outbox.Mail{Message: msg}); err != nil {
			t.Fatal(err)
		}
		// The dead process's claim.
		app.DB.Exec("UPDATE deliveries SET claim_token = 'dead', claimed_until = ?", app.Clock.Now().Add(app.Outbox.Lease))
		if err := app.Outbox.Send(t.Context()); err != nil || len(smtp.Messages()) != 0 {
			t.Fatalf("sent while another process held the claim: %v, %d", err, len(smtp.Messages()))
		}
		app.Clock.Advance(app.Outbox.Lease + time.Second)
		for range 2 {
			if err := app.Outbox.Send(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		if got := smtp.Messages(); len(got) != 1 || !strings.Contains(string(got[0].Data), "mail-1@") {
			t.Fatalf("after the lease: %d mails", len(got))
		}
		var d models.Delivery
		app.DB.Take(&d)
		if d.Status != "sent" || d.Attempts != 1 || bytes.Contains(d.Payload, []byte("ada@example.com")) {
			t.Fatalf("delivery %+v; the payload must be sealed", d.Status)
		}
	})
}

func TestServerErrorPageShowsRequestID(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	c := signUp(t, app, "ada@example.com")
	if err := models.Close(app.DB); err != nil {
		t.Fatal(err)
	}
	page := c.Get("/settings/team")
	if page.Status != http.StatusInternalServerError || page.Text("h1") != "Something went wrong" {
		t.Fatalf("with the database gone: %d %q", page.Status, page.Text("h1"))
	}
	id := page.Header.Get("X-Request-Id")
	if !strings.Contains(page.Text("main"), id) {
		t.Errorf("500 page does not quote the request id %s", id)
	}
	if strings.Contains(page.Body, "sql") {
		t.Errorf("500 page leaks internals:\n%s", page.Body)
	}
	if !strings.Contains(app.Logs.String(), "level=ERROR") || !strings.Contains(app.Logs.String(), "request_id="+id) {
		t.Error("the failure is not logged with its request id")
	}
}

func TestSessionStoreHonoursIdleTimeout(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	c := signUp(t, app, "ada@example.com")
	token := sessionCookie(c, app)
	var expiry time.Time
	if err := app.DB.Raw("SELECT expiry FROM sessions WHERE token = ?", storedSessionToken(token)).Row().Scan(&expiry); err != nil {
		t.Fatal(err)
	}
	// scs stamps expiry with the wall clock: min(login + lifetime, last request + idle timeout).
	want := time.Now().Add(app.Config.SessionIdle)
	if d := expiry.Sub(want); d < -time.Minute || d > time.Minute {
		t.Fatalf("session expires at %s, want about %s (idle timeout %s)", expiry, want, app.Config.SessionIdle)
	}
}
