package handlers_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"keysmith/models"
	"keysmith/testutil"
)

// registerApp fills the registration form like a person would and returns
// the page it answers with.
func registerApp(t *testing.T, c *testutil.Client, fields map[string]string) *testutil.Page {
	t.Helper()
	form := c.Get("/settings/oauth-apps/new")
	if form.Status != http.StatusOK {
		t.Fatalf("registration form: %d", form.Status)
	}
	return registerFrom(t, c, form, fields)
}

// registerFrom submits the registration form on page with every catalog
// scope unchecked but those in fields["scopes"] (space-separated).
func registerFrom(t *testing.T, c *testutil.Client, page *testutil.Page, fields map[string]string) *testutil.Page {
	t.Helper()
	values := map[string]string{"name": "Acme Sync", "redirect_uris": "https://acme.example/callback", "type": "confidential"}
	for k, v := range fields {
		values[k] = v
	}
	form := page.Doc.Find("form.oauth-app-form")
	if form.Length() == 0 {
		t.Fatalf("no registration form on %s:\n%s", page.URL, page.Body)
	}
	v := map[string][]string{"_csrf": {csrfOf(page)}}
	v["nonce"] = []string{form.Find("input[name=nonce]").AttrOr("value", "")}
	for k, val := range values {
		if k == "scopes" {
			v[k] = strings.Fields(val)
		} else {
			v[k] = []string{val}
		}
	}
	return c.PostForm("/settings/oauth-apps", v)
}

