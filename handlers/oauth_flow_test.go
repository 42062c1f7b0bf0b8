package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"keysmith/models"
	"keysmith/oauth"
	"keysmith/testutil"
)

const appRedirect = "https://acme.example/callback"

// oauthFixture is a workspace owner with a registered app, and a member
// who will authorize it.
type oauthFixture struct {
	*apiFixture
	reg    oauth.Registered
	member *testutil.Client
	conf   *oauth2.Config
}

func newOAuthFixture(t *testing.T, dbURL string, role models.Role, public bool) *oauthFixture {
	t.Helper()
	f := &oauthFixture{apiFixture: newAPIFixture(t, dbURL)}
	reg, err := f.app.OAuth.Register(t.Context(), f.ws, f.actor, oauth.AppInput{
		Name: "Acme CI", RedirectURIs: []string{appRedirect}, Public: public,
		Scopes: []string{"keys:read", "keys:write", "files:read"},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.reg = reg
	f.member = addMember(t, f.apiFixture.app, "owner@example.com", "dev@example.com", role)
	// Like a browser, follow redirects within Keysmith but stop at the app.
	f.member.HTTP.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		if req.URL.Host == "acme.example" {
			return http.ErrUseLastResponse
		}
		return nil
	}
	f.conf = &oauth2.Config{
		ClientID: reg.App.ClientID, ClientSecret: reg.Secret, RedirectURL: appRedirect,
		Scopes:   []string{"keys:read", "keys:write"},
		Endpoint: oauth2.Endpoint{AuthURL: f.apiFixture.app.URL("/oauth/authorize"), TokenURL: f.apiFixture.app.URL("/oauth/token")},
	}
	return f
}

// authorize sends the member through the consent screen with decision and
// returns where Keysmith sent them back to.
func (f *oauthFixture) authorize(t *testing.T, authURL, decision string) *url.URL {
	t.Helper()
	u, _ := url.Parse(authURL)
	page := f.member.Get(u.RequestURI())
	if page.Status != http.StatusOK {
		t.Fatalf("consent screen: %d\n%s", page.Status, page.Body)
	}
	if !strings.Contains(page.Body, "Acme CI") || !strings.Contains(page.Body, "Read keys") {
		t.Fatalf("the consent screen does not name the app and its scopes:\n%s", page.Body)
	}
	form := "form:not(.consent-deny)"
	fields := map[string]string{"workspace": fmt.Sprint(f.ws), "decision": "allow"}
	if decision == "deny" {
		form, fields = "form.consent-deny", map[string]string{"decision": "deny"}
	}
	res := f.member.Submit(page, form, fields)
	if res.Status != http.StatusSeeOther && res.Status != http.StatusFound {
		t.Fatalf("decision %s: %d, want a redirect\n%s", decision, res.Status, res.Body)
	}
	back, err := url.Parse(res.Header.Get("Location"))
	if err != nil || back.Host != "acme.example" {
		t.Fatalf("sent to %q", res.Header.Get("Location"))
	}
	return back
}

// code runs the authorization as far as the code.
func (f *oauthFixture) code(t *testing.T, verifier string) string {
	t.Helper()
	back := f.authorize(t, f.conf.AuthCodeURL("state-0123456789", oauth2.S256ChallengeOption(verifier)), "allow")
	if back.Query().Get("state") != "state-0123456789" || back.Query().Get("code") == "" {
		t.Fatalf("redirect back: %s", back)
	}
	return back.Query().Get("code")
}

func bearerStatus(t *testing.T, app *testutil.App, path, token string) (int, map[string]any) {
	t.Helper()
	r := rawCall(t, app, http.MethodGet, path, token, "", "")
	return r.Status, r.Body
}

// scopesOf reads the scopes GET /v1/auth/test reports of an app's token.
func scopesOf(body map[string]any) string {
	a, _ := body["app"].(map[string]any)
	return fmt.Sprint(a["scopes"])
}

func oauthErrorCode(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}

func TestOAuthCodeFlowEndToEnd(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newOAuthFixture(t, dbURL, models.RoleAdmin, false)
		ctx := t.Context()
		verifier := oauth2.GenerateVerifier()
		tok, err := f.conf.Exchange(ctx, f.code(t, verifier), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		if tok.RefreshToken == "" || tok.Expiry.IsZero() {
			t.Fatalf("token answer: %+v", tok)
		}
		status, body := bearerStatus(t, f.apiFixture.app, "/v1/auth/test", tok.AccessToken)
		if status != http.StatusOK || body["token_type"] != "oauth_access_token" {
			t.Fatalf("auth/test with the access token: %d %v", status, body)
		}
		if status, _ := bearerStatus(t, f.apiFixture.app, "/v1/keys", tok.AccessToken); status != http.StatusOK {
			t.Fatalf("GET /v1/keys with keys:read: %d", status)
		}

		// Refresh rotates: the new refresh token works once, the old one
		// is a replay that ends the whole family.
		old := tok.RefreshToken
		tok.Expiry = time.Now().Add(-time.Hour)
		fresh, err := f.conf.TokenSource(ctx, tok).Token()
		if err != nil {
			t.Fatal(err)
		}
		if fresh.RefreshToken == old || fresh.AccessToken == tok.AccessToken {
			t.Fatal("refresh did not rotate")
		}
		if status, _ := bearerStatus(t, f.apiFixture.app, "/v1/auth/test", fresh.AccessToken); status != http.StatusOK {
			t.Fatalf("refreshed access token: %d", status)
		}
		_, err = f.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: old}).Token()
		if oauthErrorCode(err) != "invalid_grant" {
			t.Fatalf("replayed refresh token: %v", err)
		}
		if _, err := f.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: fresh.RefreshToken}).Token(); oauthErrorCode(err) != "invalid_grant" {
			t.Fatalf("after a replay, the family's newest refresh token still works: %v", err)
		}
		status, body = bearerStatus(t, f.apiFixture.app, "/v1/auth/test", fresh.AccessToken)
		if status != http.StatusUnauthorized {
			t.Fatalf("after a replay, the family's access token: %d %v", status, body)
		}
		var n int64
		f.apiFixture.app.DB.Model(&models.AuditEvent{}).Where("action = ?", oauth.ActionReuseDetected).Count(&n)
		if n == 0 {
			t.Fatal("the replay is not in the audit log")
		}
		for _, action := range []string{oauth.ActionAppCreated, oauth.ActionConsented, oauth.ActionTokenIssued} {
			f.apiFixture.app.DB.Model(&models.AuditEvent{}).Where("action = ?", action).Count(&n)
			if n == 0 {
				t.Fatalf("no %s in the audit log", action)
			}
		}
	})
}

