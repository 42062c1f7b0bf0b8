package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"keysmith/accounts"
	"keysmith/keys"
	"keysmith/testutil"
)

// TestOAuthRegisterAuthorizeAndRevokeAnApp is the OAuth click path: an
// owner registers an app through the form and reads its client ID; a
// second user, sent to the authorization endpoint by the app, logs in,
// allows it on the consent screen and returns to the app with a code and
// the app's state; then finds it under Settings → Authorized apps and
// revokes it.
func TestOAuthRegisterAuthorizeAndRevokeAnApp(t *testing.T) {
	b := newTab(t)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	o := newOwner(t, app, "olivia@example.com",
		keys.CreateInput{Name: "ci", Kind: keys.Secret, Env: keys.Live, Permission: keys.PermRead, ExpiresIn: "30"})
	if _, err := app.Accounts.SignUp(t.Context(), accounts.SignUpInput{Email: "bob@example.com", Name: "Bob", Password: ownerPassword}); err != nil {
		t.Fatal(err)
	}

	// The app: all it does here is receive the redirect.
	arrived := make(chan url.Values, 1)
	callback := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/callback" {
			select {
			case arrived <- r.URL.Query():
			default:
			}
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte("<!doctype html><title>Acme Sync</title><h1 id=done>Back at Acme Sync</h1>"))
	}))
	t.Cleanup(callback.Close)
	redirectURI := callback.URL + "/callback"

	o.logIn(b)
	b.do("open OAuth apps", chromedp.Click(`nav.sidenav a[href="/settings/oauth-apps"]`), chromedp.WaitVisible(`.empty`))
	b.shot("oauth-01-empty")
	b.do("open the form", chromedp.Click(`.empty a[href="/settings/oauth-apps/new"]`), chromedp.WaitVisible(`form.oauth-app-form`))
	b.do("forget the scopes",
		chromedp.SendKeys(`#name`, "Acme Sync"),
		chromedp.SendKeys(`#redirect_uris`, "http://acme.example/callback"),
		chromedp.Click(`form.oauth-app-form button[type=submit]`),
		chromedp.WaitVisible(`#redirect_uris-error`),
	)
	if !strings.Contains(b.text(`.scope-groups .error`), "at least one scope") || b.value(`#name`) != "Acme Sync" {
		t.Fatalf("refused form: scopes %q, name %q", b.text(`.scope-groups .error`), b.value(`#name`))
	}
	b.shot("oauth-02-form-errors")
	b.narrow("oauth-02-form-errors-390")
	b.do("register",
		chromedp.SetValue(`#redirect_uris`, redirectURI+"\nhttps://acme.example/callback"),
		chromedp.Click(`input[name=scopes][value="files:read"]`),
		chromedp.Click(`input[name=scopes][value="keys:read"]`),
		chromedp.Click(`form.oauth-app-form button[type=submit]`),
		chromedp.WaitVisible(`#secret`),
	)
	clientID, secret := b.value(`#client_id`), b.value(`#secret`)
	if !strings.HasPrefix(clientID, "ksapp_") || !strings.HasPrefix(secret, "ksapp_secret_") || !strings.Contains(b.text(`.secret-card .flash.warning`), "You will not see it again") {
		t.Fatalf("registered page: client_id %q, secret %q\n%s", clientID, secret, b.text(`main`))
	}
	b.shot("oauth-03-registered")
	b.narrow("oauth-03-registered-390")
	b.do("list", chromedp.Click(`.secret-card a[href="/settings/oauth-apps"]`), chromedp.WaitVisible(`table.oauth-apps`))
	if row := b.text(`table.oauth-apps tbody tr`); !strings.Contains(row, "Acme Sync") || !strings.Contains(row, clientID) || !strings.Contains(row, "0 users") {
		t.Fatalf("list row: %q", row)
	}
	b.shot("oauth-04-list")
	b.narrow("oauth-04-list-390")
	b.do("app page", chromedp.Click(`//a[strong[normalize-space()="Acme Sync"]]`), chromedp.WaitVisible(`#revoke`))
	b.do("open the revoke confirmation", chromedp.Click(`#revoke summary`), chromedp.WaitVisible(`#revoke button[type=submit]`))
	b.shot("oauth-05-app")
	b.narrow("oauth-05-app-390")
	b.do("log out", chromedp.Click(`.topbar form[action="/logout"] button`), chromedp.WaitVisible(`form[action="/login"]`))

	// Bob follows the app's link to the authorization endpoint.
	verifier := rand.Text() + rand.Text()
	sum := sha256.Sum256([]byte(verifier))
	state := "st-" + rand.Text()
	authorize := app.URL("/oauth/authorize?" + url.Values{
		"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirectURI}, "scope": {"files:read keys:read"},
		"state": {state}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}.Encode())
	b.do("authorize, logged out", chromedp.Navigate(authorize), chromedp.WaitVisible(`form[action="/login"]`))
	b.do("log in as Bob",
		chromedp.SendKeys(`#email`, "bob@example.com"),
		chromedp.SendKeys(`#password`, ownerPassword),
		chromedp.Click(`form[action="/login"] button[type=submit]`),
		chromedp.WaitVisible(`button[name=decision][value=allow]`),
	)
	if consent := b.text(`main`); !strings.Contains(consent, "Acme Sync") || !strings.Contains(consent, "files:read") {
		t.Fatalf("consent screen: %q", consent)
	}
	if n, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll('select[name=workspace] option').length`)); err != nil || n != 1 {
		t.Fatalf("workspace choices: %d (%v)", n, err)
	}
	b.shot("oauth-06-consent")
	b.narrow("oauth-06-consent-390")
	// Deny first: back to the app with access_denied and the same state.
	b.do("deny", chromedp.Click(`button[name=decision][value=deny]`), chromedp.WaitVisible(`#done`))
	select {
	case q := <-arrived:
		if q.Get("error") != "access_denied" || q.Get("state") != state || q.Get("code") != "" {
			t.Fatalf("deny redirected with %v", q)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("deny: the browser never reached the redirect URI")
	}
	b.do("authorize again", chromedp.Navigate(authorize), chromedp.WaitVisible(`button[name=decision][value=allow]`))
	// Should the browser refuse to follow the redirect, the page's CSP
	// says why (form-action applies to a form's redirects too).
	if _, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](
		`document.addEventListener("securitypolicyviolation", e => { window.cspViolation = e.violatedDirective + " blocked " + e.blockedURI }); true`)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	err := chromedp.Do(ctx, chromedp.Click(`button[name=decision][value=allow]`), chromedp.WaitVisible(`#done`))
	cancel()
	if err != nil {
		b.shot("failed-allow")
		csp, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`String(window.cspViolation || "none")`))
		t.Fatalf("allow: the browser did not reach the redirect URI (%v); CSP violation: %s", err, csp)
	}
	var query url.Values
	select {
	case query = <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the browser never reached the redirect URI")
	}
	location, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil || !strings.HasPrefix(location, redirectURI+"?") {
		t.Fatalf("browser at %q (%v), want the redirect URI", location, err)
	}
	if query.Get("code") == "" || query.Get("state") != state || query.Get("error") != "" {
		t.Fatalf("redirected with %v, want a code and state %q", query, state)
	}

	b.do("authorized apps",
		chromedp.Navigate(app.URL("/settings/account")),
		chromedp.WaitVisible(`nav.sidenav a[href="/settings/authorized-apps"]`),
		chromedp.Click(`nav.sidenav a[href="/settings/authorized-apps"]`),
		chromedp.WaitVisible(`table.authorized-apps`),
	)
	if row := b.text(`table.authorized-apps tbody tr`); !strings.Contains(row, "Acme Sync") || !strings.Contains(row, "files:read") || !strings.Contains(row, "Never") {
		t.Fatalf("authorized apps row: %q", row)
	}
	b.do("ask to revoke", chromedp.Click(`table.authorized-apps summary`), chromedp.WaitVisible(`//button[normalize-space()="Yes, revoke"]`))
	b.shot("oauth-07-authorized")
	b.narrow("oauth-07-authorized-390")
	b.do("revoke", chromedp.Click(`//button[normalize-space()="Yes, revoke"]`), chromedp.WaitVisible(`.flash.success`))
	if got := b.text(`.flash.success`); !strings.Contains(got, "Acme Sync can no longer act for you") {
		t.Fatalf("flash after revoking: %q", got)
	}
	if n, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll('table.authorized-apps').length`)); err != nil || n != 0 || !strings.Contains(b.text(`.empty`), "No app can act for you") {
		t.Fatalf("the app is still listed (%d tables, %v): %q", n, err, b.text(`main`))
	}
	b.shot("oauth-08-revoked")

	// The owner ends the app itself; it stays listed, revoked, with no actions.
	b.do("log out Bob", chromedp.Click(`.topbar form[action="/logout"] button`), chromedp.WaitVisible(`form[action="/login"]`))
	o.logIn(b)
	b.do("back to the app",
		chromedp.Navigate(app.URL("/settings/oauth-apps")),
		chromedp.WaitVisible(`table.oauth-apps`),
		chromedp.Click(`//a[strong[normalize-space()="Acme Sync"]]`),
		chromedp.WaitVisible(`#revoke`),
	)
	b.do("revoke the app",
		chromedp.Click(`#revoke summary`),
		chromedp.Click(`//button[normalize-space()="Yes, revoke this app"]`),
		chromedp.WaitVisible(`.flash.success`),
	)
	if row := b.text(`table.oauth-apps tbody tr`); !strings.Contains(row, "Revoked") {
		t.Fatalf("list row after revoking: %q", row)
	}
	b.shot("oauth-09-app-revoked")
	b.do("the revoked app", chromedp.Click(`//a[strong[normalize-space()="Acme Sync"]]`), chromedp.WaitVisible(`.badge.status.revoked`))
	if n, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll('#rotate, #revoke').length`)); err != nil || n != 0 {
		t.Fatalf("a revoked app offers %d actions (%v)", n, err)
	}
	b.shot("oauth-10-revoked-app-page")
}

// narrow saves a screenshot of the current page as a phone shows it
// (390 CSS pixels wide), checks nothing makes it scroll sideways, then
// returns to the desktop width.
func (b *tab) narrow(name string) {
	b.t.Helper()
	b.do("narrow to 390px", chromedp.EmulateViewport(390, 844))
	b.shot(name)
	if w, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); err != nil || w > 390 {
		b.t.Errorf("%s: the page is %d px wide at 390 px (%v): it scrolls sideways", name, w, err)
	}
	b.do("back to desktop width", chromedp.EmulateViewport(1280, 860))
}
