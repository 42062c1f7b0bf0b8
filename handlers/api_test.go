package handlers_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"keysmith/accounts"
	"keysmith/config"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
)

const serviceToken = "svc-token-0123456789abcdef0123456789abcdef"

type apiResp struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    string
}

// errorCode checks the SPEC §6 error shape and returns type and code.
func (r apiResp) errorCode(t *testing.T) (string, string) {
	t.Helper()
	e, ok := r.Body["error"].(map[string]any)
	if !ok {
		t.Fatalf("not an error body: %d %s", r.Status, r.Raw)
	}
	if id, _ := e["request_id"].(string); !strings.HasPrefix(id, "req_") || id != r.Header.Get("X-Request-Id") {
		t.Errorf("request_id %q, X-Request-Id %q", id, r.Header.Get("X-Request-Id"))
	}
	if msg, _ := e["message"].(string); msg == "" {
		t.Error("error without a message")
	}
	return e["type"].(string), e["code"].(string)
}

func call(t *testing.T, app *testutil.App, method, path, key string, body any) apiResp {
	t.Helper()
	if body == nil {
		return rawCall(t, app, method, path, key, "", "")
	}
	b, _ := json.Marshal(body)
	return rawCall(t, app, method, path, key, "application/json", string(b))
}

// apiFixture is a workspace owner and a helper to mint keys as them.
type apiFixture struct {
	app   *testutil.App
	ws    int64
	actor keys.Actor
}

func newAPIFixture(t *testing.T, dbURL string, opts ...testutil.Option) *apiFixture {
	t.Helper()
	opts = append(opts, testutil.WithConfig(func(c *config.Config) { c.ServiceToken = serviceToken }))
	app := testutil.StartApp(t, dbURL, opts...)
	u, err := app.Accounts.SignUp(t.Context(), accounts.SignUpInput{Email: "owner@example.com", Name: "Owner", Password: "long enough pw"})
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := app.Accounts.Memberships(t.Context(), u.ID)
	return &apiFixture{app: app, ws: ms[0].WorkspaceID, actor: app.Keys.UserActor(u, models.RoleOwner, "192.0.2.1", "test")}
}

func (f *apiFixture) key(t *testing.T, edit func(*keys.CreateInput)) keys.Created {
	t.Helper()
	in := keys.CreateInput{Name: "api client", Kind: keys.Secret, Env: keys.Live, Permission: keys.PermRead, ExpiresIn: "30"}
	if edit != nil {
		edit(&in)
	}
	c, err := f.app.Keys.Create(t.Context(), f.ws, f.actor, in)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAuthTestAnswersWhoTheKeyIs(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newAPIFixture(t, dbURL)
		k := f.key(t, nil)
		r := call(t, f.app, "GET", "/v1/auth/test", k.Secret, nil)
		if r.Status != 200 || r.Body["authenticated"] != true {
			t.Fatalf("auth test: %d %s", r.Status, r.Raw)
		}
		ws := r.Body["workspace"].(map[string]any)
		key := r.Body["key"].(map[string]any)
		if ws["name"] != "Owner's workspace" || key["name"] != "api client" || key["environment"] != "live" || key["kind"] != "sk" || key["permission"] != "read" {
			t.Fatalf("auth test body %s", r.Raw)
		}
		if r.Header.Get("RateLimit-Limit") != "1000" || r.Header.Get("RateLimit-Remaining") != "999" || r.Header.Get("RateLimit-Reset") == "" {
			t.Errorf("rate limit headers %v", r.Header)
		}
	})
}

