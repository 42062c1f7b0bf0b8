package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"

	"keysmith/config"
	"keysmith/identity"
	"keysmith/testutil"
)

// TestSingleSignOn clicks "Sign in with …" and follows the whole redirect
// dance in Chromium: Keysmith → the provider (zitadel/oidc's OP, in this
// process) → its login → the callback → Settings → API Keys of the
// workspace the claims name, with the role they map; then out again,
// through the provider's logout.
func TestSingleSignOn(t *testing.T) {
	b := newTab(t)
	p := testutil.StartOIDCProvider(t)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"), testutil.WithOIDC(p, "Contaqt", func(c *config.OIDC) {
		c.WorkspaceClaim, c.WorkspaceNameClaim = "org_id", "org_name"
		c.RoleClaim, c.Roles = "groups", map[string]string{"admins": "admin", "developers": "editor"}
	}))
	// The provider's tokens carry the wall clock's times. Grace signs in
	// two hours "ago", so a new key asks her to confirm access now.
	app.Clock.Set(time.Now().Add(-2 * time.Hour))
	p.SetUser(testutil.OIDCUser{Subject: "u-grace", Email: "grace@example.com", EmailVerified: true, Name: "Grace Hopper",
		Claims: map[string]any{"org_id": "navy", "org_name": "US Navy", "groups": []string{"admins"}}})

	b.do("open the login page", chromedp.Navigate(app.URL("/")), chromedp.WaitVisible(`a.sso-sign-in`))
	if got := b.text(`a.sso-sign-in`); got != "Sign in with Contaqt" {
		t.Fatalf("button = %q", got)
	}
	b.shot("01-sso-login")
	b.accessible("the login page with single sign-on")
	b.do("sign in with Contaqt", chromedp.Click(`a.sso-sign-in`), chromedp.WaitVisible(`.empty`))
	loc, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil || !strings.HasPrefix(loc, app.URL("/settings/api-keys")) {
		t.Fatalf("landed at %q (%v)", loc, err)
	}
	if got := b.text(`.topbar`); !strings.Contains(got, "US Navy") || !strings.Contains(got, "Grace Hopper") {
		t.Fatalf("top bar = %q, want Grace in US Navy", got)
	}
	b.shot("02-sso-landed")
	b.accessible("the keys page after single sign-on")
	if p.Logins() != 1 {
		t.Fatalf("the provider saw %d logins", p.Logins())
	}
	// An admin: the Team page lets her invite.
	b.do("open Team", chromedp.Navigate(app.URL("/settings/team")), chromedp.WaitVisible(`form[action="/settings/team/invitations"]`))

	// Sudo through the provider, from a form htmx submitted: the page's
	// CSP lets the Confirm with Contaqt form go on to the provider.
	app.Clock.Set(time.Now())
	b.do("open the create form", chromedp.Navigate(app.URL("/settings/api-keys/new")), chromedp.WaitVisible(`form.key-form`))
	b.do("create", chromedp.SendKeys(`#name`, "deploy-bot"), chromedp.Click(`form.key-form button[type=submit]`), chromedp.WaitVisible(`#confirm-access form.sudo-sso`))
	b.shot("03-sso-confirm-access")
	b.accessible("Confirm access through the provider")
	b.do("confirm with Contaqt", chromedp.Click(`form.sudo-sso button`), chromedp.WaitVisible(`//h1[normalize-space()="Access confirmed"]`))
	if p.Logins() != 2 || p.LastAuthorizeRequest().Get("prompt") != "login" {
		t.Fatalf("the provider saw %d logins, last asking %v", p.Logins(), p.LastAuthorizeRequest())
	}
	b.do("continue", chromedp.Click(`#confirm-access button[type=submit]`), chromedp.WaitVisible(`#secret`))
	if secret := b.value(`#secret`); !strings.HasPrefix(secret, "ks_") {
		t.Fatalf("secret = %q", secret)
	}
	b.shot("04-sso-key-made")
	b.do("open Security", chromedp.Navigate(app.URL("/settings/security")), chromedp.WaitVisible(`main h1`))
	if got := b.text(`main`); !strings.Contains(got, "Contaqt") {
		t.Fatalf("Settings → Security does not name the linked provider:\n%s", got)
	}
	if got := b.text(`#two-step p`); !strings.Contains(got, "Your Contaqt account is all that guards this one") {
		t.Fatalf("two-step verification, for a user without a password, says %q", got)
	}
	b.shot("04b-sso-security")
	b.accessible("Settings → Security with a linked provider")
	// An authenticator app for an account without a password: turning it
	// off asks for a code alone.
	b.do("set up an authenticator app", chromedp.Click(`form[action="/settings/security/two-factor"] button`), chromedp.WaitVisible(`#totp-secret`))
	code, err := totp.GenerateCode(strings.ReplaceAll(b.text(`#totp-secret`), " ", ""), app.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	b.do("confirm with a code", chromedp.SendKeys(`#code`, code), chromedp.Click(`form[action="/settings/security/two-factor/confirm"] button`), chromedp.WaitVisible(`#recovery-codes`))
	b.do("back to Security", chromedp.Navigate(app.URL("/settings/security")), chromedp.WaitVisible(`#recovery-left`))
	if n, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll('form[action="/settings/security/two-factor/disable"] input[name=password]').length`)); err != nil || n != 0 {
		t.Fatalf("turning two-step off asks a user without a password for one (%d fields, %v)", n, err)
	}
	if got := b.text(`#two-step p`); !strings.Contains(got, "after Contaqt's sign-in") {
		t.Fatalf("two-step verification on says %q", got)
	}
	b.shot("04c-sso-two-step-on")
	b.accessible("Security, two-step verification on, without a password")
	b.narrow("04c-sso-two-step-on-390")

	b.do("log out", chromedp.Click(`.topbar form[action="/logout"] button`), chromedp.WaitVisible(`.flash.info a`))
	if got := b.text(`.flash.info a`); got != "Also sign out of Contaqt" {
		t.Fatalf("logout offers %q", got)
	}
	b.shot("05-sso-logged-out")
	b.accessible("the logout page offering the provider's")
	b.do("sign out of Contaqt", chromedp.Click(`.flash.info a`), chromedp.WaitVisible(`a.sso-sign-in`))
	if loc, err = chromedp.Run(b.ctx, chromedp.Location()); err != nil || loc != app.URL("/login") {
		t.Fatalf("after the provider's logout: %q (%v)", loc, err)
	}

	// A callback no sign-in started (a stale or forged link): the error
	// page, which must be as usable as any other.
	b.do("a stray callback", chromedp.Navigate(app.URL(identity.CallbackPath+"?state=stray&code=stray")), chromedp.WaitVisible(`main h1`))
	b.shot("06-sso-error")
	b.accessible("the single sign-on error page")
}