func TestOAuthRefusalsRFC9700AsksFor(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newOAuthFixture(t, dbURL, models.RoleAdmin, false)
		ctx := t.Context()
		verifier := oauth2.GenerateVerifier()

		t.Run("wrong verifier", func(t *testing.T) {
			code := f.code(t, verifier)
			if _, err := f.conf.Exchange(ctx, code, oauth2.VerifierOption(oauth2.GenerateVerifier())); oauthErrorCode(err) != "invalid_grant" {
				t.Fatalf("wrong verifier: %v", err)
			}
		})
		t.Run("code reuse revokes what it issued", func(t *testing.T) {
			code := f.code(t, verifier)
			tok, err := f.conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.conf.Exchange(ctx, code, oauth2.VerifierOption(verifier)); oauthErrorCode(err) != "invalid_grant" {
				t.Fatalf("second use of a code: %v", err)
			}
			if status, _ := bearerStatus(t, f.apiFixture.app, "/v1/auth/test", tok.AccessToken); status != http.StatusUnauthorized {
				t.Fatalf("the first use's access token after a reuse: %d", status)
			}
		})
		t.Run("PKCE missing or plain", func(t *testing.T) {
			for name, opts := range map[string][]oauth2.AuthCodeOption{
				"missing": nil,
				"plain":   {oauth2.SetAuthURLParam("code_challenge", verifier), oauth2.SetAuthURLParam("code_challenge_method", "plain")},
			} {
				u, _ := url.Parse(f.conf.AuthCodeURL("state-0123456789", opts...))
				res := f.member.Get(u.RequestURI())
				back, _ := url.Parse(res.Header.Get("Location"))
				if back == nil || back.Query().Get("error") != "invalid_request" || back.Query().Get("state") != "state-0123456789" {
					t.Fatalf("PKCE %s: %d %q", name, res.Status, res.Header.Get("Location"))
				}
			}
		})
		t.Run("a redirect URI not registered never redirects", func(t *testing.T) {
			for _, target := range []string{"https://evil.example/callback", appRedirect + "/", appRedirect + "?x=1", "https://acme.example/CALLBACK"} {
				conf := *f.conf
				conf.RedirectURL = target
				u, _ := url.Parse(conf.AuthCodeURL("state-0123456789", oauth2.S256ChallengeOption(verifier)))
				res := f.member.Get(u.RequestURI())
				if res.Status != http.StatusBadRequest || res.Header.Get("Location") != "" {
					t.Fatalf("redirect_uri %s: %d Location %q", target, res.Status, res.Header.Get("Location"))
				}
			}
			conf := *f.conf
			conf.ClientID = "ksapp_unknown"
			u, _ := url.Parse(conf.AuthCodeURL("state-0123456789", oauth2.S256ChallengeOption(verifier)))
			if res := f.member.Get(u.RequestURI()); res.Status != http.StatusBadRequest || !strings.Contains(res.Body, "No app with this client_id") {
				t.Fatalf("unknown client: %d\n%s", res.Status, res.Body)
			}
		})
		t.Run("deny", func(t *testing.T) {
			back := f.authorize(t, f.conf.AuthCodeURL("state-deny-0123", oauth2.S256ChallengeOption(verifier)), "deny")
			if back.Query().Get("error") != "access_denied" || back.Query().Get("state") != "state-deny-0123" || back.Query().Get("code") != "" {
				t.Fatalf("deny sent back %s", back)
			}
		})
		t.Run("a logged-out user logs in and comes back", func(t *testing.T) {
			c := f.apiFixture.app.NewClient(t)
			u, _ := url.Parse(f.conf.AuthCodeURL("state-0123456789", oauth2.S256ChallengeOption(verifier)))
			login := c.Get(u.RequestURI())
			if login.URL.Path != "/login" {
				t.Fatalf("logged out: %s", login.URL)
			}
			page := c.Submit(login, "form[action='/login']", map[string]string{"email": "dev@example.com", "password": password})
			if page.URL.Path != "/oauth/authorize" || !strings.Contains(page.Body, "Allow Acme CI") {
				t.Fatalf("after login: %s\n%s", page.URL, page.Body)
			}
		})
	})
}