func TestEveryAPIErrorCode(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	read := f.key(t, nil)
	expiring := f.key(t, func(in *keys.CreateInput) { in.ExpiresIn = "7" })
	revoked := f.key(t, nil)
	if _, err := f.app.Keys.Revoke(t.Context(), f.ws, f.actor, revoked.Key.ID); err != nil {
		t.Fatal(err)
	}
	testKey := f.key(t, func(in *keys.CreateInput) { in.Env, in.Permission = keys.Test, keys.PermAdmin })
	f.app.Clock.Advance(8 * 24 * time.Hour)

	cases := []struct {
		name, method, path, key string
		header                  string
		body                    any
		status                  int
		typ, code               string
	}{
		{"no key", "GET", "/v1/auth/test", "", "", nil, 401, "authentication_error", "missing_api_key"},
		{"not bearer", "GET", "/v1/auth/test", "", "Basic dXNlcjpwYXNz", nil, 401, "authentication_error", "invalid_api_key"},
		{"garbage", "GET", "/v1/auth/test", "hello", "", nil, 401, "authentication_error", "invalid_api_key"},
		{"bad checksum", "GET", "/v1/auth/test", otherLast(read.Secret), "", nil, 401, "authentication_error", "invalid_api_key"},
		{"unknown", "GET", "/v1/auth/test", keys.Generate("ks", keys.Secret, keys.Live), "", nil, 401, "authentication_error", "invalid_api_key"},
		{"expired", "GET", "/v1/auth/test", expiring.Secret, "", nil, 401, "authentication_error", "expired_api_key"},
		{"revoked", "GET", "/v1/auth/test", revoked.Secret, "", nil, 401, "authentication_error", "revoked_api_key"},
		{"in the query", "GET", "/v1/auth/test?api_key=" + read.Secret, "", "", nil, 400, "invalid_request_error", "key_in_query_string"},
		{"in the query, accesskey", "GET", "/v1/auth/test?accesskey=" + read.Secret, "", "", nil, 400, "invalid_request_error", "key_in_query_string"},
		{"missing scope", "POST", "/v1/keys", read.Secret, "", map[string]any{"name": "x"}, 403, "permission_error", "insufficient_scope"},
		{"other environment", "GET", "/v1/keys/1", testKey.Secret, "", nil, 403, "permission_error", "wrong_environment"},
		{"no such key", "GET", "/v1/keys/999999", testKey.Secret, "", nil, 404, "invalid_request_error", "resource_missing"},
		{"invalid create", "POST", "/v1/keys", testKey.Secret, "", map[string]any{"name": "", "permission": "read"}, 422, "invalid_request_error", "validation_failed"},
		{"no such endpoint", "GET", "/v1/nothing", read.Secret, "", nil, 404, "invalid_request_error", "not_found"},
		{"wrong method", "PUT", "/v1/keys", read.Secret, "", nil, 405, "invalid_request_error", "method_not_allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r apiResp
			if tc.header != "" {
				req, _ := http.NewRequest(tc.method, f.app.URL(tc.path), nil)
				req.Header.Set("Authorization", tc.header)
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := io.ReadAll(res.Body)
				res.Body.Close()
				r = apiResp{Status: res.StatusCode, Header: res.Header, Raw: string(raw)}
				json.Unmarshal(raw, &r.Body)
			} else {
				r = call(t, f.app, tc.method, tc.path, tc.key, tc.body)
			}
			typ, code := r.errorCode(t)
			if r.Status != tc.status || typ != tc.typ || code != tc.code {
				t.Fatalf("got %d %s/%s, want %d %s/%s: %s", r.Status, typ, code, tc.status, tc.typ, tc.code, r.Raw)
			}
		})
	}
	if r := call(t, f.app, "POST", "/v1/keys", read.Secret, map[string]any{"name": "x"}); !strings.Contains(r.Raw, "API key lacks scope: keys:write") {
		t.Errorf("insufficient_scope message: %s", r.Raw)
	}
}

func TestMalformedKeysNeverReachTheDatabase(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	if err := models.Close(f.app.DB); err != nil {
		t.Fatal(err)
	}
	r := call(t, f.app, "GET", "/v1/auth/test", "ks_sk_live_nottherightlength", nil)
	if _, code := r.errorCode(t); r.Status != 401 || code != "invalid_api_key" {
		t.Fatalf("malformed key with the database gone: %d %s", r.Status, r.Raw)
	}
	// A well-formed key does need the database: a 500, without internals.
	r = call(t, f.app, "GET", "/v1/auth/test", keys.Generate("ks", keys.Secret, keys.Live), nil)
	if typ, code := r.errorCode(t); r.Status != 500 || typ != "api_error" || strings.Contains(r.Raw, "sql") {
		t.Fatalf("database down: %d %s %s", r.Status, code, r.Raw)
	}
}

