package handlers_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"keysmith/accounts"
	"keysmith/config"
	"keysmith/identity"
	"keysmith/models"
	"keysmith/testutil"
)

// The tests' provider and the claims they configure.
func orgClaims(c *config.OIDC) {
	c.WorkspaceClaim, c.WorkspaceNameClaim = "org_id", "org_name"
	c.RoleClaim, c.Roles = "groups", map[string]string{"admins": "admin", "developers": "editor"}
}

func startSSOApp(t *testing.T, dbURL string, p *testutil.OIDCProvider, adjust func(*config.OIDC), more ...testutil.Option) *testutil.App {
	t.Helper()
	a := testutil.StartApp(t, dbURL, append([]testutil.Option{testutil.WithOIDC(p, "Contaqt", adjust)}, more...)...)
	// The provider's tokens carry the wall clock's times.
	a.Clock.Set(time.Now())
	return a
}

// ssoSignIn clicks "Sign in with Contaqt" on the login page and follows
// the redirects: to the provider, its login, and back.
func ssoSignIn(t *testing.T, c *testutil.Client) *testutil.Page {
	t.Helper()
	login := c.Get("/login")
	href, ok := login.Doc.Find("a.sso-sign-in").Attr("href")
	if !ok || !strings.Contains(login.Text("a.sso-sign-in"), "Sign in with Contaqt") {
		t.Fatalf("no Sign in with Contaqt on %s:\n%s", login.URL, login.Text("main"))
	}
	return c.Get(href)
}

// callbackURL starts a sign-in and stops where the provider sends the
// browser back: the path and query of the callback, not yet followed.
func callbackURL(t *testing.T, c *testutil.Client, start string) string {
	t.Helper()
	c.HTTP.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		if req.URL.Path == identity.CallbackPath {
			return http.ErrUseLastResponse
		}
		return nil
	}
	defer func() { c.HTTP.CheckRedirect = nil }()
	page := c.Get(start)
	loc, err := url.Parse(page.Header.Get("Location"))
	if err != nil || loc.Path != identity.CallbackPath {
		t.Fatalf("sign-in stopped at %d %s, Location %q", page.Status, page.URL, page.Header.Get("Location"))
	}
	return loc.RequestURI()
}

// signedIn reports whether the client's session opens the dashboard.
func signedIn(t *testing.T, c *testutil.Client) bool {
	t.Helper()
	page := c.Get("/settings/api-keys")
	return page.Status == http.StatusOK && page.URL.Path == "/settings/api-keys"
}

func countRows(t *testing.T, a *testutil.App, model any, where ...any) int64 {
	t.Helper()
	var n int64
	q := a.DB.Model(model)
	if len(where) > 0 {
		q = q.Where(where[0], where[1:]...)
	}
	if err := q.Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

func memberships(t *testing.T, a *testutil.App, email string) map[string]models.Role {
	t.Helper()
	var user models.User
	if err := a.DB.Where("email = ?", email).Take(&user).Error; err != nil {
		t.Fatalf("user %s: %v", email, err)
	}
	ms, err := a.Accounts.Memberships(context.Background(), user.ID)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]models.Role{}
	for _, m := range ms {
		out[m.Workspace.Name] = m.Role
	}
	return out
}

func TestSSOFirstSignInCreatesTheUserAndWorkspaceThenReusesThem(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		p := testutil.StartOIDCProvider(t)
		a := startSSOApp(t, dbURL, p, orgClaims)
		p.SetUser(testutil.OIDCUser{Subject: "u-ada", Email: "Ada@Example.com", EmailVerified: true, Name: "Ada Lovelace",
			Claims: map[string]any{"org_id": "org-1", "org_name": "Analytical Engines", "groups": []string{"developers"}}})

		page := ssoSignIn(t, a.NewClient(t))
		if page.Status != http.StatusOK || page.URL.Path != "/settings/api-keys" || !strings.Contains(page.Body, "Analytical Engines") {
			t.Fatalf("first sign-in ended at %d %s:\n%s", page.Status, page.URL, page.Text("main"))
		}
		var user models.User
		if err := a.DB.Where("email = ?", "ada@example.com").Take(&user).Error; err != nil {
			t.Fatal(err)
		}
		if user.Name != "Ada Lovelace" || user.PasswordHash != "" {
			t.Errorf("user %+v: want the provider's name and no password", user)
		}
		// The mapping says editor: signing in makes nobody below admin an
		// owner, even of the workspace their sign-in made.
		if got := memberships(t, a, "ada@example.com"); len(got) != 1 || got["Analytical Engines"] != models.RoleEditor {
			t.Errorf("memberships %v: want editor of Analytical Engines only", got)
		}
		if n := countRows(t, a, &models.UserIdentity{}, "user_id = ? AND issuer = ? AND subject = ?", user.ID, p.Issuer, "u-ada"); n != 1 {
			t.Errorf("%d identities linked by (issuer, sub)", n)
		}
		if n := countRows(t, a, &models.AuditEvent{}, "action = ? AND key_label = ?", "member.joined", "ada@example.com"); n != 1 {
			t.Errorf("%d member.joined events", n)
		}

		// Another browser, the same subject: the same user and workspace.
		page = ssoSignIn(t, a.NewClient(t))
		if page.URL.Path != "/settings/api-keys" {
			t.Fatalf("second sign-in ended at %s", page.URL)
		}
		if n := countRows(t, a, &models.User{}); n != 1 {
			t.Errorf("%d users after the second sign-in", n)
		}
		if n := countRows(t, a, &models.Workspace{}); n != 1 {
			t.Errorf("%d workspaces after the second sign-in", n)
		}
		if p.Logins() != 2 {
			t.Errorf("the provider saw %d logins", p.Logins())
		}
		// PKCE S256, state and nonce went to the provider.
		q := p.LastAuthorizeRequest()
		if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("state") == "" || q.Get("nonce") == "" {
			t.Errorf("authorization request %v", q)
		}
	})
}

