package handlers_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"keysmith/config"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
	"keysmith/tokens"
)

// exchange posts the RFC 8693 token exchange of key, with extra form
// fields in pairs.
func exchange(t *testing.T, app *testutil.App, key string, extra ...string) (int, map[string]any, http.Header) {
	t.Helper()
	return postForm(t, app, exchangeForm(key, extra...))
}

// exchangeForm is the token exchange's form for key, with extra fields in
// pairs.
func exchangeForm(key string, extra ...string) url.Values {
	form := url.Values{"grant_type": {tokens.GrantTokenExchange}, "subject_token": {key}, "subject_token_type": {tokens.TokenTypeAPIKey}}
	for i := 0; i+1 < len(extra); i += 2 {
		form.Add(extra[i], extra[i+1])
	}
	return form
}

func postForm(t *testing.T, app *testutil.App, form url.Values) (int, map[string]any, http.Header) {
	t.Helper()
	res, err := http.PostForm(app.URL(tokens.TokenPath), form)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	return res.StatusCode, body, res.Header
}

// jwks reads the served key set as an outside verifier would.
func jwks(t *testing.T, app *testutil.App) jose.JSONWebKeySet {
	t.Helper()
	res, err := http.Get(app.URL(tokens.JWKSPath))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if !strings.HasPrefix(res.Header.Get("Cache-Control"), "public, max-age=") {
		t.Errorf("JWKS Cache-Control %q", res.Header.Get("Cache-Control"))
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(res.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	return set
}

// offline verifies a token with go-jose against the served JWKS, the way
// docs/API.md shows a service doing it, and returns its claims.
func offline(t *testing.T, app *testutil.App, raw, audience string) (jwt.Claims, string, error) {
	t.Helper()
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		return jwt.Claims{}, "", err
	}
	if typ := tok.Headers[0].ExtraHeaders[jose.HeaderType]; typ != "at+jwt" {
		t.Errorf("typ %v", typ)
	}
	set := jwks(t, app)
	keys := set.Key(tok.Headers[0].KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q: %d keys in the JWKS", tok.Headers[0].KeyID, len(keys))
	}
	var claims jwt.Claims
	var extra struct {
		Scope string `json:"scope"`
	}
	if err := tok.Claims(keys[0].Key, &claims, &extra); err != nil {
		return claims, "", err
	}
	return claims, extra.Scope, claims.ValidateWithLeeway(jwt.Expected{
		Issuer: app.Config.BaseURL, AnyAudience: jwt.Audience{audience}, Time: app.Clock.Now()}, 0)
}

// The issue's "done when": a service exchanges a key for a 10-minute
// files:read token, verifies it offline with go-jose and the JWKS, uses it
// on Keysmith's API and verify, and sees both refuse it the moment its key
// is revoked.
func TestTokenExchangeVerifyAndRevoke(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newAPIFixture(t, dbURL)
		k := f.key(t, func(in *keys.CreateInput) {
			in.Permission, in.Scopes = keys.PermCustom, []string{"files:*", "keys:read"}
		})
		status, body, hdr := exchange(t, f.app, k.Secret, "scope", "files:read", "expires_in", "600")
		if status != 200 || body["token_type"] != "Bearer" || body["issued_token_type"] != tokens.TokenTypeJWT ||
			body["expires_in"] != 600.0 || body["scope"] != "files:read" {
			t.Fatalf("exchange: %d %v", status, body)
		}
		if hdr.Get("Cache-Control") != "no-store" || hdr.Get("RateLimit-Limit") == "" {
			t.Errorf("exchange headers %v", hdr)
		}
		token := body["access_token"].(string)

		claims, scope, err := offline(t, f.app, token, f.app.Config.BaseURL)
		if err != nil || scope != "files:read" || claims.Expiry.Time().Sub(claims.IssuedAt.Time()) != 10*time.Minute || claims.ID == "" {
			t.Fatalf("offline: %+v %q: %v", claims, scope, err)
		}
		// A changed signature fails offline and on Keysmith alike.
		parts := strings.Split(token, ".")
		sig := []byte(parts[2])
		sig[5] ^= 1
		tampered := parts[0] + "." + parts[1] + "." + string(sig)
		if _, _, err := offline(t, f.app, tampered, f.app.Config.BaseURL); err == nil {
			t.Error("a tampered signature verified offline")
		}
		if r := call(t, f.app, "GET", "/v1/auth/test", tampered, nil); r.Status != 401 {
			t.Errorf("tampered token on the API: %d %s", r.Status, r.Raw)
		}

		// Keysmith's API accepts it with the token's scopes, not the key's.
		r := call(t, f.app, "GET", "/v1/auth/test", token, nil)
		if r.Status != 200 || r.Body["token_type"] != "jwt" {
			t.Fatalf("auth/test with the token: %d %s", r.Status, r.Raw)
		}
		if got := r.Body["key"].(map[string]any); fmt.Sprint(got["scopes"]) != "[files:read]" || got["permission"] != "custom" {
			t.Errorf("token scopes %v, permission %v", got["scopes"], got["permission"])
		}
		if r := call(t, f.app, "GET", "/v1/keys", token, nil); r.Status != 403 {
			t.Errorf("a files:read token listing keys: %d %s", r.Status, r.Raw)
		}
		verify := func(body map[string]any) apiResp {
			return call(t, f.app, "POST", "/v1/keys/verify", serviceToken, body)
		}
		if r := verify(map[string]any{"key": token, "scopes": []string{"files:read"}}); r.Body["code"] != "VALID" || r.Body["token_type"] != "jwt" {
			t.Errorf("verify the token: %s", r.Raw)
		}
		if r := verify(map[string]any{"key": token, "scopes": []string{"files:write"}}); r.Body["code"] != "INSUFFICIENT_SCOPE" {
			t.Errorf("verify the token for more than it holds: %s", r.Raw)
		}
		if r := verify(map[string]any{"key": k.Secret}); r.Body["token_type"] != "api_key" {
			t.Errorf("verify the key: %s", r.Raw)
		}

		// The audit log has the exchange, never the token.
		var ev models.AuditEvent
		if err := f.app.DB.Where("action = ?", keys.ActionTokenIssued).Take(&ev).Error; err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(ev.Detail, claims.ID) || !strings.Contains(ev.Detail, "files:read") || !strings.Contains(ev.Detail, "10m0s") ||
			strings.Contains(ev.Detail, token) || ev.KeyID == nil || *ev.KeyID != k.Key.ID {
			t.Errorf("audit event %+v", ev)
		}

		if _, err := f.app.Keys.Revoke(t.Context(), f.ws, f.actor, k.Key.ID); err != nil {
			t.Fatal(err)
		}
		r = call(t, f.app, "GET", "/v1/auth/test", token, nil)
		if _, code := r.errorCode(t); r.Status != 401 || code != "revoked_api_key" {
			t.Errorf("after revocation: %d %s", r.Status, r.Raw)
		}
		if r := verify(map[string]any{"key": token}); r.Body["code"] != "REVOKED" || r.Body["valid"] != false {
			t.Errorf("verify after revocation: %s", r.Raw)
		}
		// Offline verifiers cannot know: they accept it until exp.
		if _, _, err := offline(t, f.app, token, f.app.Config.BaseURL); err != nil {
			t.Errorf("offline after revocation: %v", err)
		}
		f.app.Clock.Advance(10*time.Minute + tokens.Leeway + time.Second)
		if _, _, err := offline(t, f.app, token, f.app.Config.BaseURL); err == nil {
			t.Error("offline past exp: verified")
		}
		if r := verify(map[string]any{"key": token}); r.Status != 200 || r.Body["code"] != "EXPIRED" || r.Body["token_type"] != "jwt" {
			t.Errorf("verify past exp: %d %s", r.Status, r.Raw)
		}
	})
}

