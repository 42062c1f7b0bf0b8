package handlers_test

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"keysmith/accounts"
	"keysmith/config"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
)

// An attacker's burst of parallel wrong passwords, with the right one in
// the middle, through the real login form: at most the limit is
// evaluated, the rest get 429, and nothing answers 5xx.
func TestLoginBurstThroughHTTP(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL)
		if _, err := app.Accounts.SignUp(t.Context(), accounts.SignUpInput{Email: "ada@example.com", Password: password}); err != nil {
			t.Fatal(err)
		}
		const burst = 100
		// Every client fetches its form first, so the burst is only posts.
		forms := make([]url.Values, burst)
		clients := make([]*testutil.Client, burst)
		for i := range burst {
			clients[i] = app.NewClient(t)
			page := clients[i].Get("/login")
			forms[i] = url.Values{
				"_csrf":    {page.Doc.Find("input[name=_csrf]").AttrOr("value", "")},
				"email":    {"ada@example.com"},
				"password": {"wrong horse"},
			}
		}
		forms[burst/2].Set("password", password)

		var mu sync.Mutex
		statuses := map[int]int{}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range burst {
			wg.Go(func() {
				<-start
				req, _ := http.NewRequest(http.MethodPost, app.URL("/login"), strings.NewReader(forms[i].Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				client := *clients[i].HTTP
				client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
				res, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				res.Body.Close()
				mu.Lock()
				statuses[res.StatusCode]++
				mu.Unlock()
			})
		}
		close(start)
		wg.Wait()
		t.Logf("statuses: %v", statuses)
		// At most the limit of wrong passwords reach bcrypt; the right one,
		// if it got through, resets the count as any login does.
		evaluated := statuses[http.StatusUnauthorized] + statuses[http.StatusSeeOther]
		if wrong := statuses[http.StatusUnauthorized]; wrong > accounts.MaxFailuresPerUser && statuses[http.StatusSeeOther] == 0 ||
			wrong > 2*accounts.MaxFailuresPerUser-1 {
			t.Errorf("%d wrong passwords evaluated (%d logged in), want at most %d", wrong, statuses[http.StatusSeeOther], accounts.MaxFailuresPerUser)
		}
		if statuses[http.StatusTooManyRequests] != burst-evaluated {
			t.Errorf("statuses %v: want only 401, 303 and 429", statuses)
		}
	})
}

