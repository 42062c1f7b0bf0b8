package handlers_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"keysmith/accounts"
	"keysmith/config"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
)

// sudoWindow is the short KEYSMITH_SUDO_TIMEOUT of these tests.
const sudoWindow = 10 * time.Minute

func startSudoApp(t *testing.T, dbURL string) *testutil.App {
	t.Helper()
	return testutil.StartApp(t, dbURL, testutil.WithConfig(func(c *config.Config) { c.SudoTimeout = sudoWindow }))
}

// keyFormValues is the create-key form filled in as a user would, with two
// scopes checked: every control's value, the CSRF token and nonce included.
func keyFormValues(t *testing.T, c *testutil.Client, name string) url.Values {
	t.Helper()
	form := c.Get("/settings/api-keys/new")
	nonce, _ := form.Doc.Find("form.key-form input[name=nonce]").Attr("value")
	if form.Status != http.StatusOK || nonce == "" {
		t.Fatalf("create form: %d, nonce %q", form.Status, nonce)
	}
	return url.Values{
		"_csrf": {csrfOf(form)}, "nonce": {nonce}, "name": {name}, "description": {"nightly invoices"},
		"kind": {"sk"}, "environment": {"live"}, "permission": {"custom"}, "scopes": {"files:read", "projects:read"},
		"expires_in": {"30"},
	}
}

func hiddenValues(p *testutil.Page, name string) []string {
	var vals []string
	p.Doc.Find("#confirm-access form input[type=hidden][name='" + name + "']").Each(func(_ int, s *goquery.Selection) {
		v, _ := s.Attr("value")
		vals = append(vals, v)
	})
	return vals
}

func keyCount(t *testing.T, app *testutil.App) int64 {
	t.Helper()
	var n int64
	if err := app.DB.Model(&models.APIKey{}).Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSudoConfirmsBeforeCreatingAKeyAndKeepsTheForm(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := startSudoApp(t, dbURL)
		c := signUp(t, app, "ada@example.com")

		// Signing in confirmed access: within the window, no question.
		app.Clock.Advance(sudoWindow - time.Minute)
		if page := c.PostForm("/settings/api-keys", keyFormValues(t, c, "Fresh key")); page.Status != http.StatusCreated {
			t.Fatalf("within the window: %d %q", page.Status, page.Text("h1"))
		}

		// After the window, the same action asks to confirm access.
		app.Clock.Advance(2 * time.Minute)
		page := c.PostForm("/settings/api-keys", keyFormValues(t, c, "Billing worker"))
		if page.Status != http.StatusOK || page.Doc.Find("#confirm-access").Length() != 1 || page.Text("h1") != "Confirm access" {
			t.Fatalf("after the window: %d %q:\n%s", page.Status, page.Text("h1"), page.Text("main"))
		}
		if action, _ := page.Doc.Find("#confirm-access form").Attr("action"); action != "/settings/api-keys" {
			t.Fatalf("the confirmation posts to %q", action)
		}
		if got := hiddenValues(page, "scopes"); !slices.Equal(got, []string{"files:read", "projects:read"}) {
			t.Fatalf("scopes carried: %q", got)
		}
		if got := hiddenValues(page, "name"); !slices.Equal(got, []string{"Billing worker"}) {
			t.Fatalf("name carried: %q", got)
		}
		if len(hiddenValues(page, "_csrf")) != 1 || page.Doc.Find("#confirm-access input[name=_sudo_code]").Length() != 0 {
			t.Fatal("the page should carry one CSRF token, and no code field for a user without two-step verification")
		}
		if n := keyCount(t, app); n != 1 {
			t.Fatalf("%d keys before confirming, want 1", n)
		}

		// A wrong password: asked again, the input still there, nothing made,
		// a failed login attempt and an audit event.
		wrong := c.Submit(page, "#confirm-access form", map[string]string{"_sudo_password": "not my password"})
		if wrong.Status != http.StatusUnauthorized || wrong.Text("#_sudo_password-error") != "That is not your password." {
			t.Fatalf("wrong password: %d %q", wrong.Status, wrong.Text("#_sudo_password-error"))
		}
		if got := hiddenValues(wrong, "scopes"); !slices.Equal(got, []string{"files:read", "projects:read"}) {
			t.Fatalf("scopes after a wrong password: %q", got)
		}
		if got := hiddenValues(wrong, "_sudo_password"); len(got) != 0 {
			t.Fatal("the password went into a hidden field")
		}
		if n := keyCount(t, app); n != 1 {
			t.Fatalf("%d keys after a wrong password, want 1", n)
		}
		var failures, audited int64
		app.DB.Model(&models.LoginAttempt{}).Where("email = ? AND succeeded = ?", "ada@example.com", false).Count(&failures)
		app.DB.Model(&models.AuditEvent{}).Where("action = ?", accounts.ActionSudoFailed).Count(&audited)
		if failures != 1 || audited != 1 {
			t.Fatalf("failed attempts %d, audit events %d; want 1 and 1", failures, audited)
		}
		if strings.Contains(app.Logs.String(), "not my password") {
			t.Fatal("the password reached the logs")
		}

		// The right password: the key is made from the original input.
		done := c.Submit(wrong, "#confirm-access form", map[string]string{"_sudo_password": password})
		if done.Status != http.StatusCreated {
			t.Fatalf("after confirming: %d %q", done.Status, done.Text("main"))
		}
		secret := secretOf(t, done)
		var k models.APIKey
		if err := app.DB.Where("name = ?", "Billing worker").Take(&k).Error; err != nil {
			t.Fatal(err)
		}
		if k.Description != "nightly invoices" || k.Scopes != "files:read projects:read" && k.Scopes != "files:read,projects:read" {
			t.Fatalf("created %q %q scopes %q", k.Name, k.Description, k.Scopes)
		}
		if n := keyCount(t, app); n != 2 {
			t.Fatalf("%d keys after confirming, want 2", n)
		}
		var confirmed []models.AuditEvent
		app.DB.Where("action = ?", accounts.ActionSudoConfirmed).Find(&confirmed)
		if len(confirmed) != 1 || confirmed[0].Detail != accounts.SudoByPassword {
			t.Fatalf("access confirmed: audit events %+v, want one saying %q", confirmed, accounts.SudoByPassword)
		}
		// Reloading the secret page re-posts the confirmation: the
		// resubmission guard holds, and no second key is made.
		again := c.Submit(wrong, "#confirm-access form", map[string]string{"_sudo_password": password})
		if again.URL.Path != "/settings/api-keys" || !strings.Contains(again.Text(".flash"), "already created") || keyCount(t, app) != 2 {
			t.Fatalf("re-posting the confirmation: %s %q, %d keys", again.URL, again.Text(".flash"), keyCount(t, app))
		}

		// Confirmed: the next sensitive action within the window goes through.
		app.Clock.Advance(sudoWindow - time.Minute)
		if page := c.PostForm("/settings/api-keys", keyFormValues(t, c, "Third")); page.Status != http.StatusCreated {
			t.Fatalf("within the window of the confirmation: %d %q", page.Status, page.Text("h1"))
		}

		// A key never meets sudo mode, however long ago the session confirmed.
		app.Clock.Advance(3 * time.Hour)
		if r := call(t, app, "GET", "/v1/auth/test", secret, nil); r.Status != http.StatusOK {
			t.Fatalf("the key after the window: %d %s", r.Status, r.Raw)
		}
	})
}