func TestSSOLinksBySubjectNeverByEmail(t *testing.T) {
	p := testutil.StartOIDCProvider(t)
	a := startSSOApp(t, testutil.DatabaseURL(t, "sqlite"), p, nil)
	p.SetUser(testutil.OIDCUser{Subject: "s-1", Email: "ada@example.com", EmailVerified: true, Name: "Ada"})
	if page := ssoSignIn(t, a.NewClient(t)); page.URL.Path != "/settings/api-keys" {
		t.Fatalf("sign-in ended at %s", page.URL)
	}
	// Without a workspace claim: a personal workspace, owned.
	if got := memberships(t, a, "ada@example.com"); len(got) != 1 {
		t.Errorf("memberships %v", got)
	}
	// The provider's address changes: the same subject is the same user.
	p.SetUser(testutil.OIDCUser{Subject: "s-1", Email: "ada@new.example.com", EmailVerified: true, Name: "Ada"})
	c := a.NewClient(t)
	ssoSignIn(t, c)
	if n := countRows(t, a, &models.User{}); n != 1 {
		t.Errorf("%d users: a new address made a new account", n)
	}
	// Another subject claiming Ada's address is not let in.
	p.SetUser(testutil.OIDCUser{Subject: "s-2", Email: "ada@example.com", EmailVerified: true, Name: "Mallory"})
	c = a.NewClient(t)
	page := ssoSignIn(t, c)
	if page.URL.Path != "/login/oidc/link" || signedIn(t, c) {
		t.Fatalf("another subject with Ada's email got %s", page.URL)
	}
}

func TestSSOUnverifiedEmailIsRefused(t *testing.T) {
	p := testutil.StartOIDCProvider(t)
	a := startSSOApp(t, testutil.DatabaseURL(t, "sqlite"), p, nil)
	p.SetUser(testutil.OIDCUser{Subject: "u-1", Email: "eve@example.com", EmailVerified: false, Name: "Eve"})
	c := a.NewClient(t)
	page := ssoSignIn(t, c)
	if page.Status != http.StatusForbidden || !strings.Contains(page.Text("main"), "has not verified the email address eve@example.com") {
		t.Fatalf("unverified email: %d %s", page.Status, page.Text("main"))
	}
	if signedIn(t, c) || countRows(t, a, &models.User{}) != 0 {
		t.Error("an unverified email got an account")
	}
}

