package handlers_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"keysmith/keys"
	"keysmith/testutil"
)

type decision struct {
	Status int
	Header http.Header
	Body   map[string]any // a refusal's JSON; nil for an empty body
	Raw    string
}

// code is a refusal's error code, from its body, checked against the
// X-Keysmith-Error header.
func (d decision) code(t *testing.T) string {
	t.Helper()
	e, ok := d.Body["error"].(map[string]any)
	if !ok {
		t.Fatalf("not an error body: %d %q", d.Status, d.Raw)
	}
	if d.Header.Get("X-Keysmith-Error") != e["code"] {
		t.Errorf("X-Keysmith-Error %q, body's code %q", d.Header.Get("X-Keysmith-Error"), e["code"])
	}
	return e["code"].(string)
}

// ask sends a proxy's question to Keysmith: method and path are the
// request to /v1/authz itself, header what the proxy adds.
func ask(t *testing.T, app *testutil.App, method, path, key string, header map[string]string) decision {
	t.Helper()
	req, _ := http.NewRequest(method, app.URL(path), nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	d := decision{Status: res.StatusCode, Header: res.Header, Raw: string(raw)}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &d.Body); err != nil {
			t.Fatalf("%s %s answered non-JSON (%d): %s", method, path, res.StatusCode, raw)
		}
	}
	return d
}

// forwarded is how Traefik and Caddy ask: GET /v1/authz with the original
// request in X-Forwarded-Method and X-Forwarded-Uri.
func forwarded(method, uri string) map[string]string {
	return map[string]string{"X-Forwarded-Method": method, "X-Forwarded-Uri": uri}
}

func TestForwardAuthAllowsWithIdentityHeaders(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newAPIFixture(t, dbURL)
		k := f.key(t, func(in *keys.CreateInput) { in.Permission = keys.PermWrite; in.Env = keys.Test })
		// Traefik and Caddy: the original request in X-Forwarded-*; a
		// client's own X-Keysmith-* headers change nothing.
		h := forwarded("DELETE", "/files/42?force=true")
		h["X-Keysmith-Key-Id"], h["X-Keysmith-Scopes"] = "1", "*"
		d := ask(t, f.app, "GET", "/v1/authz", k.Secret, h)
		if d.Status != http.StatusOK || d.Raw != "" {
			t.Fatalf("allowed decision: %d %q", d.Status, d.Raw)
		}
		for name, want := range map[string]string{
			"X-Keysmith-Key-Id":       itoa(k.Key.ID),
			"X-Keysmith-Workspace-Id": itoa(f.ws),
			"X-Keysmith-Environment":  "test",
			"X-Keysmith-Token-Type":   "api_key",
			"RateLimit-Limit":         "1000",
		} {
			if got := d.Header.Get(name); got != want {
				t.Errorf("%s = %q, want %q", name, got, want)
			}
		}
		if scopes := d.Header.Get("X-Keysmith-Scopes"); !strings.Contains(scopes, "files:write") || strings.Contains(scopes, "*") {
			t.Errorf("X-Keysmith-Scopes = %q", scopes)
		}
		// Envoy: its own method, the original path after /v1/authz.
		if d := ask(t, f.app, "PUT", "/v1/authz/projects/7?x=1", k.Secret, nil); d.Status != http.StatusOK || d.Header.Get("X-Keysmith-Key-Id") != itoa(k.Key.ID) {
			t.Fatalf("Envoy's shape: %d %q", d.Status, d.Raw)
		}
		if d := ask(t, f.app, "POST", "/v1/authz/members", k.Secret, nil); d.Status != http.StatusForbidden || d.code(t) != "insufficient_scope" {
			t.Fatalf("Envoy's shape, a scope the key lacks: %d %q", d.Status, d.Raw)
		}
		// ingress-nginx: X-Original-Method and the full X-Original-URL.
		d = ask(t, f.app, "GET", "/v1/authz", k.Secret, map[string]string{"X-Original-Method": "PATCH", "X-Original-Url": "https://api.example.com/files/9?v=2"})
		if d.Status != http.StatusOK {
			t.Fatalf("ingress-nginx's shape: %d %q", d.Status, d.Raw)
		}
		if d := ask(t, f.app, "GET", "/v1/authz", k.Secret, map[string]string{"X-Original-Method": "POST", "X-Original-Url": "https://api.example.com/members"}); d.Status != http.StatusForbidden {
			t.Fatalf("ingress-nginx's shape, a scope the key lacks: %d %q", d.Status, d.Raw)
		}
		// A derived token is the key's: same key id, its own type.
		tok := exchangeToken(t, f.app, k.Secret, "files:read")
		d = ask(t, f.app, "GET", "/v1/authz", tok, forwarded("GET", "/files"))
		if d.Status != http.StatusOK || d.Header.Get("X-Keysmith-Token-Type") != "jwt" || d.Header.Get("X-Keysmith-Key-Id") != itoa(k.Key.ID) || d.Header.Get("X-Keysmith-Scopes") != "files:read" {
			t.Fatalf("derived token: %d %v", d.Status, d.Header)
		}
		if d := ask(t, f.app, "GET", "/v1/authz", tok, forwarded("DELETE", "/files/1")); d.Status != http.StatusForbidden || d.code(t) != "insufficient_scope" {
			t.Fatalf("derived token beyond its scopes: %d %q", d.Status, d.Raw)
		}
	})
}