func TestOAuthScopeCeilingByRole(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newOAuthFixture(t, dbURL, models.RoleEditor, false)
		verifier := oauth2.GenerateVerifier()
		tok, err := f.conf.Exchange(t.Context(), f.code(t, verifier), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		if scope, _ := tok.Extra("scope").(string); scope != "keys:read" {
			t.Fatalf("an editor granted %q; editors cannot hold keys:write", scope)
		}
		r := rawCall(t, f.apiFixture.app, http.MethodPost, "/v1/keys", tok.AccessToken, "application/json", `{"name":"x","permission":"read"}`)
		if r.Status != http.StatusForbidden {
			t.Fatalf("create a key without keys:write: %d %s", r.Status, r.Raw)
		}

		// Promoted, the member grants keys:write too; demoted to viewer,
		// the tokens already issued lose it at once (after the principal
		// cache's second), and leaving the workspace ends them.
		var dev models.User
		app := f.apiFixture.app
		app.DB.Where("email = ?", "dev@example.com").Take(&dev)
		setRole := func(role models.Role) {
			app.DB.Model(&models.Membership{}).Where("user_id = ? AND workspace_id = ?", dev.ID, f.ws).Update("role", role)
			app.Clock.Advance(2 * time.Second)
		}
		setRole(models.RoleAdmin)
		tok, err = f.conf.Exchange(t.Context(), f.code(t, verifier), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		if status, body := bearerStatus(t, app, "/v1/auth/test", tok.AccessToken); status != http.StatusOK || scopesOf(body) != "[keys:read keys:write]" {
			t.Fatalf("an admin's token: %d %v", status, body)
		}
		setRole(models.RoleViewer)
		if status, body := bearerStatus(t, app, "/v1/auth/test", tok.AccessToken); status != http.StatusOK || scopesOf(body) != "[keys:read]" {
			t.Fatalf("the token after a demotion to viewer: %d %v", status, body)
		}
		app.DB.Where("user_id = ? AND workspace_id = ?", dev.ID, f.ws).Delete(&models.Membership{})
		app.Clock.Advance(2 * time.Second)
		if status, _ := bearerStatus(t, app, "/v1/auth/test", tok.AccessToken); status != http.StatusUnauthorized {
			t.Fatalf("the token after its user left the workspace: %d", status)
		}
		if _, err := f.conf.TokenSource(t.Context(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); oauthErrorCode(err) != "invalid_grant" {
			t.Fatalf("a refresh after its user left the workspace: %v", err)
		}
	})
}

func TestOAuthClientCredentialsRevokeAndIntrospect(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newOAuthFixture(t, dbURL, models.RoleAdmin, false)
		ctx := t.Context()
		cc := clientcredentials.Config{ClientID: f.conf.ClientID, ClientSecret: f.conf.ClientSecret, TokenURL: f.conf.Endpoint.TokenURL}
		tok, err := cc.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		status, body := bearerStatus(t, f.apiFixture.app, "/v1/auth/test", tok.AccessToken)
		if status != http.StatusOK || scopesOf(body) != "[files:read keys:read keys:write]" {
			t.Fatalf("client credentials token: %d %v", status, body)
		}
		narrow := clientcredentials.Config{ClientID: f.conf.ClientID, ClientSecret: f.conf.ClientSecret, TokenURL: f.conf.Endpoint.TokenURL, Scopes: []string{"files:read"}}
		small, err := narrow.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if status, body := bearerStatus(t, f.apiFixture.app, "/v1/auth/test", small.AccessToken); status != http.StatusOK || scopesOf(body) != "[files:read]" {
			t.Fatalf("client credentials asking for files:read: %d %v", status, body)
		}
		wide := clientcredentials.Config{ClientID: f.conf.ClientID, ClientSecret: f.conf.ClientSecret, TokenURL: f.conf.Endpoint.TokenURL, Scopes: []string{"members:write"}}
		if _, err := wide.Token(ctx); oauthErrorCode(err) != "invalid_scope" {
			t.Fatalf("client credentials asking beyond the app's scopes: %v", err)
		}
		verified := call(t, f.apiFixture.app, http.MethodPost, "/v1/keys/verify", serviceToken, map[string]any{"key": tok.AccessToken, "scopes": []string{"keys:read"}})
		if verified.Body["valid"] != true || verified.Body["token_type"] != "oauth_access_token" || verified.Body["client_id"] != f.conf.ClientID || verified.Body["key_id"] != nil {
			t.Fatalf("verify an app's token: %v", verified.Body)
		}
		bad := clientcredentials.Config{ClientID: f.conf.ClientID, ClientSecret: "ksapp_secret_wrong", TokenURL: f.conf.Endpoint.TokenURL}
		if _, err := bad.Token(ctx); oauthErrorCode(err) != "invalid_client" {
			t.Fatalf("a wrong secret: %v", err)
		}

		verifier := oauth2.GenerateVerifier()
		user, err := f.conf.Exchange(ctx, f.code(t, verifier), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		introspect := func(token string) map[string]any {
			req, _ := http.NewRequest(http.MethodPost, f.apiFixture.app.URL("/oauth/introspect"), strings.NewReader(url.Values{"token": {token}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Authorization", "Bearer "+serviceToken)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var out map[string]any
			json.NewDecoder(res.Body).Decode(&out)
			return out
		}
		if got := introspect(user.AccessToken); got["active"] != true || got["client_id"] != f.conf.ClientID || got["token_type"] != "oauth_access_token" {
			t.Fatalf("introspect access token: %v", got)
		}
		if got := introspect(user.RefreshToken); got["active"] != true || got["token_type"] != "refresh_token" {
			t.Fatalf("introspect refresh token: %v", got)
		}
		if got := introspect("nonsense"); got["active"] != false {
			t.Fatalf("introspect nonsense: %v", got)
		}

		form := url.Values{"token": {user.RefreshToken}, "token_type_hint": {"refresh_token"}}
		req, _ := http.NewRequest(http.MethodPost, f.apiFixture.app.URL("/oauth/revoke"), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(f.conf.ClientID), url.QueryEscape(f.conf.ClientSecret))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("revoke: %d", res.StatusCode)
		}
		if status, _ := bearerStatus(t, f.apiFixture.app, "/v1/auth/test", user.AccessToken); status != http.StatusUnauthorized {
			t.Fatalf("access token after revoking its refresh token: %d", status)
		}
		if got := introspect(user.AccessToken); got["active"] != false {
			t.Fatalf("introspect after revoke: %v", got)
		}
		if _, err := f.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: user.RefreshToken}).Token(); oauthErrorCode(err) != "invalid_grant" {
			t.Fatalf("refresh after revoke: %v", err)
		}
	})
}

