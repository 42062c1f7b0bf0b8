// Package deploy holds the reverse-proxy configurations Keysmith ships
// (docs/PROXIES.md). Its tests run the nginx and Caddy ones as shipped,
// with only their three addresses changed, between a client, Keysmith and
// a small upstream that records what it receives.
package deploy

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"keysmith/accounts"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
)

// upstream is the operator's API: it records each request it receives.
type upstream struct {
	mu       sync.Mutex
	received []*http.Request
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.received = append(u.received, r.Clone(r.Context()))
	u.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"from":"upstream"}`)
}

// last is the last request the upstream received, and how many it has.
func (u *upstream) last() (*http.Request, int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.received) == 0 {
		return nil, 0
	}
	return u.received[len(u.received)-1], len(u.received)
}

// freeAddr is a loopback address nothing listens on (yet).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proxyBinary finds a proxy's binary; CI (KEYSMITH_E2E) installs them, so
// there a missing one fails rather than skips.
func proxyBinary(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("KEYSMITH_E2E") != "" {
			t.Fatalf("%s is not installed (.ci/run installs it)", name)
		}
		t.Skipf("%s is not installed", name)
	}
	return path
}

// config is a shipped configuration with its three addresses replaced.
func config(t *testing.T, file string, replace ...string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.NewReplacer(replace...).Replace(string(b))
}

// start runs a proxy until the test ends and waits until addr answers.
func start(t *testing.T, addr string, cmd *exec.Cmd) {
	t.Helper()
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, so that nginx's workers go with their master.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s said:\n%s", cmd.Path, out.String())
		}
	})
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not listen on %s:\n%s", cmd.Path, addr, out.String())
}

func startNginx(t *testing.T, proxy, keysmith, api string) {
	bin := proxyBinary(t, "nginx")
	dir, err := os.MkdirTemp("", "keysmith-nginx-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755) // nginx's workers drop root
	os.MkdirAll(filepath.Join(dir, "tmp"), 0o755)
	conf := filepath.Join(dir, "nginx.conf")
	text := config(t, "nginx/nginx.conf", "127.0.0.1:8088", proxy, "127.0.0.1:8080", keysmith, "127.0.0.1:9000", api)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	start(t, proxy, exec.Command(bin, "-e", "stderr", "-p", dir, "-c", conf))
}

func startCaddy(t *testing.T, proxy, keysmith, api string) {
	bin := proxyBinary(t, "caddy")
	dir := t.TempDir()
	_, port, _ := net.SplitHostPort(proxy)
	conf := filepath.Join(dir, "Caddyfile")
	text := config(t, "caddy/Caddyfile", "http://:8088", "http://:"+port, "127.0.0.1:8080", keysmith, "127.0.0.1:9000", api)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", conf, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	start(t, proxy, cmd)
}

// answer is what the client got through the proxy.
type answer struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    string
}

func (a answer) code() string {
	e, _ := a.Body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func (a answer) requestID() string {
	e, _ := a.Body["error"].(map[string]any)
	id, _ := e["request_id"].(string)
	return id
}

func send(t *testing.T, method, url, key string, header map[string]string) answer {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
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
	a := answer{Status: res.StatusCode, Header: res.Header, Raw: string(raw)}
	if err := json.Unmarshal(raw, &a.Body); err != nil {
		t.Fatalf("%s %s through the proxy answered non-JSON (%d): %q", method, url, res.StatusCode, raw)
	}
	return a
}

func TestShippedProxyConfigs(t *testing.T) {
	for _, p := range []struct {
		name  string
		start func(t *testing.T, proxy, keysmith, api string)
	}{
		{"nginx", startNginx},
		{"caddy", startCaddy},
	} {
		t.Run(p.name, func(t *testing.T) {
			app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
			api := &upstream{}
			apiServer := httptest.NewServer(api)
			t.Cleanup(apiServer.Close)
			proxy := freeAddr(t)
			p.start(t, proxy, strings.TrimPrefix(app.Server.URL, "http://"), strings.TrimPrefix(apiServer.URL, "http://"))
			base := "http://" + proxy

			ctx := t.Context()
			u, err := app.Accounts.SignUp(ctx, accounts.SignUpInput{Email: "ops@example.com", Name: "Ops", Password: "long enough pw"})
			if err != nil {
				t.Fatal(err)
			}
			ms, _ := app.Accounts.Memberships(ctx, u.ID)
			ws, actor := ms[0].WorkspaceID, app.Keys.UserActor(u, models.RoleOwner, "192.0.2.1", "test")
			mint := func() keys.Created {
				c, err := app.Keys.Create(ctx, ws, actor, keys.CreateInput{Name: "client", Kind: keys.Secret, Env: keys.Live, Permission: keys.PermRead, ExpiresIn: "30"})
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
			read := mint()

			// No key: 401 with SPEC §6's body, and the upstream never asked.
			a := send(t, "GET", base+"/files/1", "", nil)
			if a.Status != 401 || a.code() != "missing_api_key" || a.requestID() == "" || a.requestID() != a.Header.Get("X-Request-Id") || a.Header.Get("WWW-Authenticate") == "" {
				t.Fatalf("no key: %d %v %s", a.Status, a.Header, a.Raw)
			}
			if _, n := api.last(); n != 0 {
				t.Fatalf("a request without a key reached the upstream")
			}

			// Allowed: the upstream learns who called; a client's forged
			// identity headers never reach it.
			// Spelt with underscores too: a CGI-style API (PHP, Rack, WSGI)
			// reads X_Keysmith_Key_Id as X-Keysmith-Key-Id.
			forged := map[string]string{"X-Keysmith-Key-Id": "999", "X-Keysmith-Scopes": "*", "X-Keysmith-Workspace-Id": "1",
				"X_Keysmith_Key_Id": "999", "x-keysmith_scopes": "*", "X_KEYSMITH-TOKEN_TYPE": "api_key"}
			underscored := func(r *http.Request) {
				t.Helper()
				for name := range r.Header {
					if strings.Contains(name, "_") && strings.Contains(strings.ToLower(name), "keysmith") {
						t.Errorf("the upstream got the client's %s: %q", name, r.Header[name])
					}
				}
			}
			a = send(t, "GET", base+"/files/1?x=1", read.Secret, forged)
			r, n := api.last()
			if a.Status != 200 || a.Body["from"] != "upstream" || n != 1 {
				t.Fatalf("allowed: %d %s", a.Status, a.Raw)
			}
			if r.Method != "GET" || r.URL.RequestURI() != "/files/1?x=1" || r.Header.Get("Authorization") == "" {
				t.Errorf("upstream got %s %s", r.Method, r.URL.RequestURI())
			}
			for name, want := range map[string]string{
				"X-Keysmith-Key-Id":       strconv.FormatInt(read.Key.ID, 10),
				"X-Keysmith-Workspace-Id": strconv.FormatInt(ws, 10),
				"X-Keysmith-Environment":  "live",
				"X-Keysmith-Token-Type":   "api_key",
			} {
				if got := r.Header.Values(name); len(got) != 1 || got[0] != want {
					t.Errorf("upstream's %s = %q, want %q", name, got, want)
				}
			}
			if s := r.Header.Get("X-Keysmith-Scopes"); !strings.Contains(s, "files:read") || strings.Contains(s, "*") {
				t.Errorf("upstream's X-Keysmith-Scopes = %q", s)
			}
			underscored(r)
			// A public route: no key needed, and nobody named.
			a = send(t, "GET", base+"/status", "", forged)
			r, _ = api.last()
			if a.Status != 200 || r.URL.Path != "/status" {
				t.Fatalf("public route: %d %s", a.Status, a.Raw)
			}
			for name := range forged {
				if v := r.Header.Get(name); v != "" {
					t.Errorf("a public route's upstream request carries the client's %s: %q", name, v)
				}
			}
			underscored(r)

			// Refusals reach the client as Keysmith wrote them.
			for _, tc := range []struct {
				name, method, path string
				status             int
				code               string
			}{
				{"a scope the key lacks", "POST", "/files", 403, "insufficient_scope"},
				{"a route no rule matches", "GET", "/admin", 403, "route_not_allowed"},
			} {
				_, before := api.last()
				a := send(t, tc.method, base+tc.path, read.Secret, nil)
				if a.Status != tc.status || a.code() != tc.code || a.requestID() != a.Header.Get("X-Request-Id") {
					t.Errorf("%s: %d %s", tc.name, a.Status, a.Raw)
				}
				if _, after := api.last(); after != before {
					t.Errorf("%s: the upstream was asked", tc.name)
				}
			}
			if a := send(t, "GET", base+"/files?api_key="+read.Secret, "", nil); a.Status != 400 || a.code() != "key_in_query_string" {
				t.Errorf("a key in the query string: %d %s", a.Status, a.Raw)
			}

			// Past the key's limit: 429 with Retry-After.
			limited, limit := mint(), 1
			if _, err := app.Keys.SetRateLimits(ctx, ws, actor, limited.Key.ID, keys.LimitSettings{PerMinute: &limit}); err != nil {
				t.Fatal(err)
			}
			if a := send(t, "GET", base+"/files", limited.Secret, nil); a.Status != 200 {
				t.Fatalf("within a limit of 1: %d %s", a.Status, a.Raw)
			}
			a = send(t, "GET", base+"/files", limited.Secret, nil)
			if a.Status != 429 || a.code() != "rate_limit_exceeded" || a.Header.Get("Retry-After") == "" || a.Header.Get("RateLimit-Limit") != "1" {
				t.Errorf("past the limit: %d %v %s", a.Status, a.Header, a.Raw)
			}

			// Revoked in the dashboard: refused on the next request.
			if _, err := app.Keys.Revoke(ctx, ws, actor, read.Key.ID); err != nil {
				t.Fatal(err)
			}
			if a := send(t, "GET", base+"/files/1", read.Secret, nil); a.Status != 401 || a.code() != "revoked_api_key" {
				t.Errorf("revoked key: %d %s", a.Status, a.Raw)
			}
		})
	}
}