func TestForwardAuthRefusals(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newAPIFixture(t, dbURL)
		read := f.key(t, nil)
		pinned := f.key(t, func(in *keys.CreateInput) { in.AllowedIPs = []string{"203.0.113.7"} })
		for _, tc := range []struct {
			name, key  string
			header     map[string]string
			status     int
			code       string
			challenged bool
		}{
			{"no key", "", forwarded("GET", "/files"), 401, "missing_api_key", true},
			{"not a key", "ks_sk_live_nope", forwarded("GET", "/files"), 401, "invalid_api_key", true},
			{"a route no rule matches", read.Secret, forwarded("GET", "/admin/users"), 403, "route_not_allowed", false},
			{"a method no rule matches", read.Secret, forwarded("TRACE", "/files"), 403, "route_not_allowed", false},
			{"a path not in canonical form", read.Secret, forwarded("GET", "/files/../members"), 403, "route_not_allowed", false},
			{"a dot segment in disguise", read.Secret, forwarded("GET", "/files/..%2fmembers"), 403, "route_not_allowed", false}, // not GET /files/{id}
			{"the route's scope not held", read.Secret, forwarded("POST", "/files"), 403, "insufficient_scope", true},
			{"outside the allowed IPs", pinned.Secret, forwarded("GET", "/files"), 403, "ip_not_allowed", false},
			{"a key in the forwarded query", "", forwarded("GET", "/files?api_key="+read.Secret), 400, "key_in_query_string", false},
		} {
			d := ask(t, f.app, "GET", "/v1/authz", tc.key, tc.header)
			if d.Status != tc.status || d.code(t) != tc.code {
				t.Errorf("%s: %d %q, want %d %s", tc.name, d.Status, d.Raw, tc.status, tc.code)
			}
			if got := d.Header.Get("WWW-Authenticate") != ""; got != tc.challenged {
				t.Errorf("%s: WWW-Authenticate %q", tc.name, d.Header.Get("WWW-Authenticate"))
			}
			if d.Header.Get("X-Keysmith-Key-Id") != "" {
				t.Errorf("%s: a refusal names a key", tc.name)
			}
		}
		// A public route needs no key, and names nobody: its identity
		// headers are there, empty, to replace a client's.
		d := ask(t, f.app, "GET", "/v1/authz", "", forwarded("GET", "/status"))
		if _, sent := d.Header["X-Keysmith-Key-Id"]; d.Status != http.StatusOK || !sent || d.Header.Get("X-Keysmith-Key-Id") != "" || d.Header.Get("X-Keysmith-Scopes") != "" {
			t.Fatalf("public route: %d %v", d.Status, d.Header)
		}

		// Past the key's limit: 429 with Retry-After; revoked: refused on
		// the next decision.
		limit := 1
		if _, err := f.app.Keys.SetRateLimits(t.Context(), f.ws, f.actor, read.Key.ID, keys.LimitSettings{PerMinute: &limit}); err != nil {
			t.Fatal(err)
		}
		if d := ask(t, f.app, "GET", "/v1/authz", read.Secret, forwarded("GET", "/files")); d.Status != http.StatusOK {
			t.Fatalf("first request within a limit of 1: %d %q", d.Status, d.Raw)
		}
		d = ask(t, f.app, "GET", "/v1/authz", read.Secret, forwarded("GET", "/files"))
		if d.Status != http.StatusTooManyRequests || d.code(t) != "rate_limit_exceeded" || d.Header.Get("Retry-After") == "" {
			t.Fatalf("past the limit: %d %v %q", d.Status, d.Header, d.Raw)
		}
		// nginx's auth_request takes only 401 and 403: the true status and
		// body travel in headers for the shipped config to answer with.
		d = ask(t, f.app, "GET", "/v1/authz", read.Secret, map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/files", "X-Keysmith-Proxy": "nginx"})
		if d.Status != http.StatusForbidden || d.Header.Get("X-Keysmith-Status") != "429" || d.Header.Get("Retry-After") == "" {
			t.Fatalf("nginx, past the limit: %d %v", d.Status, d.Header)
		}
		var body map[string]map[string]any
		if err := json.Unmarshal([]byte(d.Header.Get("X-Keysmith-Body")), &body); err != nil || body["error"]["code"] != "rate_limit_exceeded" || body["error"]["request_id"] != d.Header.Get("X-Request-Id") {
			t.Fatalf("nginx, X-Keysmith-Body %q: %v", d.Header.Get("X-Keysmith-Body"), err)
		}
		if d := ask(t, f.app, "GET", "/v1/authz", "", map[string]string{"X-Forwarded-Uri": "/files", "X-Keysmith-Proxy": "nginx"}); d.Status != http.StatusUnauthorized || d.Header.Get("X-Keysmith-Status") != "401" {
			t.Fatalf("nginx, no key: %d %v", d.Status, d.Header)
		}

		if _, err := f.app.Keys.Revoke(t.Context(), f.ws, f.actor, pinned.Key.ID); err != nil {
			t.Fatal(err)
		}
		if d := ask(t, f.app, "GET", "/v1/authz", pinned.Secret, forwarded("GET", "/files")); d.Status != http.StatusUnauthorized || d.code(t) != "revoked_api_key" {
			t.Fatalf("revoked key: %d %q", d.Status, d.Raw)
		}
	})
}