// rawCall sends a body as it is, with a content type: call encodes JSON
// through it; tests call it directly for what JSON cannot express
// (invalid UTF-8, form bodies).
func rawCall(t *testing.T, app *testutil.App, method, path, key, contentType, body string) apiResp {
	t.Helper()
	req, _ := http.NewRequest(method, app.URL(path), strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("User-Agent", "keysmith-test/1.0")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := apiResp{Status: res.StatusCode, Header: res.Header, Raw: string(raw)}
	if err := json.Unmarshal(raw, &out.Body); err != nil {
		t.Fatalf("%s %s answered non-JSON (%d): %s", method, path, res.StatusCode, raw)
	}
	return out
}

// Text that no column can hold (NUL, invalid UTF-8) is refused at the edge
// with 400 on every route that takes text, logged in or not, on both
// engines: never a 5xx from the database.
func TestUnstorableTextIsRefusedEverywhere(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newAPIFixture(t, dbURL)
		app := f.app
		admin := f.key(t, func(in *keys.CreateInput) { in.Permission = keys.PermAdmin })
		owner, _ := logIn(t, app, "owner@example.com", "long enough pw")
		token := csrfOf(owner.Get("/settings/api-keys/new"))
		anon := app.NewClient(t)
		anonToken := csrfOf(anon.Get("/login"))
		keyID := fmt.Sprint(admin.Key.ID)

		bad := map[string]string{"NUL": "a\x00b", "invalid UTF-8": "a\xffb"}
		type route struct {
			method, path string
			client       *testutil.Client // nil: the API
			field        string           // the form field, or "" when the text goes in the path or query
		}
		routes := []route{
			{"POST", "/login", anon, "email"},
			{"POST", "/signup", anon, "name"},
			{"POST", "/signup", anon, "email"},
			{"POST", "/forgot-password", anon, "email"},
			{"GET", "/unsubscribe/{}", anon, ""},
			{"POST", "/unsubscribe/{}", anon, ""},
			{"GET", "/invitations/{}", anon, ""},
			{"GET", "/reset-password?token={}", anon, ""},
			{"GET", "/signup/confirm?token={}", anon, ""},
			{"POST", "/settings/api-keys", owner, "name"},
			{"POST", "/settings/api-keys", owner, "description"},
			{"POST", "/settings/api-keys/" + keyID, owner, "name"},
			{"GET", "/settings/api-keys?status={}", owner, ""},
			{"GET", "/settings/audit-log?actor={}", owner, ""},
			{"GET", "/settings/audit-log?action={}&from={}", owner, ""},
			{"POST", "/settings/team/invitations", owner, "email"},
			{"POST", "/settings/workspace", owner, "name"},
			{"POST", "/settings/account/password", owner, "new_password"},
			{"GET", "/v1/keys?status={}", nil, ""},
			{"GET", "/v1/keys/{}", nil, ""},
		}
		for name, text := range bad {
			for _, r := range routes {
				t.Run(name+" "+r.method+" "+r.path+" "+r.field, func(t *testing.T) {
					path := strings.ReplaceAll(r.path, "{}", url.QueryEscape(text))
					if r.client == nil {
						res := rawCall(t, app, r.method, path, admin.Secret, "", "")
						if typ, code := res.errorCode(t); res.Status != http.StatusBadRequest || typ != "invalid_request_error" || code != "invalid_encoding" {
							t.Fatalf("%d %s %s", res.Status, typ, code)
						}
						return
					}
					form := url.Values{"_csrf": {token}}
					if r.client == anon {
						form.Set("_csrf", anonToken)
					}
					if r.field != "" {
						form.Set(r.field, text)
						form.Set("password", "long enough pw")
					}
					var page *testutil.Page
					if r.method == "GET" {
						page = r.client.Get(path)
					} else {
						page = r.client.PostForm(path, form)
					}
					if page.Status != http.StatusBadRequest || !strings.Contains(page.Text("main"), "cannot be stored") {
						t.Fatalf("%d: %s", page.Status, page.Text("main"))
					}
				})
			}
		}

		// JSON bodies: a NUL, raw or escaped, and invalid UTF-8 in any string.
		bodies := map[string]string{
			"escaped NUL in a value": `{"name":"a\u0000b","permission":"read"}`,
			"escaped NUL in a scope": `{"name":"ok","permission":"custom","scopes":["files:read\u0000"]}`,
			"escaped NUL in a key":   `{"na\u0000me":"ok"}`,
			"invalid UTF-8":          "{\"name\":\"a\xffb\",\"permission\":\"read\"}",
		}
		for name, body := range bodies {
			t.Run("POST /v1/keys "+name, func(t *testing.T) {
				res := rawCall(t, app, "POST", "/v1/keys", admin.Secret, "application/json", body)
				if _, code := res.errorCode(t); res.Status != http.StatusBadRequest || code != "invalid_body" {
					t.Fatalf("%d %s", res.Status, res.Raw)
				}
			})
		}
		verify := rawCall(t, app, "POST", "/v1/keys/verify", serviceToken, "application/json", `{"key":"ks_sk_live_\u0000"}`)
		if _, code := verify.errorCode(t); verify.Status != http.StatusBadRequest || code != "invalid_body" {
			t.Fatalf("verify: %d %s", verify.Status, verify.Raw)
		}
		// Ordinary non-ASCII text is welcome.
		ok := call(t, app, "POST", "/v1/keys", admin.Secret, map[string]any{"name": "Zürich — 東京 🔑", "permission": "read"})
		if ok.Status != http.StatusCreated || ok.Body["name"] != "Zürich — 東京 🔑" {
			t.Fatalf("unicode name: %d %s", ok.Status, ok.Raw)
		}
		// A client's User-Agent in Latin-1 is stored, made valid, without
		// failing the batched last-used write.
		req, _ := http.NewRequest("GET", app.URL("/v1/auth/test"), nil)
		req.Header.Set("Authorization", "Bearer "+admin.Secret)
		req.Header.Set("User-Agent", "curl/8 caf\xe9")
		if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 200 {
			t.Fatalf("latin-1 user agent: %v %v", res, err)
		}
		if err := app.Usage.Flush(t.Context()); err != nil {
			t.Fatalf("flush with a latin-1 user agent: %v", err)
		}
		var k models.APIKey
		app.DB.Take(&k, admin.Key.ID)
		if k.LastUsedUserAgent != "curl/8 caf\uFFFD" {
			t.Errorf("stored user agent %v", k.LastUsedUserAgent)
		}
	})
}