func TestSudoThrottlesWrongPasswords(t *testing.T) {
	app := startSudoApp(t, testutil.DatabaseURL(t, "sqlite"))
	c := signUp(t, app, "ada@example.com")
	app.Clock.Advance(sudoWindow + time.Minute)
	page := c.PostForm("/settings/api-keys", keyFormValues(t, c, "Billing worker"))
	for i := range accounts.MaxFailuresPerUser {
		page = c.Submit(page, "#confirm-access form", map[string]string{"_sudo_password": fmt.Sprint("wrong ", i)})
		if page.Status != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i, page.Status)
		}
	}
	page = c.Submit(page, "#confirm-access form", map[string]string{"_sudo_password": password})
	if page.Status != http.StatusTooManyRequests || page.Header.Get("Retry-After") == "" || keyCount(t, app) != 0 {
		t.Fatalf("after %d failures, the right password: %d %q, %d keys", accounts.MaxFailuresPerUser, page.Status, page.Text(".flash"), keyCount(t, app))
	}
	if got := hiddenValues(page, "name"); !slices.Equal(got, []string{"Billing worker"}) {
		t.Fatalf("the input after throttling: %q", got)
	}
}

func TestSudoWithAnAuthenticatorCode(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := startSudoApp(t, dbURL)
		c := signUp(t, app, "ada@example.com")
		secret, _ := enableTOTP(t, app, c)
		app.Clock.Advance(sudoWindow + time.Minute)
		page := c.Submit(c.Get("/settings/security"), "form[action='/settings/security/recovery-codes']", nil)
		if page.Doc.Find("#confirm-access input[name=_sudo_code]").Length() != 1 {
			t.Fatalf("no code field on Confirm access (%d):\n%s", page.Status, page.Text("main"))
		}
		wrong := c.Submit(page, "#confirm-access form", map[string]string{"_sudo_code": "000000"})
		if wrong.Status != http.StatusUnauthorized || wrong.Text("#_sudo_code-error") == "" {
			t.Fatalf("wrong code: %d %q", wrong.Status, wrong.Text("#_sudo_code-error"))
		}
		code := codeAt(t, secret, app.Clock.Now())
		done := c.Submit(wrong, "#confirm-access form", map[string]string{"_sudo_code": code})
		if done.Status != http.StatusCreated || len(strings.Fields(done.Doc.Find("#recovery-codes").Text())) != accounts.RecoveryCodeCount {
			t.Fatalf("after the code: %d %q", done.Status, done.Text("main"))
		}
		var by []string
		app.DB.Model(&models.AuditEvent{}).Where("action = ?", accounts.ActionSudoConfirmed).Pluck("detail", &by)
		if !slices.Equal(by, []string{accounts.SudoByCode}) {
			t.Fatalf("access confirmed, audited as %q; want %q", by, accounts.SudoByCode)
		}
		// Past the next window, that old code is refused.
		app.Clock.Advance(sudoWindow + time.Minute)
		page = c.Submit(c.Get("/settings/security"), "form[action='/settings/security/recovery-codes']", nil)
		if old := c.Submit(page, "#confirm-access form", map[string]string{"_sudo_code": code}); old.Status != http.StatusUnauthorized {
			t.Fatalf("an old code confirmed: %d", old.Status)
		}
	})
}