// A proxy overwrites the headers it sets and passes on every other header
// a client sent. ingress-nginx sets X-Original-*, not X-Forwarded-*; the
// shipped nginx config the reverse; Envoy sets none. A client's own copy
// of a header its proxy does not set must not choose the request Keysmith
// judges: the API behind the proxy serves the request line.
func TestForwardAuthIgnoresNoClientsForwardedHeaders(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	read := f.key(t, nil) // every :read scope, no :write
	ingress := func(method, url string, client map[string]string) map[string]string {
		h := map[string]string{"X-Original-Method": method, "X-Original-Url": url}
		for k, v := range client {
			h[k] = v
		}
		return h
	}
	for _, tc := range []struct {
		name, method, path, key string
		header                  map[string]string
		status                  int
	}{
		{"ingress-nginx, the client's X-Forwarded-Method", "GET", "/v1/authz", read.Secret,
			ingress("DELETE", "http://api.example/files/1", map[string]string{"X-Forwarded-Method": "GET"}), 403},
		{"ingress-nginx, the client's X-Forwarded-* naming a public route", "GET", "/v1/authz", "",
			ingress("DELETE", "http://api.example/members/1", forwarded("GET", "/status")), 403},
		{"ingress-nginx, the client's X-Original-URI", "GET", "/v1/authz", "",
			ingress("GET", "http://api.example/members/1", map[string]string{"X-Original-Uri": "/status"}), 403},
		{"nginx, the client's X-Original-URL", "GET", "/v1/authz", "",
			map[string]string{"X-Forwarded-Method": "DELETE", "X-Forwarded-Uri": "/members/1", "X-Original-Method": "GET", "X-Original-Url": "http://x/status"}, 403},
		{"Envoy, the client's X-Forwarded-*", "DELETE", "/v1/authz/members/1", "", forwarded("GET", "/status"), 403}, // refused: they disagree with the line
		{"Envoy, the client's X-Original-*", "DELETE", "/v1/authz/files/1", read.Secret,
			map[string]string{"X-Original-Method": "GET", "X-Original-Url": "http://x/files/1"}, 403},
		// ingress-nginx's X-Original-URL is $scheme://$http_host$request_uri:
		// a Host with "?" or "#", or a raw "#" in the request line, must not
		// move what Keysmith reads as the path.
		{"ingress-nginx, a raw # before a dot segment", "GET", "/v1/authz", read.Secret,
			ingress("GET", "http://api.example/files/1#/../../admin", nil), 403},
		// A proxy pointed at /v1/authz/ (Traefik, ingress-nginx) by mistake:
		// its headers disagree with the line, which would read GET /.
		{"a trailing slash, X-Forwarded-*", "GET", "/v1/authz/", read.Secret, forwarded("DELETE", "/files/1"), 403},
	} {
		d := ask(t, f.app, tc.method, tc.path, tc.key, tc.header)
		if d.Status != tc.status {
			t.Errorf("%s: %d %q, want %d", tc.name, d.Status, d.Raw, tc.status)
		}
	}
	// A Host ending in "?" must not move the path: DELETE /files/1 is
	// judged, and the read key lacks its scope (not "/", no route).
	if d := ask(t, f.app, "GET", "/v1/authz", read.Secret, ingress("DELETE", "http://api.example?/files/1", nil)); d.Status != 403 || d.code(t) != "insufficient_scope" {
		t.Errorf("ingress-nginx, a Host ending in ?: %d %q, want 403 insufficient_scope", d.Status, d.Raw)
	}
	// Headers that agree are one request.
	if d := ask(t, f.app, "GET", "/v1/authz", read.Secret, ingress("GET", "http://api.example/files/1", forwarded("GET", "/files/1"))); d.Status != http.StatusOK {
		t.Errorf("agreeing headers: %d %q", d.Status, d.Raw)
	}
}