// A token for another audience works there (through verify), not on
// Keysmith's own API.
func TestTokenAudience(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	k := f.key(t, nil)
	status, body, _ := exchange(t, f.app, k.Secret, "resource", "https://files.example.com", "audience", "billing")
	if status != 200 {
		t.Fatalf("%d %v", status, body)
	}
	token := body["access_token"].(string)
	if _, _, err := offline(t, f.app, token, "https://files.example.com"); err != nil {
		t.Errorf("offline for its resource: %v", err)
	}
	if r := call(t, f.app, "GET", "/v1/auth/test", token, nil); r.Status != 401 {
		t.Errorf("Keysmith's API accepted a token for files.example.com: %d", r.Status)
	}
	for aud, want := range map[string]string{"billing": "VALID", "https://files.example.com": "VALID", "https://other.example.com": "MALFORMED"} {
		r := call(t, f.app, "POST", "/v1/keys/verify", serviceToken, map[string]any{"key": token, "audience": aud})
		if r.Body["code"] != want {
			t.Errorf("verify for %s: %s", aud, r.Raw)
		}
	}
}

// A token in the query string follows the keys' rule: refused unless the
// operator allows keys in URLs, then read from ?token=.
func TestTokenInQueryString(t *testing.T) {
	for _, allow := range []bool{false, true} {
		f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"), testutil.WithConfig(func(c *config.Config) { c.AllowQueryKeys = allow }))
		k := f.key(t, nil)
		_, body, _ := exchange(t, f.app, k.Secret)
		r := call(t, f.app, "GET", "/v1/auth/test?token="+body["access_token"].(string), "", nil)
		if allow && r.Status != 200 || !allow && r.Status != 400 {
			t.Errorf("allow=%v: %d %s", allow, r.Status, r.Raw)
		}
	}
}

