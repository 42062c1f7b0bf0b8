package handlers_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"keysmith/accounts"
	"keysmith/config"
	"keysmith/models"
	"keysmith/testutil"
)

// onLocalhost makes the app's base URL http://localhost:PORT, where
// passkeys work; the clients still talk to 127.0.0.1.
func onLocalhost() testutil.Option {
	return testutil.WithConfig(func(c *config.Config) {
		c.BaseURL = strings.Replace(c.BaseURL, "//127.0.0.1:", "//localhost:", 1)
	})
}

// newUser signs up email (through the domain: the app's mailed links name
// localhost) and logs in.
func newUser(t *testing.T, app *testutil.App, email string) *testutil.Client {
	t.Helper()
	if _, err := app.Accounts.SignUp(t.Context(), accounts.SignUpInput{Email: email, Name: "Ada Lovelace", Password: password}); err != nil {
		t.Fatal(err)
	}
	c, page := logIn(t, app, email, password)
	if page.URL.Path != "/settings/api-keys" {
		t.Fatalf("log in: %s", page.URL)
	}
	return c
}

// addPasskeyRow stores a passkey as a registration would (the ceremony
// itself runs in e2e/passkeys_test.go and identity's tests).
func addPasskeyRow(t *testing.T, app *testutil.App, email, name string) models.Passkey {
	t.Helper()
	var u models.User
	app.DB.Where("email = ?", email).Take(&u)
	row := models.Passkey{UserID: u.ID, CredentialID: []byte(name), UserHandle: []byte("handle-of-" + email), PublicKey: []byte("cose"), Name: name, CreatedAt: app.Clock.Now()}
	if err := app.DB.Create(&row).Error; err != nil {
		t.Fatal(err)
	}
	return row
}

// On a base URL with an IP address, the login page offers no passkey (it
// would only answer that passkeys are unavailable), the security page says
// why passkeys cannot be added, and the ceremonies answer 503.
func TestPasskeysUnavailableOnAnIP(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	login := app.NewClient(t).Get("/login")
	if login.Doc.Find(`form[data-passkey]`).Length() != 0 || login.Doc.Find("#email").AttrOr("autocomplete", "") != "username" {
		t.Fatalf("the login page offers passkeys where they cannot work: %d form(s), autocomplete %q",
			login.Doc.Find(`form[data-passkey]`).Length(), login.Doc.Find("#email").AttrOr("autocomplete", ""))
	}
	c := signUp(t, app, "ada@example.com")
	page := c.Get("/settings/security")
	if got := page.Text("#passkeys-unavailable"); page.Status != http.StatusOK || !strings.Contains(got, "IP address 127.0.0.1") || !strings.Contains(got, "localhost") {
		t.Fatalf("security page: %d %q", page.Status, got)
	}
	if page.Doc.Find(`form[data-passkey="register"]`).Length() != 0 {
		t.Fatal("an add form where passkeys cannot work")
	}
	res := c.PostForm("/settings/security/passkeys/options", url.Values{"_csrf": {csrfOf(page)}})
	if res.Status != http.StatusServiceUnavailable || !strings.Contains(res.Raw, "unavailable") {
		t.Fatalf("options: %d %s", res.Status, res.Raw)
	}
}

func TestPasskeyListRenameRemove(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL, onLocalhost())
		c := newUser(t, app, "ada@example.com")
		other, _ := logIn(t, app, "ada@example.com", password)
		page := c.Get("/settings/security")
		if page.Text("#no-passkeys") != "No passkeys yet." || page.Doc.Find(`form[data-passkey="register"]`).Length() != 1 {
			t.Fatalf("empty passkeys card: %s", page.Text("#passkeys"))
		}
		// The options are JSON for navigator.credentials.create, kept out
		// of caches.
		opts := c.PostForm("/settings/security/passkeys/options", url.Values{"_csrf": {csrfOf(page)}})
		var o struct {
			PublicKey struct {
				RP struct{ ID string } `json:"rp"`
			} `json:"publicKey"`
		}
		if opts.Status != http.StatusOK || json.Unmarshal([]byte(opts.Raw), &o) != nil || o.PublicKey.RP.ID != "localhost" || opts.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("options: %d %s", opts.Status, opts.Raw)
		}
		// A made-up answer is refused, with the name kept.
		bad := c.Submit(page, `form[data-passkey="register"]`, map[string]string{"name": "Work laptop", "credential": `{"id":"x"}`})
		if bad.Status != http.StatusUnprocessableEntity || !strings.Contains(bad.Text("#passkeys .flash.error"), "not accepted") || bad.Doc.Find("#passkey-name").AttrOr("value", "") != "Work laptop" {
			t.Fatalf("bad answer: %d %q", bad.Status, bad.Text("#passkeys"))
		}

		row := addPasskeyRow(t, app, "ada@example.com", "Laptop")
		page = c.Get("/settings/security")
		if got := page.Text("#passkeys tr.passkey"); !strings.Contains(got, "Never") || page.Doc.Find("#passkey-name-"+itoa(row.ID)).AttrOr("value", "") != "Laptop" {
			t.Fatalf("passkey row: %q", got)
		}
		if got := page.Text("#two-step"); !strings.Contains(got, "Passkeys only") {
			t.Fatalf("two-step card with a passkey: %q", got)
		}
		long := strings.Repeat("x", 65)
		page = c.Submit(page, `form[action="/settings/security/passkeys/`+itoa(row.ID)+`"]`, map[string]string{"name": long})
		if page.Status != http.StatusUnprocessableEntity || page.Doc.Find("#passkey-name-"+itoa(row.ID)).AttrOr("value", "") != long ||
			!strings.Contains(page.Text("#passkey-name-"+itoa(row.ID)+"-error"), "64") {
			t.Fatalf("long name: %d %q", page.Status, page.Text("#passkeys"))
		}
		page = c.Submit(page, `form[action="/settings/security/passkeys/`+itoa(row.ID)+`"]`, map[string]string{"name": "Desk key"})
		if page.URL.Path != "/settings/security" || page.Doc.Find("#passkey-name-"+itoa(row.ID)).AttrOr("value", "") != "Desk key" {
			t.Fatalf("rename: %s %q", page.URL, page.Text("#passkeys"))
		}

		page = c.Submit(page, `form[action="/settings/security/passkeys/`+itoa(row.ID)+`/remove"]`, nil)
		if page.URL.Path != "/settings/security" || page.Text("#no-passkeys") != "No passkeys yet." || !strings.Contains(page.Text(".flash.success"), "Desk key") {
			t.Fatalf("remove: %s %q", page.URL, page.Text("main"))
		}
		// Removing a passkey signs out the other sessions, and mails the user.
		if p := other.Get("/settings/security"); p.URL.Path != "/login" {
			t.Fatalf("the other session after removing a passkey: %s", p.URL)
		}
		if mails := app.Mails(); len(mails) == 0 || mails[0].Subject != "A passkey was removed from your Keysmith account" {
			t.Fatal("no mail about the removed passkey")
		}
		var ev models.AuditEvent
		if err := app.DB.Where("action = ?", "passkey.removed").Take(&ev).Error; err != nil || ev.Detail != "Desk key" {
			t.Fatalf("audit event %+v: %v", ev, err)
		}
		// Another user's passkey cannot be removed.
		mallory := newUser(t, app, "mallory@example.com")
		theirs := addPasskeyRow(t, app, "ada@example.com", "Phone")
		mp := mallory.Get("/settings/security")
		if res := mallory.PostForm("/settings/security/passkeys/"+itoa(theirs.ID)+"/remove", url.Values{"_csrf": {csrfOf(mp)}}); res.Status != http.StatusNotFound {
			t.Fatalf("removing another user's passkey: %d", res.Status)
		}
	})
}