func TestQueryKeysWhenTheOperatorAllowsThem(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"), testutil.WithConfig(func(c *config.Config) { c.AllowQueryKeys = true }))
	k := f.key(t, nil)
	for _, param := range []string{"api_key", "accesskey"} {
		if r := call(t, f.app, "GET", "/v1/auth/test?"+param+"="+k.Secret, "", nil); r.Status != 200 {
			t.Fatalf("?%s= with the opt-in: %d %s", param, r.Status, r.Raw)
		}
	}
}

func TestScopesWithWildcards(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	for _, tc := range []struct {
		scopes []string
		status int
	}{
		{[]string{"keys:*"}, 200},
		{[]string{"keys:read"}, 200},
		{[]string{"*:read"}, 200},
		{[]string{"files:*"}, 403},
		{[]string{"*:write"}, 403},
	} {
		k := f.key(t, func(in *keys.CreateInput) { in.Permission, in.Scopes = keys.PermCustom, tc.scopes })
		if r := call(t, f.app, "GET", "/v1/keys", k.Secret, nil); r.Status != tc.status {
			t.Errorf("key with %v listing keys: %d, want %d", tc.scopes, r.Status, tc.status)
		}
	}
}

func TestRevocationTakesEffectOnTheNextRequest(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newAPIFixture(t, dbURL)
		k := f.key(t, nil)
		// A second instance on the same database, with its own cache.
		other := testutil.StartApp(t, dbURL, testutil.WithClock(f.app.Clock))
		if other.Feed != nil {
			waitFor(t, "the other replica's change feed", other.Feed.Connected)
		}
		for _, app := range []*testutil.App{f.app, other} {
			if r := call(t, app, "GET", "/v1/auth/test", k.Secret, nil); r.Status != 200 {
				t.Fatalf("before revoking: %d", r.Status)
			}
		}
		if _, err := f.app.Keys.Revoke(t.Context(), f.ws, f.actor, k.Key.ID); err != nil {
			t.Fatal(err)
		}
		if r := call(t, f.app, "GET", "/v1/auth/test", k.Secret, nil); r.Status != 401 {
			t.Fatalf("the revoking replica still accepts the key: %d", r.Status)
		}
		if other.Feed == nil {
			// SQLite serves one process; another on the same file (a CLI, a
			// second server) sees the change within the cache's lifetime.
			f.app.Clock.Advance(keys.LongCacheTTL)
		}
		// On PostgreSQL no time passes on the clock: only the NOTIFY can
		// tell the other replica.
		waitFor(t, "the other replica refusing the revoked key", func() bool {
			r := call(t, other, "GET", "/v1/auth/test", k.Secret, nil)
			return r.Status == 401 && r.Body["error"].(map[string]any)["code"] == "revoked_api_key"
		})
	})
}

// waitFor polls cond until it holds, failing the test after 10 s: for
// what another goroutine or process does (a NOTIFY arriving), asserting
// that it happens and not how fast.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRotatedKeyWorksDuringGraceOnly(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	old := f.key(t, nil)
	fresh, err := f.app.Keys.Rotate(t.Context(), f.ws, f.actor, old.Key.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{old.Secret, fresh.Secret} {
		if r := call(t, f.app, "GET", "/v1/auth/test", s, nil); r.Status != 200 {
			t.Fatalf("during grace: %d", r.Status)
		}
	}
	f.app.Clock.Advance(time.Hour)
	if _, code := call(t, f.app, "GET", "/v1/auth/test", old.Secret, nil).errorCode(t); code != "expired_api_key" {
		t.Fatalf("old key after grace: %s", code)
	}
	if r := call(t, f.app, "GET", "/v1/auth/test", fresh.Secret, nil); r.Status != 200 {
		t.Fatalf("new key after grace: %d", r.Status)
	}
}

