package handlers_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"keysmith/config"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
	"keysmith/tokens"
)

// callFrom is call with X-Forwarded-For set to from, as a reverse proxy in
// front of Keysmith would send it.
func callFrom(t *testing.T, app *testutil.App, method, path, key, from string, body any) apiResp {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, app.URL(path), rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("X-Forwarded-For", from)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := apiResp{Status: res.StatusCode, Header: res.Header, Raw: string(raw)}
	_ = json.Unmarshal(raw, &out.Body)
	return out
}

// Behind a trusted proxy the client's address comes from X-Forwarded-For:
// a key pinned to addresses and networks (IPv4 and IPv6) answers requests
// from them and refuses the rest with 403 ip_not_allowed. Without
// KEYSMITH_TRUST_PROXY the header is ignored: anyone could write it.
func TestAllowlistUsesTheClientAddress(t *testing.T) {
	pinned := func(in *keys.CreateInput) {
		in.AllowedIPs = []string{"203.0.113.7", "198.51.100.0/24", "2001:db8::/32"}
	}
	trusted := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"), testutil.WithConfig(func(c *config.Config) { c.TrustProxy = true }))
	k := trusted.key(t, pinned)
	cases := []struct {
		from string
		want int
	}{
		{"203.0.113.7", 200},
		{"203.0.113.8", 403},
		{"198.51.100.200", 200},
		{"2001:db8:42::1", 200},
		{"2001:db9::1", 403},
		{"192.0.2.1, 203.0.113.7", 200}, // the proxy appended the client it saw last
		{"203.0.113.7, 192.0.2.1", 403}, // a client that wrote the header itself
	}
	for _, c := range cases {
		r := callFrom(t, trusted.app, "GET", "/v1/auth/test", k.Secret, c.from, nil)
		if r.Status != c.want {
			t.Errorf("from %s: %d %s, want %d", c.from, r.Status, r.Raw, c.want)
			continue
		}
		if r.Status == 403 {
			if typ, code := r.errorCode(t); typ != "permission_error" || code != "ip_not_allowed" {
				t.Errorf("from %s: %s %s", c.from, typ, code)
			}
		}
	}

	direct := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	k = direct.key(t, pinned)
	if r := callFrom(t, direct.app, "GET", "/v1/auth/test", k.Secret, "203.0.113.7", nil); r.Status != 403 {
		t.Fatalf("an untrusted X-Forwarded-For was believed: %d", r.Status)
	}
	loopback := direct.key(t, func(in *keys.CreateInput) { in.AllowedIPs = []string{"127.0.0.0/8", "::1"} })
	if r := callFrom(t, direct.app, "GET", "/v1/auth/test", loopback.Secret, "203.0.113.99", nil); r.Status != 200 {
		t.Fatalf("from the connection's own address: %d %s", r.Status, r.Raw)
	}
}