// A method override is a request the API serves as another method than
// the one the proxy names: Keysmith refuses one that names another.
func TestForwardAuthRefusesAMethodOverride(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	k := f.key(t, func(in *keys.CreateInput) {
		in.Permission = keys.PermCustom
		in.Scopes = []string{"files:read", "files:write"}
	})
	with := func(h map[string]string, name, value string) map[string]string {
		h[name] = value
		return h
	}
	for _, tc := range []struct {
		name   string
		path   string
		header map[string]string
		status int
	}{
		{"X-HTTP-Method-Override", "/v1/authz", with(forwarded("POST", "/files"), "X-HTTP-Method-Override", "DELETE"), 403},
		{"X-HTTP-Method", "/v1/authz", with(forwarded("POST", "/files"), "X-HTTP-Method", "PUT"), 403},
		{"X-Method-Override", "/v1/authz", with(forwarded("POST", "/files"), "X-Method-Override", "patch"), 403},
		{"_method in the query", "/v1/authz", forwarded("POST", "/files?_method=DELETE"), 403},
		{"Envoy, an override header", "/v1/authz/files", map[string]string{"X-HTTP-Method-Override": "DELETE"}, 403},
		{"the same method", "/v1/authz", with(forwarded("POST", "/files?_method=post"), "X-HTTP-Method-Override", "POST"), 200},
		{"an empty _method", "/v1/authz", forwarded("POST", "/files?_method=&x_method=DELETE"), 200},
		{"_method escaped in the query", "/v1/authz", forwarded("POST", "/files?%5Fmethod=DELETE"), 403},
		{".method in the query (PHP reads it as _method)", "/v1/authz", forwarded("POST", "/files?.method=DELETE"), 403},
		{"_method after a ;", "/v1/authz", forwarded("POST", "/files?a=1;_method=DELETE"), 403},
		{"an override header spelt with underscores", "/v1/authz", with(forwarded("POST", "/files"), "X_HTTP_Method_Override", "DELETE"), 403},
	} {
		method := "GET"
		if strings.HasPrefix(tc.path, "/v1/authz/") {
			method = "POST"
		}
		if d := ask(t, f.app, method, tc.path, k.Secret, tc.header); d.Status != tc.status {
			t.Errorf("%s: %d %q, want %d", tc.name, d.Status, d.Raw, tc.status)
		}
	}
}

// exchangeToken derives a token of scope from key (SPEC §9).
func exchangeToken(t *testing.T, app *testutil.App, key, scope string) string {
	t.Helper()
	status, body, _ := exchange(t, app, key, "scope", scope)
	tok, _ := body["access_token"].(string)
	if status != http.StatusOK || tok == "" {
		t.Fatalf("token exchange: %d %v", status, body)
	}
	return tok
}