func TestSSOExistingPasswordAccountIsLinkedOnlyWithItsPassword(t *testing.T) {
	p := testutil.StartOIDCProvider(t)
	a := startSSOApp(t, testutil.DatabaseURL(t, "sqlite"), p, nil)
	signUp(t, a, "ada@example.com")
	p.SetUser(testutil.OIDCUser{Subject: "u-ada", Email: "ada@example.com", EmailVerified: true, Name: "Ada"})

	c := a.NewClient(t)
	page := ssoSignIn(t, c)
	if page.URL.Path != "/login/oidc/link" || !strings.Contains(page.Text("main"), "A Keysmith account for ada@example.com exists already") {
		t.Fatalf("sign-in with an existing email: %d %s\n%s", page.Status, page.URL, page.Text("main"))
	}
	wrong := c.Submit(page, "form[action='/login/oidc/link']", map[string]string{"password": "not the password"})
	if wrong.Status != http.StatusUnauthorized || countRows(t, a, &models.UserIdentity{}) != 0 {
		t.Fatalf("wrong password: %d, %d identities", wrong.Status, countRows(t, a, &models.UserIdentity{}))
	}
	if signedIn(t, c) {
		t.Fatal("signed in without the password")
	}
	page = c.Submit(c.Get("/login/oidc/link"), "form[action='/login/oidc/link']", map[string]string{"password": password})
	if page.URL.Path != "/settings/api-keys" || countRows(t, a, &models.UserIdentity{}) != 1 || countRows(t, a, &models.User{}) != 1 {
		t.Fatalf("right password: %s, %d identities", page.URL, countRows(t, a, &models.UserIdentity{}))
	}
	if n := countRows(t, a, &models.AuditEvent{}, "action = ?", identity.ActionSSOLinked); n != 1 {
		t.Errorf("%d sso.linked events", n)
	}
	// Linked: the next sign-in goes straight in.
	if page := ssoSignIn(t, a.NewClient(t)); page.URL.Path != "/settings/api-keys" {
		t.Errorf("next sign-in ended at %s", page.URL)
	}
	// Settings → Security shows the link, and unlinks it (a password remains).
	sec := c.Get("/settings/security")
	if !strings.Contains(sec.Text("#sso"), "Linked") || !strings.Contains(sec.Text("#sso"), "ada@example.com") {
		t.Fatalf("security page: %q", sec.Text("#sso"))
	}
	if csp := sec.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' "+p.Issuer) {
		t.Errorf("CSP %q does not let the page's forms lead to the provider", csp)
	}
	page = c.Submit(sec, "form[action='/settings/security/sso/unlink']", nil)
	if page.URL.Path != "/settings/security" || countRows(t, a, &models.UserIdentity{}) != 0 {
		t.Fatalf("unlink: %s, %d identities", page.URL, countRows(t, a, &models.UserIdentity{}))
	}
}

func TestSSOSecondStepStillAsked(t *testing.T) {
	p := testutil.StartOIDCProvider(t)
	a := startSSOApp(t, testutil.DatabaseURL(t, "sqlite"), p, nil)
	c := signUp(t, a, "ada@example.com")
	secret, _ := enableTOTP(t, a, c)
	// Link from Settings → Security (the session is fresh: no sudo page).
	p.SetUser(testutil.OIDCUser{Subject: "u-ada", Email: "ada@corp.example.com", EmailVerified: true, Name: "Ada"})
	page := c.Submit(c.Get("/settings/security"), "form[action='/settings/security/sso/link']", nil)
	if page.URL.Path != "/settings/security" || !strings.Contains(page.Text(".flash"), "Contaqt is linked") {
		t.Fatalf("link from Settings: %s %q", page.URL, page.Text(".flash"))
	}
	c2 := a.NewClient(t)
	page = ssoSignIn(t, c2)
	if page.URL.Path != "/login/two-factor" || signedIn(t, c2) {
		t.Fatalf("SSO sign-in of a user with an authenticator app ended at %s", page.URL)
	}
	a.Clock.Advance(30 * time.Second) // the setup spent the current code
	page = c2.Submit(c2.Get("/login/two-factor"), "form[action='/login/two-factor']", map[string]string{"code": codeAt(t, secret, a.Clock.Now())})
	if page.URL.Path != "/settings/api-keys" {
		t.Fatalf("after the code: %s\n%s", page.URL, page.Text("main"))
	}
}

// A user the provider signed up has no password: turning the authenticator
// app off asks for a code alone, and the mail names the provider.
func TestSSOUserWithoutPasswordTurnsTwoStepOffWithACode(t *testing.T) {
	p := testutil.StartOIDCProvider(t)
	a := startSSOApp(t, testutil.DatabaseURL(t, "sqlite"), p, nil)
	p.SetUser(testutil.OIDCUser{Subject: "u-grace", Email: "grace@example.com", EmailVerified: true, Name: "Grace"})
	c := a.NewClient(t)
	if page := ssoSignIn(t, c); page.URL.Path != "/settings/api-keys" {
		t.Fatalf("sign-in ended at %s", page.URL)
	}
	secret, _ := enableTOTP(t, a, c)
	page := c.Get("/settings/security")
	form := "form[action='/settings/security/two-factor/disable']"
	if page.Doc.Find(form+" input[name=password]").Length() != 0 || strings.Contains(page.Text("#two-step"), "password") {
		t.Fatalf("a user without a password is asked for one:\n%s", page.Text("#two-step"))
	}
	empty := c.Submit(page, form, nil)
	if empty.Status != http.StatusUnprocessableEntity || !strings.Contains(empty.Text("#code-error"), "Enter a code") {
		t.Fatalf("nothing given: %d, code error %q", empty.Status, empty.Text("#code-error"))
	}
	a.Clock.Advance(30 * time.Second) // the setup spent the current code
	off := c.Submit(empty, form, map[string]string{"code": codeAt(t, secret, a.Clock.Now())})
	if off.URL.Path != "/settings/security" || !strings.Contains(off.Text(".flash"), "Two-step verification is off") {
		t.Fatalf("with a code: %s %q", off.URL, off.Text(".flash"))
	}
	a.Outbox.Wait()
	var on, body string
	for _, m := range a.Mails() {
		switch m.Subject {
		case "Two-step verification is on for your Keysmith account":
			on = m.Text
		case "Two-step verification is off for your Keysmith account":
			body = m.Text
		}
	}
	if !strings.Contains(body, "asks only for your Contaqt account") || strings.Contains(body, "reset your password") {
		t.Fatalf("the mail says:\n%s", body)
	}
	if !strings.Contains(on, "If this was not you, secure your Contaqt account now") || strings.Contains(on, "reset your password") {
		t.Fatalf("the mail of turning it on says:\n%s", on)
	}
}