func oauthAppByName(t *testing.T, app *testutil.App, name string) models.OAuthClient {
	t.Helper()
	var a models.OAuthClient
	if err := app.DB.Where("name = ?", name).Order("id DESC").Take(&a).Error; err != nil {
		t.Fatalf("app %q: %v", name, err)
	}
	return a
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func valueOf(p *testutil.Page, sel string) string {
	return p.Doc.Find(sel).AttrOr("value", "")
}

func TestOAuthAppRegisterShowsTheSecretOnce(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL)
		c := signUp(t, app, "ada@example.com")

		list := c.Get("/settings/oauth-apps")
		if href := list.Doc.Find(".empty a.btn").AttrOr("href", ""); href != "/settings/oauth-apps/new" || !strings.Contains(list.Text(".empty"), "act for them") {
			t.Fatalf("empty list: %q, button %q", list.Text(".empty"), href)
		}
		if list.Doc.Find(`nav.sidenav a[href="/settings/oauth-apps"][aria-current=page]`).Length() != 1 || list.Doc.Find(`nav.sidenav a[href="/settings/authorized-apps"]`).Length() != 1 {
			t.Error("the settings navigation lacks OAuth apps or Authorized apps")
		}

		// Invalid input: every message, and everything typed, comes back.
		form := c.Get("/settings/oauth-apps/new")
		bad := registerFrom(t, c, form, map[string]string{
			"name": " ", "logo_url": "ftp://acme.example/logo.png", "type": "public",
			"redirect_uris": "https://acme.example/callback\nhttp://acme.example/insecure",
		})
		if bad.Status != http.StatusUnprocessableEntity {
			t.Fatalf("invalid form: %d", bad.Status)
		}
		for sel, want := range map[string]string{
			"#name-error": "name", "#logo_url-error": "https://", "#redirect_uris-error": "http://acme.example/insecure", ".scope-groups .error": "at least one scope",
		} {
			if !strings.Contains(bad.Text(sel), want) {
				t.Errorf("%s says %q, want %q", sel, bad.Text(sel), want)
			}
		}
		if got := bad.Text("#redirect_uris"); got != "https://acme.example/callback\nhttp://acme.example/insecure" {
			t.Errorf("redirect URIs lost: %q", got)
		}
		if valueOf(bad, "#logo_url") != "ftp://acme.example/logo.png" || bad.Doc.Find(`input[name=type][value=public][checked]`).Length() != 1 {
			t.Error("logo URL or type lost")
		}
		bad = registerFrom(t, c, bad, map[string]string{"name": "Acme Sync", "scopes": "files:read keys:write", "redirect_uris": "https://acme.example/cb#frag"})
		if bad.Status != http.StatusUnprocessableEntity || bad.Doc.Find(`input[name=scopes][value="files:read"][checked]`).Length() != 1 || valueOf(bad, "#name") != "Acme Sync" {
			t.Fatalf("second invalid form: %d, scopes or name lost", bad.Status)
		}

		if p := registerFrom(t, c, bad, map[string]string{"name": "Acme Sync", "type": "", "scopes": "files:read"}); p.Status != http.StatusUnprocessableEntity || !strings.Contains(p.Text("fieldset.radios .error"), "keep a secret") {
			t.Fatalf("no type: %d %q", p.Status, p.Text("fieldset.radios .error"))
		}
		page := registerFrom(t, c, bad, map[string]string{
			"name": "Acme Sync", "type": "confidential", "scopes": "files:read keys:read",
			"redirect_uris": "https://acme.example/callback\n\nhttp://127.0.0.1:8765/callback",
		})
		if page.Status != http.StatusCreated || page.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("secret page: %d, Cache-Control %q\n%s", page.Status, page.Header.Get("Cache-Control"), page.Text("main"))
		}
		clientID, secret := valueOf(page, "#client_id"), valueOf(page, "#secret")
		if !strings.HasPrefix(clientID, "ksapp_") || !strings.HasPrefix(secret, "ksapp_secret_") || !strings.Contains(page.Text(".flash.warning"), "You will not see it again") {
			t.Fatalf("client_id %q, secret %q, warning %q", clientID, secret, page.Text(".flash.warning"))
		}
		if page.Doc.Find(`button[data-copy="#secret"]`).Length() != 1 || page.Doc.Find(`button[data-copy="#client_id"]`).Length() != 1 || page.Doc.Find(`.secret-card[hx-history="false"], [hx-history="false"] .secret-card`).Length() == 0 {
			t.Error("no copy buttons, or the secret may enter htmx's history cache")
		}

		// Stored: the secret's hash, never the secret.
		a := oauthAppByName(t, app, "Acme Sync")
		if a.ClientID != clientID || a.SecretHash != sha256Hex(secret) || a.Public || a.Scopes != "files:read keys:read" ||
			a.RedirectURIs != "https://acme.example/callback\nhttp://127.0.0.1:8765/callback" {
			t.Fatalf("stored %+v", a)
		}
		if strings.Contains(fmt.Sprintf("%+v", a), secret) {
			t.Fatal("the secret is stored")
		}

		// Reloading the secret page re-posts its form: no second app, no secret.
		again := registerFrom(t, c, bad, map[string]string{
			"name": "Acme Sync", "type": "confidential", "scopes": "files:read keys:read",
			"redirect_uris": "https://acme.example/callback\n\nhttp://127.0.0.1:8765/callback",
		})
		if again.URL.Path != "/settings/oauth-apps" || !strings.Contains(again.Text(".flash"), "already registered") || again.Doc.Find("#secret").Length() != 0 {
			t.Fatalf("re-posting a used form: %s %q", again.URL, again.Text(".flash"))
		}
		var n int64
		app.DB.Model(&models.OAuthClient{}).Count(&n)
		if n != 1 {
			t.Fatalf("%d apps, want 1", n)
		}

		list = c.Get("/settings/oauth-apps")
		row := strings.Join(strings.Fields(list.Text("table.oauth-apps tbody tr")), " ")
		for _, want := range []string{"Acme Sync", clientID, "Confidential", "files:read keys:read", "0 users", "Never", "Active"} {
			if !strings.Contains(row, want) {
				t.Errorf("row lacks %q: %s", want, row)
			}
		}
		details := c.Get(fmt.Sprintf("/settings/oauth-apps/%d", a.ID))
		if strings.Contains(list.Body, secret) || strings.Contains(details.Body, secret) {
			t.Fatal("the secret is shown again")
		}
		if !strings.Contains(details.Text("dl.facts"), "http://127.0.0.1:8765/callback") || details.Doc.Find(`form[action$="/rotate-secret"]`).Length() != 1 {
			t.Errorf("app page: %s", details.Text("main"))
		}

		// A public app gets no secret, and nothing to rotate.
		pub := registerApp(t, c, map[string]string{"name": "Acme CLI", "type": "public", "scopes": "files:read", "redirect_uris": "http://127.0.0.1/callback"})
		if pub.Status != http.StatusCreated || pub.Doc.Find("#secret").Length() != 0 || !strings.HasPrefix(valueOf(pub, "#client_id"), "ksapp_") {
			t.Fatalf("public app page: %d\n%s", pub.Status, pub.Text("main"))
		}
		p := oauthAppByName(t, app, "Acme CLI")
		if !p.Public || p.SecretHash != "" {
			t.Fatalf("public app stored %+v", p)
		}
		if c.Get(fmt.Sprintf("/settings/oauth-apps/%d", p.ID)).Doc.Find(`form[action$="/rotate-secret"]`).Length() != 0 {
			t.Error("a public app offers to rotate its secret")
		}
	})
}