func TestOAuthPublicClientAndRevokingTheConsent(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newOAuthFixture(t, dbURL, models.RoleAdmin, true)
		ctx := context.Background()
		if f.reg.Secret != "" || f.reg.App.SecretHash != "" {
			t.Fatal("a public app got a secret")
		}
		verifier := oauth2.GenerateVerifier()
		code := f.code(t, verifier)
		if _, err := f.conf.Exchange(ctx, code); err == nil {
			t.Fatal("a public app exchanged a code without its PKCE verifier")
		}
		code = f.code(t, verifier)
		tok, err := f.conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		if status, _ := bearerStatus(t, f.apiFixture.app, "/v1/auth/test", tok.AccessToken); status != http.StatusOK {
			t.Fatalf("public app's token: %d", status)
		}
		if _, err := (&clientcredentials.Config{ClientID: f.conf.ClientID, TokenURL: f.conf.Endpoint.TokenURL}).Token(ctx); err == nil {
			t.Fatal("a public app got a client-credentials token")
		}

		// The user revokes the app under Authorized apps.
		var dev models.User
		f.apiFixture.app.DB.Where("email = ?", "dev@example.com").Take(&dev)
		grants, err := f.apiFixture.app.OAuth.Authorized(ctx, dev.ID)
		if err != nil || len(grants) != 1 || grants[0].Client.Name != "Acme CI" {
			t.Fatalf("authorized apps: %v %+v", err, grants)
		}
		actor := f.apiFixture.app.Keys.UserActor(dev, models.RoleAdmin, "192.0.2.9", "test")
		if err := f.apiFixture.app.OAuth.RevokeGrant(ctx, actor, grants[0].ID); err != nil {
			t.Fatal(err)
		}
		if status, _ := bearerStatus(t, f.apiFixture.app, "/v1/auth/test", tok.AccessToken); status != http.StatusUnauthorized {
			t.Fatalf("access token after the user revoked the app: %d", status)
		}
		if _, err := f.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); oauthErrorCode(err) != "invalid_grant" {
			t.Fatalf("refresh after the user revoked the app: %v", err)
		}
	})
}