func TestSSOForgedAndReplayedAnswersSignNobodyIn(t *testing.T) {
	p := testutil.StartOIDCProvider(t)
	a := startSSOApp(t, testutil.DatabaseURL(t, "sqlite"), p, nil)
	p.SetUser(testutil.OIDCUser{Subject: "u-1", Email: "ada@example.com", EmailVerified: true, Name: "Ada"})
	refused := func(t *testing.T, c *testutil.Client, page *testutil.Page, status int, text string) {
		t.Helper()
		if page.Status != status || !strings.Contains(page.Text("main"), text) {
			t.Errorf("answered %d %q; want %d %q", page.Status, page.Text("main"), status, text)
		}
		if signedIn(t, c) {
			t.Error("the session opens the dashboard")
		}
		if n := countRows(t, a, &models.User{}); n != 0 {
			t.Errorf("%d users made", n)
		}
	}
	for _, tc := range []struct {
		name   string
		tamper func(claims map[string]any)
		rogue  bool
	}{
		{"wrong nonce", func(c map[string]any) { c["nonce"] = "someone-elses" }, false},
		{"expired", func(c map[string]any) {
			now := a.Clock.Now()
			c["iat"], c["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-10*time.Minute).Unix()
		}, false},
		{"another audience", func(c map[string]any) { c["aud"] = []string{p.OtherClientID}; c["azp"] = p.OtherClientID }, false},
		{"another issuer", func(c map[string]any) { c["iss"] = "https://evil.example.com" }, false},
		{"signed with a key the provider does not publish", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.Tamper(tc.tamper)
			p.SignWithRogueKey(tc.rogue)
			defer p.Tamper(nil)
			defer p.SignWithRogueKey(false)
			c := a.NewClient(t)
			refused(t, c, ssoSignIn(t, c), http.StatusUnauthorized, "could not be verified")
		})
	}
	t.Run("state mismatch", func(t *testing.T) {
		c := a.NewClient(t)
		cb := callbackURL(t, c, "/login/oidc")
		u, _ := url.Parse(cb)
		q := u.Query()
		q.Set("state", "forged")
		u.RawQuery = q.Encode()
		refused(t, c, c.Get(u.RequestURI()), http.StatusBadRequest, "does not match the sign-in this browser started")
		// The real answer came too late: the request was spent.
		refused(t, c, c.Get(cb), http.StatusBadRequest, "used already, or it expired")
	})
	t.Run("callback in another browser", func(t *testing.T) {
		cb := callbackURL(t, a.NewClient(t), "/login/oidc")
		c := a.NewClient(t)
		refused(t, c, c.Get(cb), http.StatusBadRequest, "does not belong to a sign-in under way in this browser")
	})
	t.Run("cancelled at the provider", func(t *testing.T) {
		c := a.NewClient(t)
		cb := callbackURL(t, c, "/login/oidc")
		u, _ := url.Parse(cb)
		refused(t, c, c.Get(identity.CallbackPath+"?error=access_denied&state="+u.Query().Get("state")), http.StatusUnauthorized, "The sign-in was cancelled at Contaqt")
	})
	t.Run("replay", func(t *testing.T) {
		c := a.NewClient(t)
		cb := callbackURL(t, c, "/login/oidc")
		if page := c.Get(cb); page.URL.Path != "/settings/api-keys" {
			t.Fatalf("the real answer: %d %s", page.Status, page.URL)
		}
		if again := c.Get(cb); again.Status != http.StatusBadRequest {
			t.Errorf("replayed in the same browser: %d", again.Status)
		}
		other := a.NewClient(t)
		if page := other.Get(cb); page.Status != http.StatusBadRequest || signedIn(t, other) {
			t.Errorf("replayed in another browser: %d", page.Status)
		}
	})
}