// expires_in is bounded (no overflow into the past), and a bare
// expires_on means that date rather than "never".
func TestExpiryBounds(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	admin := f.key(t, func(in *keys.CreateInput) { in.Permission = keys.PermAdmin })
	now := f.app.Clock.Now()
	cases := []struct {
		body   map[string]any
		field  string        // the refused field, or ""
		expiry time.Duration // when accepted: how far ahead
	}{
		{map[string]any{"expires_in": "200000"}, "expires_in", 0},
		{map[string]any{"expires_in": "9223372036854775807"}, "expires_in", 0},
		{map[string]any{"expires_in": "-3"}, "expires_in", 0},
		{map[string]any{"expires_in": "3s"}, "expires_in", 0},
		{map[string]any{"expires_in": "2562047h"}, "expires_in", 0},
		{map[string]any{"expires_in": "custom", "expires_on": "9999-12-31"}, "expires_on", 0},
		{map[string]any{"expires_in": "3650"}, "", 3650 * 24 * time.Hour},
		{map[string]any{"expires_in": "36h"}, "", 36 * time.Hour},
		{map[string]any{"expires_on": now.AddDate(0, 0, 10).Format("2006-01-02")}, "", 10*24*time.Hour + (24*time.Hour - time.Second) - time.Duration(now.Hour())*time.Hour},
	}
	for _, tc := range cases {
		body := map[string]any{"name": "bounded", "permission": "read"}
		maps.Copy(body, tc.body)
		r := call(t, f.app, "POST", "/v1/keys", admin.Secret, body)
		if tc.field != "" {
			if _, code := r.errorCode(t); r.Status != http.StatusUnprocessableEntity || code != "validation_failed" ||
				!strings.HasPrefix(r.Body["error"].(map[string]any)["message"].(string), tc.field+":") {
				t.Errorf("%v: %d %s, want a refusal on %s", tc.body, r.Status, r.Raw, tc.field)
			}
			continue
		}
		exp, err := time.Parse(time.RFC3339, fmt.Sprint(r.Body["expires_at"]))
		if r.Status != http.StatusCreated || err != nil || exp.Sub(now) != tc.expiry {
			t.Errorf("%v: %d expires_at %v, want %s ahead", tc.body, r.Status, r.Body["expires_at"], tc.expiry)
		}
	}
}

// RFC 6750 challenges, JSON-only bodies and the right field names at the
// API's edges.
func TestAPIEdges(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	admin := f.key(t, func(in *keys.CreateInput) { in.Permission = keys.PermAdmin })
	reader := f.key(t, nil)

	challenges := []struct {
		name, key, want string
		status          int
	}{
		{"no key", "", `Bearer realm="keysmith"`, 401},
		{"unknown key", "ks_sk_live_" + strings.Repeat("a", 38), `Bearer realm="keysmith", error="invalid_token"`, 401},
	}
	for _, c := range challenges {
		r := call(t, f.app, "GET", "/v1/auth/test", c.key, nil)
		if r.Status != c.status || r.Header.Get("WWW-Authenticate") != c.want {
			t.Errorf("%s: %d WWW-Authenticate %q, want %q", c.name, r.Status, r.Header.Get("WWW-Authenticate"), c.want)
		}
	}
	if _, err := f.app.Keys.Revoke(t.Context(), f.ws, f.actor, reader.Key.ID); err != nil {
		t.Fatal(err)
	}
	if r := call(t, f.app, "GET", "/v1/auth/test", reader.Secret, nil); r.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("revoked key: %d without WWW-Authenticate", r.Status)
	}
	if r := call(t, f.app, "GET", "/v1/keys", f.key(t, func(in *keys.CreateInput) { in.Permission = keys.PermCustom; in.Scopes = []string{"files:read"} }).Secret, nil); r.Status != 403 ||
		r.Header.Get("WWW-Authenticate") != `Bearer realm="keysmith", error="insufficient_scope"` {
		t.Errorf("insufficient scope: %d %q", r.Status, r.Header.Get("WWW-Authenticate"))
	}

	form := rawCall(t, f.app, "POST", "/v1/keys", admin.Secret, "application/x-www-form-urlencoded", "name=deploy&permission=read")
	if _, code := form.errorCode(t); form.Status != http.StatusBadRequest || code != "invalid_body" {
		t.Errorf("form-encoded create: %d %s", form.Status, form.Raw)
	}
	if r := rawCall(t, f.app, "POST", "/v1/keys/verify", serviceToken, "text/plain", `{"key":"x"}`); r.Status != http.StatusBadRequest {
		t.Errorf("verify with text/plain: %d %s", r.Status, r.Raw)
	}

	r := call(t, f.app, "POST", fmt.Sprintf("/v1/keys/%d/rotate", admin.Key.ID), admin.Secret, map[string]any{"grace_period": "2h"})
	if msg, _ := r.Body["error"].(map[string]any)["message"].(string); r.Status != http.StatusUnprocessableEntity || !strings.HasPrefix(msg, "grace_period: ") {
		t.Errorf("rotate with an unsupported grace: %d %s", r.Status, r.Raw)
	}
}