func TestRateLimitExhaustionAndReset(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	k := f.key(t, nil)
	limit := 3
	if _, err := f.app.Keys.SetRateLimits(t.Context(), f.ws, f.actor, k.Key.ID, keys.LimitSettings{PerMinute: &limit}); err != nil {
		t.Fatal(err)
	}
	for i := 2; i >= 0; i-- {
		r := call(t, f.app, "GET", "/v1/auth/test", k.Secret, nil)
		if r.Status != 200 || r.Header.Get("RateLimit-Limit") != "3" || r.Header.Get("RateLimit-Remaining") != string(rune('0'+i)) {
			t.Fatalf("request %d: %d, limit %s remaining %s", 3-i, r.Status, r.Header.Get("RateLimit-Limit"), r.Header.Get("RateLimit-Remaining"))
		}
	}
	r := call(t, f.app, "GET", "/v1/auth/test", k.Secret, nil)
	if typ, code := r.errorCode(t); r.Status != 429 || typ != "rate_limit_error" || code != "rate_limit_exceeded" {
		t.Fatalf("4th request: %d %s", r.Status, r.Raw)
	}
	if r.Header.Get("Retry-After") != "20" || r.Header.Get("RateLimit-Remaining") != "0" || r.Header.Get("RateLimit-Reset") != "60" {
		t.Fatalf("429 headers: Retry-After %q, remaining %q, reset %q", r.Header.Get("Retry-After"), r.Header.Get("RateLimit-Remaining"), r.Header.Get("RateLimit-Reset"))
	}
	f.app.Clock.Advance(20 * time.Second)
	if r := call(t, f.app, "GET", "/v1/auth/test", k.Secret, nil); r.Status != 200 {
		t.Fatalf("after Retry-After: %d", r.Status)
	}
	pk := f.key(t, func(in *keys.CreateInput) { in.Kind = keys.Publishable })
	if r := call(t, f.app, "GET", "/v1/auth/test", pk.Secret, nil); r.Header.Get("RateLimit-Limit") != "100" {
		t.Fatalf("publishable default limit %q", r.Header.Get("RateLimit-Limit"))
	}
}

func TestLastUsedIsBatchedAndSurvivesShutdown(t *testing.T) {
	dbURL := testutil.DatabaseURL(t, "sqlite")
	f := newAPIFixture(t, dbURL)
	k := f.key(t, nil)
	for range 5 {
		call(t, f.app, "GET", "/v1/auth/test", k.Secret, nil)
	}
	var stored models.APIKey
	f.app.DB.Take(&stored, k.Key.ID)
	if stored.LastUsedAt != nil {
		t.Fatal("last use written per request, not buffered")
	}
	updated := stored.UpdatedAt
	if err := f.app.Close(); err != nil { // what SIGTERM does after draining
		t.Fatal(err)
	}
	again := testutil.StartApp(t, dbURL, testutil.WithClock(f.app.Clock))
	again.DB.Take(&stored, k.Key.ID)
	if stored.LastUsedAt == nil || !stored.LastUsedAt.Equal(f.app.Clock.Now()) || stored.LastUsedIP != "127.0.0.1" || stored.LastUsedUserAgent != "keysmith-test/1.0" {
		t.Fatalf("after restart: last used %v from %q %q", stored.LastUsedAt, stored.LastUsedIP, stored.LastUsedUserAgent)
	}
	if !stored.UpdatedAt.Equal(updated) {
		t.Error("recording a use changed updated_at")
	}
}

func TestLastUsedFlushesOnItsInterval(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	k := f.key(t, nil)
	call(t, f.app, "GET", "/v1/auth/test", k.Secret, nil)
	if err := f.app.Flusher.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	c := newDashboardClient(t, f.app)
	list := c.Get("/settings/api-keys")
	if got := list.Text("table.keys tbody tr td:nth-child(5) time"); got != "just now" {
		t.Fatalf("dashboard last used: %q", got)
	}
	if got := list.Text("table.keys tbody tr td:nth-child(5) svg.spark title"); got != "1 request in the last 14 days" {
		t.Fatalf("the flushed request's sparkline: %q", got)
	}
}