func TestSSORoleAndWorkspaceFollowTheClaims(t *testing.T) {
	p := testutil.StartOIDCProvider(t)
	a := startSSOApp(t, testutil.DatabaseURL(t, "sqlite"), p, orgClaims)
	user := func(org, name string, groups ...string) testutil.OIDCUser {
		return testutil.OIDCUser{Subject: "u-grace", Email: "grace@example.com", EmailVerified: true, Name: "Grace",
			Claims: map[string]any{"org_id": org, "org_name": name, "groups": groups}}
	}
	// Someone else made both workspaces, an admin by the mapping: their owner.
	for _, org := range [][2]string{{"org-1", "Navy"}, {"org-2", "Harvard"}} {
		p.SetUser(testutil.OIDCUser{Subject: "u-founder", Email: "founder@example.com", EmailVerified: true, Name: "Founder",
			Claims: map[string]any{"org_id": org[0], "org_name": org[1], "groups": []string{"admins"}}})
		ssoSignIn(t, a.NewClient(t))
	}
	p.SetUser(user("org-1", "Navy", "developers"))
	ssoSignIn(t, a.NewClient(t))
	if got := memberships(t, a, "grace@example.com"); got["Navy"] != models.RoleEditor {
		t.Fatalf("first sign-in: %v", got)
	}
	p.SetUser(user("org-1", "Navy", "developers", "admins"))
	ssoSignIn(t, a.NewClient(t))
	if got := memberships(t, a, "grace@example.com"); got["Navy"] != models.RoleAdmin {
		t.Fatalf("after joining admins: %v", got)
	}
	if n := countRows(t, a, &models.AuditEvent{}, "action = ? AND detail LIKE ?", "member.role_changed", "editor → admin%"); n != 1 {
		t.Errorf("%d role changes audited", n)
	}
	// Her claim now names another organisation: she leaves the first.
	p.SetUser(user("org-2", "Harvard", "developers"))
	page := ssoSignIn(t, a.NewClient(t))
	if got := memberships(t, a, "grace@example.com"); len(got) != 1 || got["Harvard"] != models.RoleEditor {
		t.Fatalf("after moving: %v", got)
	}
	if !strings.Contains(page.Body, "Harvard") {
		t.Error("she did not land in Harvard")
	}
	if n := countRows(t, a, &models.AuditEvent{}, "action = ? AND key_label = ?", "member.removed", "grace@example.com"); n != 1 {
		t.Errorf("%d removals audited", n)
	}
}

func TestSSOWithoutRoleMappingFirstMemberOwnsAndTheLastOwnerStays(t *testing.T) {
	p := testutil.StartOIDCProvider(t)
	a := startSSOApp(t, testutil.DatabaseURL(t, "sqlite"), p, func(c *config.OIDC) { c.WorkspaceClaim = "org_id" })
	in := func(sub, org string) {
		p.SetUser(testutil.OIDCUser{Subject: sub, Email: sub + "@example.com", EmailVerified: true, Claims: map[string]any{"org_id": org}})
		ssoSignIn(t, a.NewClient(t))
	}
	in("first", "acme")
	in("second", "acme")
	if got := memberships(t, a, "first@example.com"); got["acme"] != models.RoleOwner {
		t.Errorf("first member: %v", got)
	}
	if got := memberships(t, a, "second@example.com"); got["acme"] != models.RoleEditor {
		t.Errorf("second member: %v", got)
	}
	in("first", "globex")
	if got := memberships(t, a, "first@example.com"); got["acme"] != models.RoleOwner || got["globex"] != models.RoleOwner {
		t.Errorf("the last owner of acme moved: %v", got)
	}
	in("second", "globex")
	if got := memberships(t, a, "second@example.com"); len(got) != 1 || got["globex"] != models.RoleEditor {
		t.Errorf("second member moved: %v", got)
	}
}

// With a role mapping, a workspace that has no owner (nobody could
// administer it) gets one: the first member the mapping makes an admin.
// Members below admin never become owners by signing in, not even the one
// whose sign-in made the workspace; the last owner is never demoted.
func TestSSOWithRoleMappingTheFirstAdminOwnsAnOwnerlessWorkspace(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		p := testutil.StartOIDCProvider(t)
		a := startSSOApp(t, dbURL, p, orgClaims)
		in := func(sub string, groups ...string) {
			t.Helper()
			p.SetUser(testutil.OIDCUser{Subject: sub, Email: sub + "@example.com", EmailVerified: true,
				Claims: map[string]any{"org_id": "org-1", "org_name": "Acme", "groups": groups}})
			if page := ssoSignIn(t, a.NewClient(t)); page.URL.Path != "/settings/api-keys" {
				t.Fatalf("%s's sign-in ended at %d %s", sub, page.Status, page.URL)
			}
		}
		owners := func() int64 { return countRows(t, a, &models.Membership{}, "role = ?", models.RoleOwner) }
		in("dev", "developers") // makes the workspace
		if got := memberships(t, a, "dev@example.com"); got["Acme"] != models.RoleEditor || owners() != 0 {
			t.Errorf("the editor who made the workspace: %v, %d owners; want editor and none", got, owners())
		}
		in("boss", "admins")
		if got := memberships(t, a, "boss@example.com"); got["Acme"] != models.RoleOwner {
			t.Errorf("the first admin of an ownerless workspace: %v; want its owner", got)
		}
		if n := countRows(t, a, &models.AuditEvent{}, "action = ? AND key_label = ? AND detail LIKE ?", "member.joined", "boss@example.com", "as owner (single sign-on: the workspace had no owner%"); n != 1 {
			t.Errorf("%d joins as owner audited with the reason", n)
		}
		in("deputy", "admins")
		if got := memberships(t, a, "deputy@example.com"); got["Acme"] != models.RoleAdmin {
			t.Errorf("a second admin: %v; want admin, as mapped", got)
		}
		// The mapping says admin at every sign-in; the last owner stays owner.
		in("boss", "admins")
		if got := memberships(t, a, "boss@example.com"); got["Acme"] != models.RoleOwner || owners() != 1 {
			t.Errorf("the last owner's next sign-in: %v, %d owners", got, owners())
		}
	})
}