func TestOAuthSecretsAreHashedAtRest(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newOAuthFixture(t, dbURL, models.RoleAdmin, false)
		verifier := oauth2.GenerateVerifier()
		code := f.code(t, verifier)
		tok, err := f.conf.Exchange(t.Context(), code, oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		var dump []string
		for _, table := range []string{"oauth_clients", "oauth_grants", "oauth_families", "oauth_tokens"} {
			var rows []map[string]any
			f.apiFixture.app.DB.Table(table).Find(&rows)
			dump = append(dump, fmt.Sprint(rows))
		}
		all := strings.Join(dump, "\n")
		for name, secret := range map[string]string{"client secret": f.reg.Secret, "code": code, "refresh token": tok.RefreshToken, "access token": tok.AccessToken, "verifier": verifier} {
			if strings.Contains(all, secret) {
				t.Fatalf("the %s is stored in the clear", name)
			}
		}
	})
}

// TestExpiredOAuthTokensArePruned: the scheduler's job keeps codes and
// tokens until a day past their expiry (a used refresh token's replay is
// still recognised while it could have worked), then deletes them.
func TestExpiredOAuthTokensArePruned(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newOAuthFixture(t, dbURL, models.RoleAdmin, false)
		app, ctx := f.apiFixture.app, t.Context()
		verifier := oauth2.GenerateVerifier()
		tok, err := f.conf.Exchange(ctx, f.code(t, verifier), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		rows := func() (n int64) {
			if err := app.DB.Model(&models.OAuthToken{}).Count(&n).Error; err != nil {
				t.Fatal(err)
			}
			return n
		}
		before := rows()
		if before == 0 {
			t.Fatal("the flow stored no token rows")
		}
		// The protocol library dates tokens by the wall clock.
		app.Clock.Set(time.Now().Add(oauth.RefreshIdle))
		if err := app.OAuth.PruneExpired(ctx); err != nil {
			t.Fatal(err)
		}
		if n := rows(); n == before || n == 0 {
			t.Fatalf("%d rows, %d before: at the refresh token's expiry the code's rows go, the refresh token's stay a day", n, before)
		}
		if _, err := f.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err != nil {
			t.Fatalf("a refresh token still within its life stopped working after the pruning: %v", err)
		}
		app.Clock.Set(time.Now().Add(2*oauth.RefreshIdle + 2*oauth.PruneAfter))
		if err := app.OAuth.PruneExpired(ctx); err != nil {
			t.Fatal(err)
		}
		if n := rows(); n != 0 {
			t.Fatalf("%d token rows left after every token expired", n)
		}
	})
}