func TestTokenExchangeRefusals(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	read := f.key(t, nil)
	revoked := f.key(t, nil)
	if _, err := f.app.Keys.Revoke(t.Context(), f.ws, f.actor, revoked.Key.ID); err != nil {
		t.Fatal(err)
	}
	form := exchangeForm
	for _, tc := range []struct {
		name  string
		form  url.Values
		error string
	}{
		{"no grant", url.Values{"subject_token": {read.Secret}}, "invalid_request"},
		{"another grant", url.Values{"grant_type": {"password"}}, "unsupported_grant_type"},
		{"no key", form(""), "invalid_request"},
		{"another token type", url.Values{"grant_type": {tokens.GrantTokenExchange}, "subject_token": {read.Secret},
			"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"}}, "invalid_request"},
		{"more than the key", form(read.Secret, "scope", "files:write"), "invalid_scope"},
		{"unknown scope", form(read.Secret, "scope", "nope:read"), "invalid_scope"},
		{"bad resource", form(read.Secret, "resource", "files"), "invalid_target"},
		{"audience with a comma", form(read.Secret, "audience", "x, scopes *"), "invalid_target"},
		{"audiences too long", form(read.Secret, "audience", strings.Repeat("a", 500), "audience", strings.Repeat("b", 500), "audience", strings.Repeat("c", 500)), "invalid_target"},
		{"scopes split by a tab", form(read.Secret, "scope", "files:read\tprojects:read"), "invalid_scope"},
		{"bad lifetime", form(read.Secret, "expires_in", "-5"), "invalid_request"},
		{"repeated scope", form(read.Secret, "scope", "files:read", "scope", "files:write"), "invalid_request"},
		{"malformed key", form("ks_sk_live_nope"), "invalid_grant"},
		{"unknown key", form(keys.Generate("ks", keys.Secret, keys.Live)), "invalid_grant"},
		{"revoked key", form(revoked.Secret), "invalid_grant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body, _ := postForm(t, f.app, tc.form)
			if status != 400 || body["error"] != tc.error {
				t.Errorf("%d %v; want 400 %s", status, body, tc.error)
			}
		})
	}

	// Caps: 4 h at most, and never past the key's expiry.
	if status, body, _ := exchange(t, f.app, read.Secret, "expires_in", "86400"); status != 200 || body["expires_in"] != float64(tokens.MaxLifetime/time.Second) {
		t.Errorf("a day: %d %v", status, body)
	}
	f.app.Clock.Advance(30*24*time.Hour - 2*time.Hour) // read has 2 h left
	if status, body, _ := exchange(t, f.app, read.Secret, "expires_in", "14400"); status != 200 || body["expires_in"] != 7200.0 {
		t.Errorf("a key with 2 h left: %d %v", status, body)
	}
	f.app.Clock.Advance(2 * time.Hour)
	if status, body, _ := exchange(t, f.app, read.Secret); status != 400 || body["error"] != "invalid_grant" {
		t.Errorf("an expired key: %d %v", status, body)
	}

	// A key in the URL is refused before anything else.
	res, err := http.Post(f.app.URL(tokens.TokenPath)+"?subject_token="+read.Secret, "application/x-www-form-urlencoded", strings.NewReader(form(read.Secret).Encode()))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 400 {
		t.Errorf("a key in the URL: %d", res.StatusCode)
	}
}