// A workspace left without an owner (by an earlier release, or an owner
// removed by hand) gets one when a member the mapping makes an admin signs
// in again.
func TestSSOOwnerlessWorkspaceMendedAtAnAdminsSignIn(t *testing.T) {
	p := testutil.StartOIDCProvider(t)
	a := startSSOApp(t, testutil.DatabaseURL(t, "sqlite"), p, orgClaims)
	p.SetUser(testutil.OIDCUser{Subject: "u-kim", Email: "kim@example.com", EmailVerified: true,
		Claims: map[string]any{"org_id": "org-1", "org_name": "Acme", "groups": []string{"developers"}}})
	ssoSignIn(t, a.NewClient(t))
	p.SetUser(testutil.OIDCUser{Subject: "u-kim", Email: "kim@example.com", EmailVerified: true,
		Claims: map[string]any{"org_id": "org-1", "org_name": "Acme", "groups": []string{"developers", "admins"}}})
	ssoSignIn(t, a.NewClient(t))
	if got := memberships(t, a, "kim@example.com"); got["Acme"] != models.RoleOwner {
		t.Errorf("an editor made admin by the mapping, in a workspace with no owner: %v; want owner", got)
	}
}

func TestSSOConcurrentFirstSignInsMakeOneUser(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		p := testutil.StartOIDCProvider(t)
		a := startSSOApp(t, dbURL, p, func(c *config.OIDC) { c.WorkspaceClaim = "org_id" })
		// Open the connections first, so the sign-ins race each other
		// rather than the pool.
		sqlDB, err := a.DB.DB()
		if err != nil {
			t.Fatal(err)
		}
		var conns []*sql.Conn
		for range 8 {
			conn, err := sqlDB.Conn(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, conn)
		}
		for _, conn := range conns {
			conn.Close()
		}
		// Several rounds: a race is not lost every time.
		const rounds = 8
		for round := range rounds {
			sub := fmt.Sprintf("u-%d", round)
			id := identity.Identity{Issuer: p.Issuer, Subject: sub, Email: sub + "@example.com", EmailVerified: true, Workspace: "acme"}
			var wg sync.WaitGroup
			ids := make([]int64, 12)
			errs := make([]error, len(ids))
			start := make(chan struct{})
			for i := range ids {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					res, err := a.SSO.SignIn(context.Background(), id, accounts.Actor{})
					ids[i], errs[i] = res.User.ID, err
				}()
			}
			close(start)
			wg.Wait()
			for i := range ids {
				if errs[i] != nil || ids[i] != ids[0] {
					t.Errorf("round %d, sign-in %d: user %d, %v; want user %d", round, i, ids[i], errs[i], ids[0])
				}
			}
		}
		if n := countRows(t, a, &models.User{}); n != rounds {
			t.Errorf("%d users after %d subjects signed in", n, rounds)
		}
		if n := countRows(t, a, &models.Membership{}); n != rounds {
			t.Errorf("%d memberships", n)
		}
		if n := countRows(t, a, &models.SSOWorkspace{}); n != 1 {
			t.Errorf("%d workspaces tied to acme", n)
		}
	})
}