// newDashboardClient logs the fixture's owner in to the dashboard.
func newDashboardClient(t *testing.T, app *testutil.App) *testutil.Client {
	c, page := logIn(t, app, "owner@example.com", "long enough pw")
	if page.URL.Path != "/settings/api-keys" {
		t.Fatalf("login: %s", page.URL)
	}
	return c
}

func TestKeyManagementAPI(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newAPIFixture(t, dbURL)
		manager := f.key(t, func(in *keys.CreateInput) {
			in.Name, in.Permission, in.Scopes = "provisioner", keys.PermCustom, []string{"keys:*", "files:read"}
		})
		f.key(t, func(in *keys.CreateInput) { in.Name, in.Env = "test key", keys.Test })

		r := call(t, f.app, "POST", "/v1/keys", manager.Secret, map[string]any{"name": "uploader", "scopes": []string{"files:read"}, "expires_in": "30"})
		if r.Status != 201 || r.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("create: %d %s", r.Status, r.Raw)
		}
		secret, _ := r.Body["secret"].(string)
		if !secretPattern.MatchString(secret) || r.Body["environment"] != "live" || r.Body["permission"] != "custom" {
			t.Fatalf("created %s", r.Raw)
		}
		id := int64(r.Body["id"].(float64))
		if call(t, f.app, "GET", "/v1/auth/test", secret, nil).Status != 200 {
			t.Fatal("the key created through the API does not authenticate")
		}
		if r := call(t, f.app, "POST", "/v1/keys", manager.Secret, map[string]any{"name": "too much", "scopes": []string{"files:write"}}); r.Status != 403 {
			t.Fatalf("creating a broader key: %d %s", r.Status, r.Raw)
		}
		if r := call(t, f.app, "POST", "/v1/keys", manager.Secret, map[string]any{"name": "other env", "environment": "test", "scopes": []string{"files:read"}}); r.Status != 403 {
			t.Fatalf("creating a test key with a live key: %d", r.Status)
		}

		list := call(t, f.app, "GET", "/v1/keys", manager.Secret, nil)
		data := list.Body["data"].([]any)
		if list.Status != 200 || len(data) != 2 || list.Body["total"].(float64) != 2 || strings.Contains(list.Raw, "test key") {
			t.Fatalf("list (live keys only): %s", list.Raw)
		}
		if strings.Contains(list.Raw, secret) || strings.Contains(list.Raw, "secret_hash") {
			t.Fatal("the list shows a secret or its hash")
		}
		if r := call(t, f.app, "GET", "/v1/keys/"+itoa(id), manager.Secret, nil); r.Status != 200 || r.Body["name"] != "uploader" || r.Body["secret"] != nil {
			t.Fatalf("get: %d %s", r.Status, r.Raw)
		}

		rot := call(t, f.app, "POST", "/v1/keys/"+itoa(id)+"/rotate", manager.Secret, map[string]any{"grace_period": "1h"})
		if rot.Status != 201 || rot.Body["secret"] == secret || rot.Body["replaces"].(float64) != float64(id) {
			t.Fatalf("rotate: %d %s", rot.Status, rot.Raw)
		}
		if r := call(t, f.app, "POST", "/v1/keys/"+itoa(id)+"/rotate", manager.Secret, map[string]any{"grace_period": "5m"}); r.Status != 422 {
			t.Fatalf("rotating again with a bad grace: %d", r.Status)
		}
		del := call(t, f.app, "DELETE", "/v1/keys/"+itoa(int64(rot.Body["id"].(float64))), manager.Secret, nil)
		if del.Status != 200 || del.Body["status"] != "revoked" {
			t.Fatalf("revoke: %d %s", del.Status, del.Raw)
		}
		// The manager cannot revoke the owner's broader admin key.
		admin := f.key(t, func(in *keys.CreateInput) { in.Name, in.Permission = "admin", keys.PermAdmin })
		if r := call(t, f.app, "DELETE", "/v1/keys/"+itoa(admin.Key.ID), manager.Secret, nil); r.Status != 403 {
			t.Fatalf("revoking a broader key: %d %s", r.Status, r.Raw)
		}

		var events []models.AuditEvent
		f.app.DB.Where("actor_key_id = ?", manager.Key.ID).Order("id").Find(&events)
		if len(events) != 3 || events[0].Action != keys.ActionCreated || events[0].ActorLabel != manager.Key.Hint || events[2].Action != keys.ActionRevoked {
			t.Fatalf("audit events by the key: %+v", events)
		}
	})
}