// After a rotation of the signing key, tokens signed before still work and
// new ones carry the new kid; the JWKS publishes both.
func TestSigningKeyRotation(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	k := f.key(t, nil)
	_, body, _ := exchange(t, f.app, k.Secret)
	before := body["access_token"].(string)
	kid, err := f.app.Tokens.Rotate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	f.app.Clock.Advance(tokens.RefreshEvery + time.Second) // the server re-reads its keys
	_, body, _ = exchange(t, f.app, k.Secret)
	after := body["access_token"].(string)
	for name, token := range map[string]string{"before": before, "after": after} {
		if r := call(t, f.app, "GET", "/v1/auth/test", token, nil); r.Status != 200 {
			t.Errorf("token from %s the rotation: %d %s", name, r.Status, r.Raw)
		}
	}
	tok, _ := jwt.ParseSigned(after, []jose.SignatureAlgorithm{jose.EdDSA})
	if tok.Headers[0].KeyID != kid {
		t.Errorf("new token kid %q, want %q", tok.Headers[0].KeyID, kid)
	}
	if n := len(jwks(t, f.app).Keys); n != 2 {
		t.Errorf("JWKS holds %d keys, want 2", n)
	}
}

func TestAuthorizationServerMetadata(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	res, err := http.Get(app.URL(tokens.MetadataPath))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var meta tokens.Metadata
	if err := json.NewDecoder(res.Body).Decode(&meta); err != nil {
		t.Fatal(err)
	}
	if meta.Issuer != app.Config.BaseURL || meta.TokenEndpoint != app.Config.BaseURL+tokens.TokenPath ||
		meta.JWKSURI != app.Config.BaseURL+tokens.JWKSPath || len(meta.ScopesSupported) == 0 {
		t.Errorf("metadata %+v", meta)
	}
}

// A member issues a temporary token from the key's page, with one of its
// scopes: shown once, never cached, accepted by the API with that scope
// alone, and audited under the member's name. Refusals keep the form.
func TestDashboardIssuesATemporaryToken(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	c := signUp(t, app, "ada@example.com")
	createKey(t, c, nil)
	id := keyIDByName(t, app, "Billing worker")
	page := c.Get(fmt.Sprintf("/settings/api-keys/%d", id))
	if n := page.Doc.Find(`#token input[name=token_scopes]:checked`).Length(); n < 2 {
		t.Fatalf("token form offers %d checked scopes", n)
	}

	refused := c.Submit(page, `form[action$="/token"]`, map[string]string{"token_scopes": "", "token_lifetime": "1h0m0s"})
	if refused.Status != 422 || !strings.Contains(refused.Text("#token .error"), "at least one scope") {
		t.Fatalf("no scope: %d %q", refused.Status, refused.Text("#token .error"))
	}
	if v, _ := refused.Doc.Find(`#token_lifetime option[selected]`).Attr("value"); v != "1h0m0s" {
		t.Errorf("lifetime not kept: %q", v)
	}

	shown := c.Submit(page, `form[action$="/token"]`, map[string]string{"token_scopes": "files:read", "token_lifetime": "1h0m0s"})
	token, _ := shown.Doc.Find("#secret").Attr("value")
	if shown.Status != 201 || !tokens.LooksLikeJWT(token) || shown.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("token page: %d %q %q", shown.Status, token, shown.Header.Get("Cache-Control"))
	}
	r := call(t, app, "GET", "/v1/auth/test", token, nil)
	if r.Status != 200 || fmt.Sprint(r.Body["key"].(map[string]any)["scopes"]) != "[files:read]" {
		t.Fatalf("the token on the API: %d %s", r.Status, r.Raw)
	}
	var ev models.AuditEvent
	if err := app.DB.Where("action = ?", keys.ActionTokenIssued).Take(&ev).Error; err != nil || ev.ActorLabel != "ada@example.com" ||
		!strings.Contains(ev.Detail, "for 1h0m0s") || strings.Contains(ev.Detail, token) {
		t.Errorf("audit event %+v: %v", ev, err)
	}

	// A viewer of the workspace sees no form, and a forged post is refused.
	viewer := addMember(t, app, "ada@example.com", "vic@example.com", models.RoleViewer)
	if p := viewer.Get(fmt.Sprintf("/settings/api-keys/%d", id)); p.Status != 200 || p.Doc.Find("#token").Length() != 0 {
		t.Errorf("a viewer's key page: %d, token form shown: %v", p.Status, p.Doc.Find("#token").Length() != 0)
	}
	forged := viewer.Submit(viewer.Get("/settings/account"), "form.switcher", nil) // any page, for its CSRF token
	csrf, _ := forged.Doc.Find(`input[name=_csrf]`).Attr("value")
	if p := viewer.PostForm(fmt.Sprintf("/settings/api-keys/%d/token", id), url.Values{"_csrf": {csrf}, "token_scopes": {"files:read"}, "token_lifetime": {"1h0m0s"}}); p.Status != 403 {
		t.Errorf("a viewer's token: %d", p.Status)
	} else if !strings.Contains(p.Text("main"), "more access than you have") && !strings.Contains(p.Text("main"), "only admins") {
		t.Logf("viewer refused: %q", p.Text("main"))
		t.Errorf("a viewer refused for another reason: %q", p.Text("main"))
	}
}