func TestOAuthAppRotateAndRevoke(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL)
		c := signUp(t, app, "ada@example.com")
		old := valueOf(registerApp(t, c, map[string]string{"scopes": "files:read"}), "#secret")
		a := oauthAppByName(t, app, "Acme Sync")
		page := c.Get(fmt.Sprintf("/settings/oauth-apps/%d", a.ID))

		rotated := c.Submit(page, `form[action$="/rotate-secret"]`, nil)
		secret := valueOf(rotated, "#secret")
		if rotated.Status != http.StatusCreated || !strings.HasPrefix(secret, "ksapp_secret_") || secret == old || rotated.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("rotate: %d %q\n%s", rotated.Status, secret, rotated.Text("main"))
		}
		if h := oauthAppByName(t, app, "Acme Sync").SecretHash; h != sha256Hex(secret) || h == sha256Hex(old) {
			t.Fatal("the stored hash is not the new secret's")
		}
		// A reload re-posts the rotate form: no third secret.
		again := c.Submit(page, `form[action$="/rotate-secret"]`, nil)
		if again.Doc.Find("#secret").Length() != 0 || !strings.Contains(again.Text(".flash"), "already rotated") || oauthAppByName(t, app, "Acme Sync").SecretHash != sha256Hex(secret) {
			t.Fatalf("re-posted rotation: %s %q", again.URL, again.Text(".flash"))
		}

		revoked := c.Submit(page, `form[action$="/revoke"]`, nil)
		if revoked.URL.Path != "/settings/oauth-apps" || !strings.Contains(revoked.Text(".flash.success"), "Revoked Acme Sync") {
			t.Fatalf("revoke: %s %q", revoked.URL, revoked.Text(".flash"))
		}
		if oauthAppByName(t, app, "Acme Sync").RevokedAt == nil || !strings.Contains(revoked.Text("table.oauth-apps"), "Revoked") {
			t.Fatal("not revoked")
		}
		page = c.Get(fmt.Sprintf("/settings/oauth-apps/%d", a.ID))
		if page.Doc.Find(`form[action$="/rotate-secret"], form[action$="/revoke"]`).Length() != 0 || !strings.Contains(page.Text(".flash.info"), "revoked") {
			t.Fatalf("a revoked app still offers actions:\n%s", page.Text("main"))
		}
		token := csrfOf(page)
		refused := c.PostForm(fmt.Sprintf("/settings/oauth-apps/%d/rotate-secret", a.ID), map[string][]string{"_csrf": {token}})
		if refused.Doc.Find("#secret").Length() != 0 || !strings.Contains(refused.Text(".flash.error"), "revoked") {
			t.Fatalf("rotating a revoked app: %d %q", refused.Status, refused.Text("main"))
		}
		if p := c.Get("/settings/oauth-apps/999999"); p.Status != http.StatusNotFound {
			t.Errorf("a missing app: %d", p.Status)
		}
	})
}