func TestVerifyEndpoint(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	k := f.key(t, func(in *keys.CreateInput) { in.Permission, in.Scopes = keys.PermCustom, []string{"files:*"} })
	revoked := f.key(t, nil)
	f.app.Keys.Revoke(t.Context(), f.ws, f.actor, revoked.Key.ID)

	verify := func(token string, body any) apiResp {
		t.Helper()
		return call(t, f.app, "POST", "/v1/keys/verify", token, body)
	}
	if r := verify("", map[string]any{"key": k.Secret}); r.Status != 401 {
		t.Fatalf("no service token: %d", r.Status)
	}
	if r := verify(k.Secret, map[string]any{"key": k.Secret}); r.Status != 401 {
		t.Fatalf("an API key as the service token: %d", r.Status)
	}
	cases := []struct {
		body  map[string]any
		valid bool
		code  string
	}{
		{map[string]any{"key": k.Secret, "scopes": []string{"files:write"}}, true, "VALID"},
		{map[string]any{"key": k.Secret, "scopes": []string{"projects:read"}}, false, "INSUFFICIENT_SCOPE"},
		{map[string]any{"key": "ks_sk_live_short"}, false, "MALFORMED"},
		{map[string]any{"key": keys.Generate("ks", keys.Secret, keys.Live)}, false, "NOT_FOUND"},
		{map[string]any{"key": revoked.Secret}, false, "REVOKED"},
	}
	for _, tc := range cases {
		r := verify(serviceToken, tc.body)
		if r.Status != 200 || r.Body["valid"] != tc.valid || r.Body["code"] != tc.code {
			t.Errorf("verify %v: %d %s", tc.body, r.Status, r.Raw)
		}
	}
	r := verify(serviceToken, map[string]any{"key": k.Secret})
	rl := r.Body["ratelimit"].(map[string]any)
	if r.Body["key_id"].(float64) != float64(k.Key.ID) || r.Body["workspace_id"].(float64) != float64(f.ws) || r.Body["environment"] != "live" || rl["limit"].(float64) != 1000 || rl["remaining"].(float64) != 997 {
		t.Fatalf("verify body (the third use of the key): %s", r.Raw)
	}
	one := 1
	f.app.Keys.SetRateLimits(t.Context(), f.ws, f.actor, k.Key.ID, keys.LimitSettings{PerMinute: &one})
	verify(serviceToken, map[string]any{"key": k.Secret})
	if r := verify(serviceToken, map[string]any{"key": k.Secret}); r.Body["code"] != "RATE_LIMITED" || r.Body["valid"] != false {
		t.Fatalf("verify past the limit: %s", r.Raw)
	}
	f.app.Clock.Advance(31 * 24 * time.Hour)
	if r := verify(serviceToken, map[string]any{"key": k.Secret}); r.Body["code"] != "EXPIRED" {
		t.Fatalf("verify an expired key: %s", r.Raw)
	}
	if err := f.app.Flusher.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	var stored models.APIKey
	f.app.DB.Take(&stored, k.Key.ID)
	if stored.LastUsedAt == nil {
		t.Fatal("a verification did not count as a use")
	}
}