// The OAuth paths answer in OAuth's JSON, errors included: never an HTML
// page.
func TestOAuthErrorsAreJSON(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	for _, tc := range []struct {
		method, path, body string
		status             int
	}{
		{"GET", tokens.TokenPath, "", 405},
		{"GET", "/.well-known/nothing", "", 404},
		{"POST", tokens.TokenPath, "grant_type=%00", 400},
	} {
		req, _ := http.NewRequest(tc.method, app.URL(tc.path), strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		err = json.NewDecoder(res.Body).Decode(&body)
		res.Body.Close()
		if res.StatusCode != tc.status || err != nil || body["error"] != "invalid_request" || body["error_description"] == "" {
			t.Errorf("%s %s: %d %v (%v)", tc.method, tc.path, res.StatusCode, body, err)
		}
	}
}

// A token never becomes a lasting secret: it cannot create keys or rotate
// one, even with keys:write. What it may do is audited under its id.
func TestTokenCannotMintKeys(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	admin := f.key(t, func(in *keys.CreateInput) { in.Permission = keys.PermAdmin })
	other := f.key(t, nil)
	_, body, _ := exchange(t, f.app, admin.Secret)
	token := body["access_token"].(string)
	r := call(t, f.app, "POST", "/v1/keys", token, map[string]any{"name": "forever", "scopes": []string{"files:read"}})
	if _, code := r.errorCode(t); r.Status != 403 || code != "insufficient_scope" || !strings.Contains(r.Raw, "temporary token") {
		t.Errorf("create with a token: %d %s", r.Status, r.Raw)
	}
	for _, id := range []int64{admin.Key.ID, other.Key.ID} {
		if r := call(t, f.app, "POST", fmt.Sprintf("/v1/keys/%d/rotate", id), token, map[string]any{}); r.Status != 403 {
			t.Errorf("rotate key %d with a token: %d %s", id, r.Status, r.Raw)
		}
	}
	if r := call(t, f.app, "DELETE", fmt.Sprintf("/v1/keys/%d", other.Key.ID), token, nil); r.Status != 200 {
		t.Fatalf("revoke with a token: %d %s", r.Status, r.Raw)
	}
	var ev models.AuditEvent
	f.app.DB.Where("action = ?", keys.ActionRevoked).Take(&ev)
	if !strings.Contains(ev.ActorLabel, "(token ") || ev.ActorKeyID == nil || *ev.ActorKeyID != admin.Key.ID {
		t.Errorf("revocation by a token audited as %q", ev.ActorLabel)
	}
}