func TestOAuthAppNonAdminsCannotManage(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL)
		owner := signUp(t, app, "ada@example.com")
		registerApp(t, owner, map[string]string{"scopes": "files:read"})
		a := oauthAppByName(t, app, "Acme Sync")

		for _, role := range []models.Role{models.RoleEditor, models.RoleViewer} {
			c := addMember(t, app, "ada@example.com", string(role)+"@example.com", role)
			list := c.Get("/settings/oauth-apps")
			if list.Status != http.StatusOK || !strings.Contains(list.Text("table.oauth-apps"), "Acme Sync") {
				t.Fatalf("%s: list %d", role, list.Status)
			}
			if list.Doc.Find(`a[href="/settings/oauth-apps/new"]`).Length() != 0 || !strings.Contains(list.Text(".flash.info"), "owners and admins") {
				t.Errorf("%s is offered to register an app, or not told why not", role)
			}
			if p := c.Get("/settings/oauth-apps/new"); p.Status != http.StatusForbidden {
				t.Errorf("%s: registration form %d", role, p.Status)
			}
			page := c.Get(fmt.Sprintf("/settings/oauth-apps/%d", a.ID))
			if page.Status != http.StatusOK || page.Doc.Find(`form[action$="/rotate-secret"], form[action$="/revoke"]`).Length() != 0 {
				t.Errorf("%s: app page %d offers actions", role, page.Status)
			}
			token := csrfOf(page)
			for path, fields := range map[string]map[string][]string{
				"/settings/oauth-apps": {"name": {"Mine"}, "redirect_uris": {"https://x.example/cb"}, "type": {"confidential"}, "scopes": {"files:read"}},
				fmt.Sprintf("/settings/oauth-apps/%d/rotate-secret", a.ID): {},
				fmt.Sprintf("/settings/oauth-apps/%d/revoke", a.ID):        {},
			} {
				fields["_csrf"] = []string{token}
				if p := c.PostForm(path, fields); p.Status != http.StatusForbidden || p.Doc.Find("#secret").Length() != 0 {
					t.Errorf("%s: POST %s answered %d", role, path, p.Status)
				}
			}
		}
		after := oauthAppByName(t, app, "Acme Sync")
		var n int64
		app.DB.Model(&models.OAuthClient{}).Count(&n)
		if n != 1 || after.SecretHash != a.SecretHash || after.RevokedAt != nil {
			t.Fatalf("a non-admin changed the apps: %d apps, %+v", n, after)
		}
	})
}