// The CSRF token is taken from the body or header only, never from the
// query string, and it changes at login and logout.
func TestCSRFTokenHygiene(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	c := signUp(t, app, "ada@example.com")
	page := c.Get("/settings/workspace")
	token := csrfOf(page)
	if token == "" {
		t.Fatal("no CSRF token on the page")
	}
	inQuery := c.PostForm("/settings/workspace?_csrf="+url.QueryEscape(token), url.Values{"name": {"Renamed by a link"}})
	if inQuery.Status < 400 || inQuery.Status >= 500 {
		t.Fatalf("token in the query string: %d", inQuery.Status)
	}
	both := c.PostForm("/settings/workspace?_csrf="+url.QueryEscape(token), url.Values{"_csrf": {"wrong"}, "name": {"Renamed by a link"}})
	if both.Status < 400 {
		t.Fatalf("a wrong body token rescued by the query's: %d", both.Status)
	}
	if p := c.Get("/settings/workspace"); strings.Contains(p.Body, "Renamed by a link") {
		t.Fatal("the workspace was renamed")
	}
	if ok := c.Submit(c.Get("/settings/workspace"), "form[action='/settings/workspace']", map[string]string{"name": "Renamed"}); ok.Status != 200 {
		t.Fatalf("the same token in the body: %d", ok.Status)
	}

	// Log out: the old token no longer passes; log in: it changes again.
	loggedOut := c.Submit(c.Get("/settings/account"), ".topbar form[action='/logout']", nil)
	afterLogout := csrfOf(loggedOut)
	if afterLogout == "" || afterLogout == token {
		t.Fatalf("token after logout %q, before %q", afterLogout, token)
	}
	if p := c.PostForm("/login", url.Values{"_csrf": {token}, "email": {"ada@example.com"}, "password": {password}}); p.Status < 400 || p.Status >= 500 {
		t.Fatalf("login with the token of the ended session: %d", p.Status)
	}
	loggedIn := c.Submit(c.Get("/login"), "form[action='/login']", map[string]string{"email": "ada@example.com", "password": password})
	if now := csrfOf(loggedIn); now == "" || now == afterLogout || now == token {
		t.Fatalf("token after login %q (logged out: %q)", now, afterLogout)
	}
}

// A newcomer finds the demo login on the login page while the demo
// account keeps its documented password, and not after it changes.
func TestLoginPageShowsTheDemoLogin(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"), testutil.WithConfig(func(c *config.Config) { c.Demo = true }))
	if ok, err := app.SeedDemo(t.Context()); err != nil || !ok {
		t.Fatalf("seed demo: %v %v", ok, err)
	}
	c := app.NewClient(t)
	if got := c.Get("/login").Text(".demo-login"); !strings.Contains(got, accounts.DemoEmail) || !strings.Contains(got, accounts.DemoPassword) {
		t.Fatalf("demo login on the login page: %q", got)
	}
	c.Submit(c.Get("/login"), "form[action='/login']", map[string]string{"email": accounts.DemoEmail, "password": accounts.DemoPassword})
	page := c.Submit(c.Get("/settings/account"), "form[action='/settings/account/password']", map[string]string{"current_password": accounts.DemoPassword, "new_password": "a private password"})
	if page.Status != 200 {
		t.Fatalf("change the demo password: %d", page.Status)
	}
	if got := app.NewClient(t).Get("/login").Text(".demo-login"); got != "" {
		t.Fatalf("demo login still shown after its password changed: %q", got)
	}
}

