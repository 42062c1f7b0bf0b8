package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"keysmith/config"
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
	app.Clock.Set(time.Now()) // the provider's tokens carry the wall clock's times
	p.SetUser(testutil.OIDCUser{Subject: "u-grace", Email: "grace@example.com", EmailVerified: true, Name: "Grace Hopper",
		Claims: map[string]any{"org_id": "navy", "org_name": "US Navy", "groups": []string{"admins"}}})

	b.do("open the login page", chromedp.Navigate(app.URL("/")), chromedp.WaitVisible(`a.sso-sign-in`))
	if got := b.text(`a.sso-sign-in`); got != "Sign in with Contaqt" {
		t.Fatalf("button = %q", got)
	}
	b.shot("01-sso-login")
	b.do("sign in with Contaqt", chromedp.Click(`a.sso-sign-in`), chromedp.WaitVisible(`.empty`))
	loc, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil || !strings.HasPrefix(loc, app.URL("/settings/api-keys")) {
		t.Fatalf("landed at %q (%v)", loc, err)
	}
	if got := b.text(`.topbar`); !strings.Contains(got, "US Navy") || !strings.Contains(got, "Grace Hopper") {
		t.Fatalf("top bar = %q, want Grace in US Navy", got)
	}
	b.shot("02-sso-landed")
	if p.Logins() != 1 {
		t.Fatalf("the provider saw %d logins", p.Logins())
	}
	// An admin: the Team page lets her invite.
	b.do("open Team", chromedp.Navigate(app.URL("/settings/team")), chromedp.WaitVisible(`form[action="/settings/team/invitations"]`))

	b.do("log out", chromedp.Click(`.topbar form[action="/logout"] button`), chromedp.WaitVisible(`.flash.info a`))
	if got := b.text(`.flash.info a`); got != "Also sign out of Contaqt" {
		t.Fatalf("logout offers %q", got)
	}
	b.shot("03-sso-logged-out")
	b.do("sign out of Contaqt", chromedp.Click(`.flash.info a`), chromedp.WaitVisible(`a.sso-sign-in`))
	if loc, err = chromedp.Run(b.ctx, chromedp.Location()); err != nil || loc != app.URL("/login") {
		t.Fatalf("after the provider's logout: %q (%v)", loc, err)
	}
}