func TestOAuthAppAuthorizedAppsListsAndRevokes(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL)
		owner := signUp(t, app, "ada@example.com")
		registerApp(t, owner, map[string]string{"scopes": "files:read files:write keys:read"})
		client := oauthAppByName(t, app, "Acme Sync")
		bob := signUp(t, app, "bob@example.com")

		empty := bob.Get("/settings/authorized-apps")
		if !strings.Contains(empty.Text(".empty"), "No app can act for you. When you allow an app on a consent screen, it appears here.") {
			t.Fatalf("empty state: %q", empty.Text("main"))
		}

		// Bob allows the app in his own workspace, on the consent screen.
		if q := allowOnConsentScreen(t, app, bob, client.ClientID, "https://acme.example/callback", "files:read keys:read"); q.Get("code") == "" {
			t.Fatalf("the consent screen sent Bob back with %v", q)
		}
		var user models.User
		app.DB.Where("email = ?", "bob@example.com").Take(&user)
		ms, err := app.Accounts.Memberships(t.Context(), user.ID)
		if err != nil {
			t.Fatal(err)
		}
		live, err := app.OAuth.LiveApp(t.Context(), client.ClientID)
		if err != nil {
			t.Fatal(err)
		}

		page := bob.Get("/settings/authorized-apps")
		row := strings.Join(strings.Fields(page.Text("table.authorized-apps tbody tr")), " ")
		for _, want := range []string{"Acme Sync", "registered by " + live.Workspace.Name, ms[0].Workspace.Name, "files:read", "keys:read", "just now", "Never"} {
			if !strings.Contains(row, want) {
				t.Errorf("row lacks %q: %s", want, row)
			}
		}
		if strings.Contains(row, "files:write") {
			t.Errorf("row shows a scope Bob did not grant: %s", row)
		}
		if !strings.Contains(owner.Get("/settings/oauth-apps").Text("table.oauth-apps"), "1 user") {
			t.Error("the app list does not count Bob")
		}
		var grant models.OAuthGrant
		app.DB.Where("user_id = ?", user.ID).Take(&grant)

		// Someone else cannot revoke Bob's consent.
		other := owner.PostForm(fmt.Sprintf("/settings/authorized-apps/%d/revoke", grant.ID), map[string][]string{"_csrf": {csrfOf(owner.Get("/settings/authorized-apps"))}})
		if app.DB.First(&grant, grant.ID); grant.RevokedAt != nil || other.Text(".flash.success") != "" {
			t.Fatalf("another user revoked Bob's consent: %q", other.Text(".flash"))
		}

		done := bob.Submit(page, fmt.Sprintf("#grant-%d form", grant.ID), nil)
		if done.URL.Path != "/settings/authorized-apps" || !strings.Contains(done.Text(".flash.success"), "Acme Sync can no longer act for you in "+ms[0].Workspace.Name) {
			t.Fatalf("revoke: %s %q", done.URL, done.Text(".flash"))
		}
		if done.Doc.Find("table.authorized-apps").Length() != 0 || !strings.Contains(done.Text(".empty"), "No app can act for you") {
			t.Fatalf("the app is still listed:\n%s", done.Text("main"))
		}
		if app.DB.First(&grant, grant.ID); grant.RevokedAt == nil {
			t.Fatal("the grant is not revoked")
		}
		if !strings.Contains(owner.Get("/settings/oauth-apps").Text("table.oauth-apps"), "0 users") {
			t.Error("the app list still counts Bob")
		}
	})
}

// allowOnConsentScreen sends c's user through the authorization endpoint
// as an app would (PKCE S256, a state), presses Allow on the consent
// screen, and returns the query the app's redirect URI receives.
func allowOnConsentScreen(t *testing.T, app *testutil.App, c *testutil.Client, clientID, redirectURI, scope string) url.Values {
	t.Helper()
	sum := sha256.Sum256([]byte("a verifier of at least forty-three characters, as PKCE wants"))
	state := "state-" + clientID
	consent := c.Get("/oauth/authorize?" + url.Values{
		"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirectURI}, "scope": {scope}, "state": {state},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}.Encode())
	form := consent.Doc.Find("form:has(button[name=decision][value=allow])")
	if consent.Status != http.StatusOK || form.Length() == 0 {
		t.Fatalf("consent screen: %d\n%s", consent.Status, consent.Text("main"))
	}
	fields := url.Values{"_csrf": {csrfOf(consent)}, "decision": {"allow"}}
	fields.Set("workspace", form.Find("select[name=workspace] option[selected]").AttrOr("value", form.Find("select[name=workspace] option").AttrOr("value", "")))
	req, err := http.NewRequest(http.MethodPost, app.URL(form.AttrOr("action", "")), strings.NewReader(fields.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	noFollow := *c.HTTP // the same cookies; the app's redirect URI is not served here
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	res, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	to, err := url.Parse(res.Header.Get("Location"))
	if err != nil || res.StatusCode/100 != 3 || !strings.HasPrefix(to.String(), redirectURI+"?") || to.Query().Get("state") != state {
		t.Fatalf("Allow answered %d, Location %q", res.StatusCode, res.Header.Get("Location"))
	}
	return to.Query()
}