// The public forms cannot flood an inbox: an address gets at most a few
// account mails an hour, whatever is asked; past them both forms say so
// (handlers/throttle_test.go: alike for accounts and unknown addresses).
func TestAccountMailsAreLimitedPerAddress(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	signUp(t, app, "ada@example.com") // one confirmation mail
	mailsTo := func(addr string) int {
		n := 0
		for _, m := range app.Mails() {
			if m.To[0] == addr {
				n++
			}
		}
		return n
	}
	var statuses []int
	for range 4 {
		c := app.NewClient(t)
		p := c.Submit(c.Get("/signup"), "form[action='/signup']", map[string]string{"email": "ada@example.com", "password": "long enough pw"})
		statuses = append(statuses, p.Status)
		p = c.Submit(c.Get("/forgot-password"), "form[action='/forgot-password']", map[string]string{"email": "ada@example.com"})
		statuses = append(statuses, p.Status)
	}
	if want := []int{200, 200, 429, 429, 429, 429, 429, 429}; fmt.Sprint(statuses) != fmt.Sprint(want) {
		t.Fatalf("answers %v, want %v: refused once the limit is reached", statuses, want)
	}
	// The confirmation of the account's own sign-up counts too.
	if got := mailsTo("ada@example.com"); got != accounts.MailsPerAddressPerHour {
		t.Fatalf("%d mails to the address in an hour, want %d", got, accounts.MailsPerAddressPerHour)
	}
	app.Clock.Advance(time.Hour)
	c := app.NewClient(t)
	c.Submit(c.Get("/forgot-password"), "form[action='/forgot-password']", map[string]string{"email": "ada@example.com"})
	if got := mailsTo("ada@example.com"); got != accounts.MailsPerAddressPerHour+1 {
		t.Fatalf("an hour later: %d mails, want one more", got)
	}
}

// What the outside check found after the first pass: a Content-Type in
// capitals slipped past the text check, a Latin-1 User-Agent failed every
// audited write on PostgreSQL, and a huge key-policy number overflowed.
func TestEdgeCasesFoundByTheAttack(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newAPIFixture(t, dbURL)
		owner, _ := logIn(t, f.app, "owner@example.com", "long enough pw")
		token := csrfOf(owner.Get("/settings/workspace"))

		for _, ct := range []string{"APPLICATION/X-WWW-FORM-URLENCODED", "Application/x-www-form-urlencoded; charset=UTF-8"} {
			req, _ := http.NewRequest("POST", f.app.URL("/settings/workspace"), strings.NewReader(url.Values{"_csrf": {token}, "name": {"a\x00b"}}.Encode()))
			req.Header.Set("Content-Type", ct)
			if p := owner.Do(req); p.Status != http.StatusBadRequest {
				t.Errorf("NUL with Content-Type %q: %d", ct, p.Status)
			}
		}

		admin := f.key(t, func(in *keys.CreateInput) { in.Permission = keys.PermAdmin })
		req, _ := http.NewRequest("POST", f.app.URL("/v1/keys"), strings.NewReader(`{"name":"latin-1 agent","permission":"read"}`))
		req.Header.Set("Authorization", "Bearer "+admin.Secret)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "Evil\xffAgent")
		res, err := http.DefaultClient.Do(req)
		if err != nil || res.StatusCode != http.StatusCreated {
			t.Fatalf("create with a Latin-1 User-Agent: %v %v", res.Status, err)
		}
		var ev models.AuditEvent
		f.app.DB.Where("key_label LIKE ?", "latin-1 agent%").Take(&ev)
		if ev.UserAgent != "Evil\uFFFDAgent" {
			t.Errorf("audit user agent %q", ev.UserAgent)
		}

		for _, days := range []string{"2147483648", "9223372036854775807", "213504", "3651"} {
			p := owner.PostForm("/settings/workspace/key-policy", url.Values{"_csrf": {token}, "max_lifetime_days": {days}})
			if p.Status != http.StatusUnprocessableEntity {
				t.Errorf("maximum lifetime of %s days: %d", days, p.Status)
			}
		}
	})
}