func TestAPIKeysNeverReachTheLogs(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	k := f.key(t, nil)
	call(t, f.app, "GET", "/v1/auth/test", k.Secret, nil)
	call(t, f.app, "GET", "/v1/auth/test?api_key="+k.Secret, "", nil)
	call(t, f.app, "GET", "/v1/keys", k.Secret, nil)
	logs := f.app.Logs.String()
	if !strings.Contains(logs, "path=/v1/auth/test") {
		t.Fatalf("no request logs:\n%s", logs)
	}
	if strings.Contains(logs, k.Secret[len("ks_sk_live_"):]) {
		t.Fatal("a key reached the logs")
	}
}

func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	r := call(t, app, "GET", "/v1/openapi.json", "", nil)
	if r.Status != 200 || r.Body["openapi"] != "3.0.3" {
		t.Fatalf("openapi.json: %d", r.Status)
	}
	documented := map[string]bool{}
	for path, ops := range r.Body["paths"].(map[string]any) {
		for method := range ops.(map[string]any) {
			if method != "parameters" {
				documented[strings.ToUpper(method)+" "+path] = true
			}
		}
	}
	served := map[string]bool{}
	for _, rt := range app.Echo.Routes() {
		api := strings.HasPrefix(rt.Path, "/v1/") || strings.HasPrefix(rt.Path, "/oauth/") || strings.HasPrefix(rt.Path, "/.well-known/")
		if api && !strings.HasSuffix(rt.Path, "*") && rt.Path != "/v1/openapi.json" {
			served[rt.Method+" "+strings.ReplaceAll(rt.Path, ":id", "{id}")] = true
		}
	}
	for k := range served {
		if !documented[k] {
			t.Errorf("%s is served but not documented", k)
		}
	}
	for k := range documented {
		if !served[k] {
			t.Errorf("%s is documented but not served", k)
		}
	}
}

// otherLast changes a key's last character, so its checksum no longer
// matches (replacing it with a fixed letter would keep it one time in 62).
func otherLast(secret string) string {
	last := "x"
	if strings.HasSuffix(secret, last) {
		last = "y"
	}
	return secret[:len(secret)-1] + last
}

// PATCH /v1/keys/{id} changes the fields sent and no others, all or none;
// limits need an admin key; null returns a limit to its default.
func TestUpdateKeyAPI(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newAPIFixture(t, dbURL)
		admin := f.key(t, func(in *keys.CreateInput) { in.Permission = keys.PermAdmin })
		writer := f.key(t, func(in *keys.CreateInput) {
			in.Permission, in.Scopes = keys.PermCustom, []string{"keys:*", "files:read", "projects:read", "members:read", "webhooks:read"}
		})
		target := f.key(t, func(in *keys.CreateInput) { in.Name = "uploader" })
		path := fmt.Sprintf("/v1/keys/%d", target.Key.ID)

		r := call(t, f.app, "PATCH", path, admin.Secret, map[string]any{"description": "nightly", "rate_limit": 5, "daily_quota": 1000})
		if r.Status != 200 || r.Body["name"] != "uploader" || r.Body["description"] != "nightly" || r.Body["rate_limit"] != 5.0 ||
			r.Body["daily_quota"] != 1000.0 || r.Body["hourly_quota"] != nil {
			t.Fatalf("patch: %d %s", r.Status, r.Raw)
		}
		// The limit is in force at once: the sixth request in a minute is refused.
		for i := range 6 {
			if r := call(t, f.app, "GET", "/v1/auth/test", target.Secret, nil); (i < 5) != (r.Status == 200) {
				t.Fatalf("request %d under a limit of 5: %d", i+1, r.Status)
			}
		}
		if r := call(t, f.app, "PATCH", path, admin.Secret, map[string]any{"rate_limit": nil}); r.Status != 200 || r.Body["rate_limit"] != 1000.0 || r.Body["daily_quota"] != 1000.0 {
			t.Errorf("rate_limit null: %d %s", r.Status, r.Raw)
		}
		// A keys:write key may rename a key it covers, but not change limits.
		if r := call(t, f.app, "PATCH", path, writer.Secret, map[string]any{"name": "renamed"}); r.Status != 200 || r.Body["name"] != "renamed" {
			t.Errorf("rename with a write key: %d %s", r.Status, r.Raw)
		}
		r = call(t, f.app, "PATCH", path, writer.Secret, map[string]any{"name": "again", "rate_limit": 10})
		if _, code := r.errorCode(t); r.Status != 403 || code != "insufficient_scope" {
			t.Errorf("limits with a write key: %d %s", r.Status, r.Raw)
		}
		// All or none: a bad quota leaves the name as it was.
		r = call(t, f.app, "PATCH", path, admin.Secret, map[string]any{"name": "half", "hourly_quota": 1})
		if _, code := r.errorCode(t); r.Status != 422 || code != "validation_failed" {
			t.Errorf("hourly quota under the limit: %d %s", r.Status, r.Raw)
		}
		for _, body := range []any{map[string]any{"nme": "typo"}, map[string]any{"rate_limit": "fast"}} {
			if r := call(t, f.app, "PATCH", path, admin.Secret, body); r.Status != 400 {
				t.Errorf("bad body %v: %d %s", body, r.Status, r.Raw)
			}
		}
		if got := call(t, f.app, "GET", path, admin.Secret, nil); got.Body["name"] != "renamed" {
			t.Errorf("after refused patches the name is %v", got.Body["name"])
		}
		var limited int64
		f.app.DB.Model(&models.AuditEvent{}).Where("action = ? AND key_id = ?", keys.ActionLimited, target.Key.ID).Count(&limited)
		if limited != 2 {
			t.Errorf("%d limit changes audited, want 2", limited)
		}
	})
}

