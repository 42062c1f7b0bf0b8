package handlers_test

import (
	"bytes"
	"net/http"
	"net/mail"
	"strings"
	"testing"
	"time"

	"keysmith/models"
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

func TestSignUpSurvivesAnSMTPOutage(t *testing.T) {
	smtp := testutil.StartSMTP(t)
	smtp.Refuse(1)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"), testutil.WithSMTP(smtp))
	// The refused confirmation mail is logged; signing up again sends
	// another link, which works.
	c := app.NewClient(t)
	page := c.Submit(c.Get("/signup"), "form[action='/signup']", map[string]string{"email": "ada@example.com", "password": password})
	app.Mailer.Wait()
	if page.Status != http.StatusOK || !strings.Contains(app.Logs.String(), "sign-up email not sent") {
		t.Fatalf("refused confirmation mail: %d, logs:\n%s", page.Status, app.Logs.String())
	}
	signUp(t, app, "ada@example.com") // fails the test unless sign-up completes
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