// Every sensitive action asks; the pages around them do not.
func TestSudoGuardsTheSensitiveActions(t *testing.T) {
	app := startSudoApp(t, testutil.DatabaseURL(t, "sqlite"))
	c := signUp(t, app, "ada@example.com")
	app.Clock.Advance(sudoWindow + time.Minute)
	token := csrfOf(c.Get("/settings/api-keys"))
	for _, path := range []string{
		"/settings/api-keys", "/settings/api-keys/1/rotate", "/settings/api-keys/1/token",
		"/settings/oauth-apps", "/settings/oauth-apps/1/rotate-secret",
		"/settings/webhooks", "/settings/webhooks/1/rotate-secret",
		"/settings/security/two-factor", "/settings/security/two-factor/confirm", "/settings/security/recovery-codes",
		"/settings/security/passkeys", "/settings/security/passkeys/1/remove",
		"/settings/team/members/1/role", "/settings/team/members/1/remove", "/settings/team/transfer",
		"/settings/workspace/key-policy",
	} {
		page := c.PostForm(path, url.Values{"_csrf": {token}, "x": {"kept"}})
		if page.Doc.Find("#confirm-access").Length() != 1 || !slices.Equal(hiddenValues(page, "x"), []string{"kept"}) {
			t.Errorf("POST %s after the window: %d %q", path, page.Status, page.Text("h1"))
		}
	}
	// These forms ask for the password themselves: no second question, and
	// the password is never written back into a page.
	for _, path := range []string{"/settings/account/password", "/settings/security/two-factor/disable"} {
		page := c.PostForm(path, url.Values{"_csrf": {token}, "current_password": {"wrong one"}, "password": {"wrong one"}})
		if page.Doc.Find("#confirm-access").Length() != 0 || strings.Contains(page.Raw, "wrong one") {
			t.Errorf("POST %s after the window asked to confirm, or echoed the password: %d", path, page.Status)
		}
	}
	for _, path := range []string{"/settings/api-keys", "/settings/api-keys/new", "/settings/security", "/settings/team"} {
		if page := c.Get(path); page.Status != http.StatusOK || page.Doc.Find("#confirm-access").Length() != 0 {
			t.Errorf("GET %s: %d", path, page.Status)
		}
	}
}