func TestSSOWithPasswordLoginOff(t *testing.T) {
	p := testutil.StartOIDCProvider(t)
	a := startSSOApp(t, testutil.DatabaseURL(t, "sqlite"), p, nil, testutil.WithConfig(func(c *config.Config) { c.PasswordLogin = false }))
	p.SetUser(testutil.OIDCUser{Subject: "u-1", Email: "ada@example.com", EmailVerified: true, Name: "Ada"})

	// /login goes straight to the provider, and back signed in.
	c := a.NewClient(t)
	if page := c.Get("/login"); page.URL.Path != "/settings/api-keys" {
		t.Fatalf("/login ended at %s", page.URL)
	}
	// Signed out, the page says so and offers the provider only.
	page := c.Submit(c.Get("/settings/security"), "form[action='/logout']", nil)
	if page.URL.Path != "/login" || page.Doc.Find("input[name=password]").Length() != 0 || page.Doc.Find("a.sso-sign-in").Length() != 1 {
		t.Fatalf("after logout %s: password field or no provider button:\n%s", page.URL, page.Text("main"))
	}
	if page.Doc.Find("a[href='/signup'], a[href='/forgot-password']").Length() != 0 {
		t.Error("sign-up or reset offered")
	}
	anon := a.NewClient(t)
	for _, path := range []string{"/signup", "/forgot-password", "/reset-password?token=x", "/signup/confirm?token=x"} {
		if page := anon.Get(path); page.Status != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, page.Status)
		}
	}
	token := csrfOf(anon.Get("/login/password"))
	if page := anon.PostForm("/login", url.Values{"_csrf": {token}, "email": {"ada@example.com"}, "password": {password}}); page.Status != http.StatusNotFound {
		t.Errorf("POST /login: %d, want 404", page.Status)
	}
	// Break-glass: a user the CLI made signs in at /login/password.
	if _, err := a.Accounts.SignUp(context.Background(), accounts.SignUpInput{Email: "ops@example.com", Password: password}); err != nil {
		t.Fatal(err)
	}
	glass := a.NewClient(t)
	form := glass.Get("/login/password")
	if form.Doc.Find("form[action='/login/password'] input[name=password]").Length() != 1 {
		t.Fatalf("/login/password has no password form:\n%s", form.Text("main"))
	}
	page = glass.Submit(form, "form[action='/login/password']", map[string]string{"email": "ops@example.com", "password": password})
	if page.URL.Path != "/settings/api-keys" {
		t.Fatalf("break-glass sign-in ended at %s", page.URL)
	}
}

func TestSSOSudoThroughTheProvider(t *testing.T) {
	p := testutil.StartOIDCProvider(t)
	a := startSSOApp(t, testutil.DatabaseURL(t, "sqlite"), p, nil, testutil.WithConfig(func(c *config.Config) { c.SudoTimeout = sudoWindow }))
	p.SetUser(testutil.OIDCUser{Subject: "u-1", Email: "ada@example.com", EmailVerified: true, Name: "Ada"})
	// Signed in long enough ago that sudo has lapsed by now.
	a.Clock.Set(time.Now().Add(-sudoWindow - time.Minute))
	c := a.NewClient(t)
	if page := ssoSignIn(t, c); page.URL.Path != "/settings/api-keys" {
		t.Fatalf("sign-in: %s", page.URL)
	}
	a.Clock.Set(time.Now())

	confirm := c.PostForm("/settings/api-keys", keyFormValues(t, c, "billing"))
	if confirm.Status != http.StatusOK || confirm.Doc.Find("form.sudo-sso").Length() != 1 || confirm.Doc.Find("input[name=_sudo_password]").Length() != 0 {
		t.Fatalf("confirm access page: %d\n%s", confirm.Status, confirm.Text("main"))
	}
	if csp := confirm.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' "+p.Issuer) {
		t.Errorf("CSP %q", csp)
	}

	// An old sign-in at the provider does not confirm.
	p.Tamper(func(claims map[string]any) { claims["auth_time"] = time.Now().Add(-time.Hour).Unix() })
	page := c.Submit(confirm, "form.sudo-sso", nil)
	p.Tamper(nil)
	if page.Status != http.StatusUnauthorized || keyCount(t, a) != 0 {
		t.Fatalf("stale auth_time: %d, %d keys\n%s", page.Status, keyCount(t, a), page.Text("main"))
	}

	logins := p.Logins()
	page = c.Submit(confirm, "form.sudo-sso", nil)
	q := p.LastAuthorizeRequest()
	if q.Get("prompt") != "login" || q.Get("max_age") != "0" || p.Logins() != logins+1 {
		t.Errorf("reauthentication request %v", q)
	}
	if page.Status != http.StatusOK || !strings.Contains(page.Text("main"), "Access confirmed") {
		t.Fatalf("after the provider: %d\n%s", page.Status, page.Text("main"))
	}
	if keyCount(t, a) != 0 {
		t.Fatal("the key was made before Continue")
	}
	var by []string
	a.DB.Model(&models.AuditEvent{}).Where("action = ?", accounts.ActionSudoConfirmed).Pluck("detail", &by)
	if !slices.Equal(by, []string{accounts.SudoBySSO}) {
		t.Fatalf("access confirmed through the provider, audited as %q", by)
	}
	page = c.Submit(page, "#confirm-access form", nil)
	if keyCount(t, a) != 1 {
		t.Fatalf("Continue: %d %s, %d keys\n%s", page.Status, page.URL, keyCount(t, a), page.Text("main"))
	}
}