// Disabling pauses a key over the API: refused as disabled_api_key (and
// DISABLED by verify, invalid_grant by the token exchange) until enabled;
// both idempotent; a revoked key can be neither.
func TestDisableEnableAPI(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newAPIFixture(t, dbURL)
		admin := f.key(t, func(in *keys.CreateInput) { in.Permission = keys.PermAdmin })
		target := f.key(t, nil)
		path := fmt.Sprintf("/v1/keys/%d", target.Key.ID)
		for range 2 {
			if r := call(t, f.app, "POST", path+"/disable", admin.Secret, nil); r.Status != 200 || r.Body["status"] != "disabled" {
				t.Fatalf("disable: %d %s", r.Status, r.Raw)
			}
		}
		r := call(t, f.app, "GET", "/v1/auth/test", target.Secret, nil)
		if _, code := r.errorCode(t); r.Status != 401 || code != "disabled_api_key" {
			t.Errorf("a disabled key: %d %s", r.Status, r.Raw)
		}
		if r := call(t, f.app, "POST", "/v1/keys/verify", serviceToken, map[string]any{"key": target.Secret}); r.Body["code"] != "DISABLED" {
			t.Errorf("verify a disabled key: %s", r.Raw)
		}
		if status, body, _ := exchange(t, f.app, target.Secret); status != 400 || body["error"] != "invalid_grant" {
			t.Errorf("exchange a disabled key: %d %v", status, body)
		}
		if r := call(t, f.app, "GET", "/v1/keys?status=disabled", admin.Secret, nil); r.Body["total"] != 1.0 {
			t.Errorf("status=disabled: %s", r.Raw)
		}
		if r := call(t, f.app, "POST", path+"/enable", admin.Secret, nil); r.Status != 200 || r.Body["status"] != "active" {
			t.Fatalf("enable: %d %s", r.Status, r.Raw)
		}
		if r := call(t, f.app, "GET", "/v1/auth/test", target.Secret, nil); r.Status != 200 {
			t.Errorf("an enabled key: %d %s", r.Status, r.Raw)
		}
		call(t, f.app, "DELETE", path, admin.Secret, nil)
		r = call(t, f.app, "POST", path+"/disable", admin.Secret, nil)
		if _, code := r.errorCode(t); r.Status != 422 || code != "key_not_active" {
			t.Errorf("disable a revoked key: %d %s", r.Status, r.Raw)
		}
	})
}