// A boosted form gets the whole page, kept off the address bar; a plain
// HTMX request gets it too, retargeted to replace the page.
func TestSudoPageUnderHTMX(t *testing.T) {
	app := startSudoApp(t, testutil.DatabaseURL(t, "sqlite"))
	c := signUp(t, app, "ada@example.com")
	app.Clock.Advance(sudoWindow + time.Minute)
	for _, boosted := range []bool{true, false} {
		values := keyFormValues(t, c, "Billing worker")
		req, _ := http.NewRequest(http.MethodPost, app.URL("/settings/api-keys"), strings.NewReader(values.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("HX-Request", "true")
		if boosted {
			req.Header.Set("HX-Boosted", "true")
		}
		page := c.Do(req)
		if page.Doc.Find("html body #confirm-access").Length() != 1 || page.Doc.Find("header.topbar").Length() != 1 || page.Header.Get("HX-Push-Url") != "false" {
			t.Fatalf("boosted %v: %d, push %q:\n%s", boosted, page.Status, page.Header.Get("HX-Push-Url"), page.Raw)
		}
		if retarget := page.Header.Get("HX-Retarget"); (retarget == "body") == boosted {
			t.Errorf("boosted %v: HX-Retarget %q", boosted, retarget)
		}
	}
}

// API calls authenticated by keys never ask, even to make keys.
func TestSudoLeavesTheAPIAlone(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	admin := f.key(t, func(in *keys.CreateInput) { in.Permission = keys.PermAdmin })
	f.app.Clock.Advance(30 * 24 * time.Hour / 2)
	r := call(t, f.app, "POST", "/v1/keys", admin.Secret, map[string]any{"name": "made by a key", "permission": "read", "expires_in": "30"})
	if r.Status != http.StatusCreated {
		t.Fatalf("POST /v1/keys with a key: %d %s", r.Status, r.Raw)
	}
}

// confirmAccess answers Confirm access with the password, when page asks.
func confirmAccess(t *testing.T, c *testutil.Client, page *testutil.Page) *testutil.Page {
	t.Helper()
	if page.Doc.Find("#confirm-access").Length() == 0 {
		return page
	}
	return c.Submit(page, "#confirm-access form", map[string]string{"_sudo_password": password})
}

// A user with a passkey may confirm access with it: the page offers a
// second form carrying the same input, whose answer field is its own
// (adding a passkey posts a "credential" of its own through this page).
// A refused or stale answer asks again and makes nothing.
func TestSudoOffersAPasskey(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"), onLocalhost(),
		testutil.WithConfig(func(c *config.Config) { c.SudoTimeout = sudoWindow }))
	c := newUser(t, app, "ada@example.com")
	addPasskeyRow(t, app, "ada@example.com", "Laptop")
	app.Clock.Advance(sudoWindow + time.Minute)

	page := c.PostForm("/settings/api-keys", keyFormValues(t, c, "Billing worker"))
	form := page.Doc.Find(`#confirm-access form[data-passkey="confirm"]`)
	if page.Status != http.StatusOK || form.Length() != 1 {
		t.Fatalf("confirm access: %d, %d passkey forms", page.Status, form.Length())
	}
	if action, _ := form.Attr("action"); action != "/settings/api-keys" {
		t.Fatalf("the passkey form posts to %q", action)
	}
	if field, _ := form.Attr("data-credential"); field != "_sudo_passkey" || form.Find(`input[name="_sudo_passkey"]`).Length() != 1 {
		t.Fatalf("answer field %q", field)
	}
	if page.Doc.Find(`#confirm-access input[name="_sudo_code"]`).Length() != 0 {
		t.Fatal("a user with a passkey and no authenticator app is asked for a code")
	}
	if got := form.Find(`input[name="name"]`).AttrOr("value", ""); got != "Billing worker" {
		t.Fatalf("the passkey form carries name %q", got)
	}

	opts := c.PostForm("/sudo/passkey/options", url.Values{"_csrf": {csrfOf(page)}})
	if opts.Status != http.StatusOK || !strings.Contains(string(opts.Raw), `"userVerification":"required"`) {
		t.Fatalf("options: %d %s", opts.Status, opts.Raw)
	}
	before := keyCount(t, app)
	refused := c.Submit(page, `#confirm-access form[data-passkey="confirm"]`, map[string]string{"_sudo_passkey": `{"id":"TGFwdG9w","type":"public-key"}`})
	if refused.Status != http.StatusUnauthorized || !strings.Contains(refused.Text("#confirm-access .flash.error"), "not accepted") {
		t.Fatalf("a refused passkey: %d %q", refused.Status, refused.Text("#confirm-access"))
	}
	if got := hiddenValues(refused, "name"); !slices.Equal(got, []string{"Billing worker", "Billing worker"}) {
		t.Fatalf("name carried after a refusal: %q", got)
	}
	var failures int64
	app.DB.Model(&models.LoginAttempt{}).Where("email = ? AND succeeded = ?", "ada@example.com", false).Count(&failures)
	if failures != 1 || keyCount(t, app) != before {
		t.Fatalf("after a refused passkey: %d failed attempts, %d keys (was %d)", failures, keyCount(t, app), before)
	}
	// The request was used up: the same answer again meets no ceremony.
	stale := c.Submit(refused, `#confirm-access form[data-passkey="confirm"]`, map[string]string{"_sudo_passkey": `{"id":"TGFwdG9w","type":"public-key"}`})
	if stale.Status != http.StatusUnauthorized || !strings.Contains(stale.Text("#confirm-access .flash.error"), "expired") {
		t.Fatalf("a passkey answer without a request: %d %q", stale.Status, stale.Text("#confirm-access"))
	}
}