func TestSSOSudoRefusesAnotherAccountOfTheProvider(t *testing.T) {
	p := testutil.StartOIDCProvider(t)
	a := startSSOApp(t, testutil.DatabaseURL(t, "sqlite"), p, nil, testutil.WithConfig(func(c *config.Config) { c.SudoTimeout = sudoWindow }))
	p.SetUser(testutil.OIDCUser{Subject: "u-1", Email: "ada@example.com", EmailVerified: true, Name: "Ada"})
	a.Clock.Set(time.Now().Add(-sudoWindow - time.Minute))
	c := a.NewClient(t)
	ssoSignIn(t, c)
	a.Clock.Set(time.Now())
	confirm := c.PostForm("/settings/api-keys", keyFormValues(t, c, "billing"))
	p.SetUser(testutil.OIDCUser{Subject: "u-2", Email: "mallory@example.com", EmailVerified: true, Name: "Mallory"})
	page := c.Submit(confirm, "form.sudo-sso", nil)
	if page.Status != http.StatusForbidden || keyCount(t, a) != 0 {
		t.Fatalf("another account confirmed: %d\n%s", page.Status, page.Text("main"))
	}
}

func TestSSOProviderDownAtStart(t *testing.T) {
	p := testutil.NewOIDCProvider(t) // not answering yet
	a := startSSOApp(t, testutil.DatabaseURL(t, "sqlite"), p, nil)
	ready := func() map[string]string {
		res, err := http.Get(a.URL("/readyz"))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body map[string]string
		if err := json.NewDecoder(res.Body).Decode(&body); err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("/readyz: %d %v", res.StatusCode, err)
		}
		return body
	}
	if body := ready(); body["oidc"] != "unreachable" || body["status"] != "degraded" {
		t.Errorf("/readyz with the provider down: %v", body)
	}
	// Password sign-in works meanwhile.
	c := signUp(t, a, "ada@example.com")
	if !signedIn(t, c) {
		t.Fatal("password sign-in broke")
	}
	if page := a.NewClient(t).Get("/login/oidc"); page.Status != http.StatusServiceUnavailable || !strings.Contains(page.Text("main"), "cannot reach Contaqt") {
		t.Errorf("/login/oidc with the provider down: %d %q", page.Status, page.Text("main"))
	}
	if !strings.Contains(a.Logs.String(), "identity provider is unreachable") {
		t.Error("not logged")
	}

	p.Start()
	deadline := time.Now().Add(5 * time.Second)
	for ready()["oidc"] != "ok" {
		if time.Now().After(deadline) {
			t.Fatal("the provider came back but /readyz still says it is unreachable")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if body := ready(); body["status"] != "ok" {
		t.Errorf("/readyz after recovery: %v", body)
	}
	p.SetUser(testutil.OIDCUser{Subject: "u-2", Email: "grace@example.com", EmailVerified: true, Name: "Grace"})
	if page := ssoSignIn(t, a.NewClient(t)); page.URL.Path != "/settings/api-keys" {
		t.Errorf("sign-in after recovery ended at %s", page.URL)
	}
}

func TestSSOLogoutOffersTheProvidersLogout(t *testing.T) {
	p := testutil.StartOIDCProvider(t)
	a := startSSOApp(t, testutil.DatabaseURL(t, "sqlite"), p, nil)
	p.SetUser(testutil.OIDCUser{Subject: "u-1", Email: "ada@example.com", EmailVerified: true, Name: "Ada"})
	c := a.NewClient(t)
	ssoSignIn(t, c)
	sec := c.Get("/settings/security")
	if !strings.Contains(sec.Text("#sso"), "only way you sign in") || sec.Doc.Find("form[action='/settings/security/sso/unlink']").Length() != 0 {
		t.Errorf("a user with no password nor passkey may unlink: %q", sec.Text("#sso"))
	}
	// Posting the unlink anyway (as a stale page would) keeps the link.
	page := c.PostForm("/settings/security/sso/unlink", url.Values{"_csrf": {csrfOf(sec)}})
	if n := countRows(t, a, &models.UserIdentity{}); n != 1 || !strings.Contains(page.Text(".flash"), "only way you sign in") {
		t.Fatalf("unlinking the only way in: %d identities, %q", n, page.Text(".flash"))
	}
	page = c.Submit(c.Get("/settings/security"), "form[action='/logout']", nil)
	href, _ := page.Doc.Find(".flash a").Attr("href")
	u, err := url.Parse(href)
	if err != nil || !strings.HasPrefix(href, p.Issuer+"/end_session") || u.Query().Get("id_token_hint") == "" ||
		u.Query().Get("post_logout_redirect_uri") != a.Server.URL+"/login" {
		t.Fatalf("logout offers %q", href)
	}
	if signedIn(t, c) {
		t.Fatal("still signed in")
	}
	// The provider accepts it and sends the browser back.
	req, _ := http.NewRequest(http.MethodGet, href, nil)
	if back := c.Do(req); back.URL.String() != a.Server.URL+"/login" {
		t.Errorf("the provider's logout ended at %s", back.URL)
	}
}