// A user with a passkey gets the second step after their password, with
// the passkey offered, and a code too when they have an authenticator app.
func TestPasskeySecondStep(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"), onLocalhost())
	newUser(t, app, "ada@example.com")
	addPasskeyRow(t, app, "ada@example.com", "Laptop")
	c, page := logIn(t, app, "ada@example.com", password)
	if page.URL.Path != "/login/two-factor" || page.Doc.Find(`form[data-passkey="second-step"]`).Length() != 1 || page.Doc.Find("#code").Length() != 0 {
		t.Fatalf("second step of a passkey-only user: %s\n%s", page.URL, page.Text("main"))
	}
	if p := c.Get("/settings/api-keys"); p.URL.Path != "/login" {
		t.Fatalf("signed in before the second step: %s", p.URL)
	}
	opts := c.PostForm("/login/two-factor/passkey/options", url.Values{"_csrf": {csrfOf(page)}})
	if opts.Status != http.StatusOK || !strings.Contains(opts.Raw, `"allowCredentials"`) {
		t.Fatalf("second-step options: %d %s", opts.Status, opts.Raw)
	}
	bad := c.Submit(page, `form[data-passkey="second-step"]`, map[string]string{"credential": `{"id":"x"}`})
	if bad.Status != http.StatusUnauthorized || !strings.Contains(bad.Text(".flash.error"), "not accepted") {
		t.Fatalf("bad answer: %d %q", bad.Status, bad.Text("main"))
	}
	// The answer's ceremony was used up: another answer finds none.
	again := c.Submit(bad, `form[data-passkey="second-step"]`, map[string]string{"credential": `{"id":"x"}`})
	if again.Status != http.StatusUnauthorized || !strings.Contains(again.Text(".flash.error"), "expired") {
		t.Fatalf("a second answer: %d %q", again.Status, again.Text("main"))
	}

	// With an authenticator app too, both are offered.
	bob := newUser(t, app, "bob@example.com")
	enableTOTP(t, app, bob)
	addPasskeyRow(t, app, "bob@example.com", "Key")
	_, page = logIn(t, app, "bob@example.com", password)
	if page.Doc.Find(`form[data-passkey="second-step"]`).Length() != 1 || page.Doc.Find("#code").Length() != 1 {
		t.Fatalf("second step with both: %s", page.Text("main"))
	}
}

func TestPasskeySignInRefusesAnUnknownAnswer(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"), onLocalhost())
	c := app.NewClient(t)
	page := c.Get("/login")
	if page.Doc.Find(`form[data-passkey="sign-in"]`).Length() != 1 || page.Doc.Find("#email").AttrOr("autocomplete", "") != "username webauthn" {
		t.Fatalf("login page: %s", page.Text("main"))
	}
	opts := c.PostForm("/login/passkey/options?mediation=conditional", url.Values{"_csrf": {csrfOf(page)}})
	if opts.Status != http.StatusOK || !strings.Contains(opts.Raw, `"userVerification":"required"`) {
		t.Fatalf("sign-in options: %d %s", opts.Status, opts.Raw)
	}
	res := c.Submit(page, `form[data-passkey="sign-in"]`, map[string]string{"credential": `{"id":"x"}`})
	if res.Status != http.StatusUnauthorized || !strings.Contains(res.Text(".flash.error"), "not accepted") {
		t.Fatalf("unknown answer: %d %q", res.Status, res.Text("main"))
	}
}