// A temporary token derived from a pinned key is pinned too, through its
// key: the exchange from elsewhere is refused, and a token exchanged from
// an allowed address is refused from any other; narrowing the key's list
// narrows its tokens at once.
func TestTokensObeyTheirKeysAllowlist(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"), testutil.WithConfig(func(c *config.Config) { c.TrustProxy = true }))
	admin := f.key(t, func(in *keys.CreateInput) { in.Permission, in.AllowedIPs = keys.PermAdmin, []string{"203.0.113.0/24"} })
	exchangeFrom := func(from string) (int, map[string]any) {
		req, _ := http.NewRequest("POST", f.app.URL(tokens.TokenPath), strings.NewReader(exchangeForm(admin.Secret).Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", from)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(res.Body).Decode(&body)
		return res.StatusCode, body
	}
	if status, body := exchangeFrom("192.0.2.1"); status != 400 || body["error"] != "invalid_grant" || body["error_description"] == "" {
		t.Fatalf("exchange from outside: %d %v", status, body)
	}
	status, body := exchangeFrom("203.0.113.5")
	if status != 200 {
		t.Fatalf("exchange from inside: %d %v", status, body)
	}
	token := body["access_token"].(string)
	if r := callFrom(t, f.app, "GET", "/v1/auth/test", token, "203.0.113.6", nil); r.Status != 200 {
		t.Fatalf("the token from inside: %d %s", r.Status, r.Raw)
	}
	r := callFrom(t, f.app, "GET", "/v1/auth/test", token, "192.0.2.1", nil)
	if _, code := r.errorCode(t); r.Status != 403 || code != "ip_not_allowed" {
		t.Fatalf("the token from outside: %d %s", r.Status, r.Raw)
	}
	// Verify applies the same rule to tokens, with the address it is given.
	if r := call(t, f.app, "POST", "/v1/keys/verify", serviceToken, map[string]any{"key": token, "ip": "192.0.2.1"}); r.Body["code"] != "IP_NOT_ALLOWED" || r.Body["valid"] != false {
		t.Fatalf("verify a token from outside: %s", r.Raw)
	}
	if _, err := f.app.Keys.Update(t.Context(), f.ws, f.actor, admin.Key.ID, keys.UpdateInput{AllowedIPs: keys.Set([]string{"203.0.113.5"})}); err != nil {
		t.Fatal(err)
	}
	if r := callFrom(t, f.app, "GET", "/v1/auth/test", token, "203.0.113.6", nil); r.Status != 403 {
		t.Fatalf("the token after its key's list narrowed: %d", r.Status)
	}
}

// Verify takes the client's address in "ip": IP_NOT_ALLOWED outside the
// key's allowlist, and for a pinned key verified without one; a key with
// no allowlist verifies from anywhere; an ip that is no address is 400.
func TestVerifyWithIP(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	pinned := f.key(t, func(in *keys.CreateInput) { in.AllowedIPs = []string{"10.0.0.0/8", "2001:db8::1"} })
	open := f.key(t, nil)
	cases := []struct {
		body map[string]any
		code string
	}{
		{map[string]any{"key": pinned.Secret, "ip": "10.1.2.3"}, "VALID"},
		{map[string]any{"key": pinned.Secret, "ip": "2001:db8::1"}, "VALID"},
		{map[string]any{"key": pinned.Secret, "ip": "::ffff:10.9.9.9"}, "VALID"},
		{map[string]any{"key": pinned.Secret, "ip": "11.0.0.1"}, "IP_NOT_ALLOWED"},
		{map[string]any{"key": pinned.Secret, "ip": "2001:db8::2"}, "IP_NOT_ALLOWED"},
		{map[string]any{"key": pinned.Secret}, "IP_NOT_ALLOWED"},
		{map[string]any{"key": open.Secret}, "VALID"},
		{map[string]any{"key": open.Secret, "ip": "11.0.0.1"}, "VALID"},
	}
	for _, c := range cases {
		r := call(t, f.app, "POST", "/v1/keys/verify", serviceToken, c.body)
		if r.Status != 200 || r.Body["code"] != c.code || r.Body["valid"] != (c.code == "VALID") {
			t.Errorf("verify %v: %d %s, want %s", c.body, r.Status, r.Raw, c.code)
		}
		if c.code == "IP_NOT_ALLOWED" && r.Body["key_id"] != float64(pinned.Key.ID) {
			t.Errorf("IP_NOT_ALLOWED without the key's id: %s", r.Raw)
		}
	}
	r := call(t, f.app, "POST", "/v1/keys/verify", serviceToken, map[string]any{"key": pinned.Secret, "ip": "10.0.0.0/8"})
	if _, code := r.errorCode(t); r.Status != 400 || code != "invalid_body" {
		t.Fatalf("an ip that is a network: %d %s", r.Status, r.Raw)
	}
	// A verification from the named address records it as the last use.
	if err := f.app.Flusher.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	var k models.APIKey
	f.app.DB.Take(&k, pinned.Key.ID)
	if k.LastUsedIP != "::ffff:10.9.9.9" {
		t.Fatalf("last used from %q, not a client's address", k.LastUsedIP)
	}
}

// PATCH and create take allowed_ips, check it, answer it canonical, and
// audit the change; rotation through the API keeps it; a key that may not
// write keys may not change it.
func TestAllowedIPsThroughTheAPI(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	admin := f.key(t, func(in *keys.CreateInput) { in.Permission = keys.PermAdmin })
	reader := f.key(t, func(in *keys.CreateInput) { in.Permission, in.Scopes = keys.PermCustom, []string{"keys:read"} })
	created := call(t, f.app, "POST", "/v1/keys", admin.Secret, map[string]any{"name": "pinned", "permission": "read", "allowed_ips": []string{"203.0.113.7/32", "2001:DB8::/32"}})
	if created.Status != 201 || strings.Join(stringsOf(created.Body["allowed_ips"]), " ") != "203.0.113.7 2001:db8::/32" {
		t.Fatalf("create: %d %s", created.Status, created.Raw)
	}
	id := created.Body["id"].(float64)
	path := "/v1/keys/" + jsonNumber(id)
	if r := call(t, f.app, "POST", "/v1/keys", admin.Secret, map[string]any{"name": "bad", "permission": "read", "allowed_ips": []string{"example.com"}}); r.Status != 422 || !strings.Contains(r.Raw, "allowed_ips") {
		t.Fatalf("create with a bad entry: %d %s", r.Status, r.Raw)
	}
	cases := []struct {
		body   any
		status int
		code   string
	}{
		{map[string]any{"allowed_ips": "203.0.113.7"}, 400, "invalid_body"},
		{map[string]any{"allowed_ips": []any{1}}, 400, "invalid_body"},
		{map[string]any{"allowed_ips": []string{"10.1.2.3/8"}}, 422, "validation_failed"},
		{map[string]any{"allowed_ips": []string{"300.1.1.1"}}, 422, "validation_failed"},
	}
	for _, c := range cases {
		r := call(t, f.app, "PATCH", path, admin.Secret, c.body)
		if _, code := r.errorCode(t); r.Status != c.status || code != c.code {
			t.Errorf("PATCH %v: %d %s", c.body, r.Status, r.Raw)
		}
	}
	if r := call(t, f.app, "PATCH", path, reader.Secret, map[string]any{"allowed_ips": nil}); r.Status != 403 {
		t.Fatalf("a keys:read key emptied the list: %d %s", r.Status, r.Raw)
	}
	r := call(t, f.app, "PATCH", path, admin.Secret, map[string]any{"allowed_ips": []string{"198.51.100.0/24", "198.51.100.0/24"}, "name": "moved"})
	if r.Status != 200 || strings.Join(stringsOf(r.Body["allowed_ips"]), " ") != "198.51.100.0/24" || r.Body["name"] != "moved" {
		t.Fatalf("PATCH: %d %s", r.Status, r.Raw)
	}
	if r := call(t, f.app, "GET", path, reader.Secret, nil); strings.Join(stringsOf(r.Body["allowed_ips"]), " ") != "198.51.100.0/24" {
		t.Fatalf("GET: %s", r.Raw)
	}
	var ev models.AuditEvent
	if err := f.app.DB.Where("action = ?", keys.ActionIPs).Order("id DESC").Take(&ev).Error; err != nil || ev.Detail != "allowed from 198.51.100.0/24 (was 203.0.113.7 2001:db8::/32)" || ev.ActorKeyID == nil {
		t.Fatalf("audit: %+v %v", ev, err)
	}
	rotated := call(t, f.app, "POST", path+"/rotate", admin.Secret, map[string]any{"grace_period": "1h"})
	if rotated.Status != 201 || strings.Join(stringsOf(rotated.Body["allowed_ips"]), " ") != "198.51.100.0/24" {
		t.Fatalf("rotate: %d %s", rotated.Status, rotated.Raw)
	}
	if r := call(t, f.app, "GET", "/v1/auth/test", rotated.Body["secret"].(string), nil); r.Status != 403 {
		t.Fatalf("the rotated key from outside its list: %d", r.Status)
	}
	r = call(t, f.app, "PATCH", "/v1/keys/"+jsonNumber(rotated.Body["id"].(float64)), admin.Secret, map[string]any{"allowed_ips": nil})
	if r.Status != 200 || r.Raw == "" || len(stringsOf(r.Body["allowed_ips"])) != 0 || !strings.Contains(r.Raw, `"allowed_ips":[]`) {
		t.Fatalf("emptying the list: %d %s", r.Status, r.Raw)
	}
}

func stringsOf(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

func jsonNumber(f float64) string { return fmt.Sprint(int64(f)) }
