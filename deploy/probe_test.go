package deploy

// A probe, not a regression test: KEYSMITH_PROBE=1 go test ./deploy -run
// TestProbe -v sends crafted raw requests through each shipped proxy and
// prints, for each, what Keysmith was asked (and answered) beside what the
// upstream received.

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"keysmith/accounts"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
)

type asked struct {
	method, uri, origMethod, origURI, origURL, line string
	status                                          int
}

type probeLog struct {
	mu       sync.Mutex
	asks     []asked
	upstream []string
}

func (p *probeLog) reset() (a []asked, u []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a, u = p.asks, p.upstream
	p.asks, p.upstream = nil, nil
	return
}

type statusRec struct {
	http.ResponseWriter
	status int
}

func (s *statusRec) WriteHeader(c int) { s.status = c; s.ResponseWriter.WriteHeader(c) }

func rawSend(t *testing.T, addr, req string) string {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	c.Write([]byte(req))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

func startNginxConf(t *testing.T, proxy, conf string) {
	bin := proxyBinary(t, "nginx")
	dir, _ := os.MkdirTemp("", "keysmith-nginx-")
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	os.MkdirAll(filepath.Join(dir, "tmp"), 0o755)
	f := filepath.Join(dir, "nginx.conf")
	os.WriteFile(f, []byte(conf), 0o644)
	start(t, proxy, exec.Command(bin, "-e", "stderr", "-p", dir, "-c", f))
}

func TestProbe(t *testing.T) {
	if os.Getenv("KEYSMITH_PROBE") == "" {
		t.Skip("KEYSMITH_PROBE=1 runs the probe")
	}
	only := os.Getenv("KEYSMITH_PROBE_PROXY")
	for _, name := range []string{"nginx", "caddy", "ingress"} {
		if only != "" && only != name {
			continue
		}
		t.Run(name, func(t *testing.T) {
			app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
			log := &probeLog{}
			ks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rec := &statusRec{ResponseWriter: w, status: 200}
				app.Server.Config.Handler.ServeHTTP(rec, r)
				log.mu.Lock()
				log.asks = append(log.asks, asked{r.Header.Get("X-Forwarded-Method"), r.Header.Get("X-Forwarded-Uri"),
					r.Header.Get("X-Original-Method"), r.Header.Get("X-Original-Uri"), r.Header.Get("X-Original-Url"),
					r.Method + " " + r.RequestURI, rec.status})
				log.mu.Unlock()
			}))
			t.Cleanup(ks.Close)
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var hs []string
				for k, v := range r.Header {
					if strings.Contains(strings.ToLower(k), "keysmith") || strings.Contains(strings.ToLower(k), "override") {
						hs = append(hs, fmt.Sprintf("%s=%q", k, v))
					}
				}
				sort.Strings(hs)
				log.mu.Lock()
				log.upstream = append(log.upstream, fmt.Sprintf("%s %s host=%q %s", r.Method, r.RequestURI, r.Host, strings.Join(hs, " ")))
				log.mu.Unlock()
				w.Write([]byte("{}"))
			}))
			t.Cleanup(api.Close)
			proxy := freeAddr(t)
			kaddr, aaddr := strings.TrimPrefix(ks.URL, "http://"), strings.TrimPrefix(api.URL, "http://")
			switch name {
			case "nginx":
				startNginx(t, proxy, kaddr, aaddr)
			case "caddy":
				startCaddy(t, proxy, kaddr, aaddr)
			case "ingress":
				// What ingress-nginx's template generates for auth-url, reduced
				// to the lines that matter (rootfs/etc/nginx/template/nginx.tmpl):
				// X-Original-URL and X-Original-Method set, every client header
				// passed (proxy_pass_request_headers on), and the ConfigMap's
				// X-Keysmith-Proxy: nginx.
				conf := `daemon off; worker_processes 1; pid nginx.pid; error_log stderr warn;
events {}
http { access_log off; client_body_temp_path tmp/cb; proxy_temp_path tmp/p; fastcgi_temp_path tmp/f; uwsgi_temp_path tmp/u; scgi_temp_path tmp/s;
 server { listen PROXY;
  location = /_external-auth {
    internal;
    proxy_pass_request_body off;
    proxy_set_header Content-Length "";
    proxy_set_header X-Forwarded-Proto "";
    proxy_set_header X-Request-ID $request_id;
    proxy_set_header Host keysmith;
    proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
    proxy_set_header X-Original-Method $request_method;
    proxy_set_header X-Sent-From "nginx-ingress-controller";
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Forwarded-For $remote_addr;
    proxy_set_header X-Auth-Request-Redirect $request_uri;
    proxy_pass_request_headers on;
    proxy_set_header 'X-Keysmith-Proxy' 'nginx';
    proxy_http_version 1.1;
    proxy_pass http://KS/v1/authz;
  }
  location / {
    auth_request /_external-auth;
    auth_request_set $authHeader0 $upstream_http_x_keysmith_key_id;
    proxy_set_header 'X-Keysmith-Key-Id' $authHeader0;
    auth_request_set $authHeader1 $upstream_http_x_keysmith_scopes;
    proxy_set_header 'X-Keysmith-Scopes' $authHeader1;
    proxy_set_header Host $http_host;
    proxy_http_version 1.1;
    proxy_pass http://API;
  }
 }
}`
				conf = strings.NewReplacer("PROXY", proxy, "KS", kaddr, "API", aaddr).Replace(conf)
				startNginxConf(t, proxy, conf)
			}

			ctx := t.Context()
			u, err := app.Accounts.SignUp(ctx, accounts.SignUpInput{Email: "ops@example.com", Name: "Ops", Password: "long enough pw"})
			if err != nil {
				t.Fatal(err)
			}
			ms, _ := app.Accounts.Memberships(ctx, u.ID)
			ws, actor := ms[0].WorkspaceID, app.Keys.UserActor(u, models.RoleOwner, "192.0.2.1", "test")
			c, err := app.Keys.Create(ctx, ws, actor, keys.CreateInput{Name: "client", Kind: keys.Secret, Env: keys.Live, Permission: keys.PermCustom, Scopes: []string{"files:read"}, ExpiresIn: "30"})
			if err != nil {
				t.Fatal(err)
			}
			auth := "Authorization: Bearer " + c.Secret + "\r\n"
			cases := strings.Split(os.Getenv("KEYSMITH_PROBE_CASES"), "\n")
			if os.Getenv("KEYSMITH_PROBE_CASES") == "" {
				cases = defaultProbes
			}
			for _, pc := range cases {
				if strings.TrimSpace(pc) == "" {
					continue
				}
				// "METHOD TARGET|extra header lines separated by \n escaped as ||"
				line, extra, _ := strings.Cut(pc, "|")
				hdrs := ""
				if extra != "" {
					for _, h := range strings.Split(extra, "|") {
						if h != "" {
							hdrs += h + "\r\n"
						}
					}
				}
				host := "Host: api.example\r\n"
				if strings.Contains(strings.ToLower(hdrs), "host:") {
					host = ""
				}
				a := auth
				if strings.Contains(hdrs, "NOKEY") {
					a, hdrs = "", strings.ReplaceAll(hdrs, "NOKEY\r\n", "")
				}
				got := rawSend(t, proxy, line+" HTTP/1.1\r\n"+host+a+hdrs+"Connection: close\r\n\r\n")
				time.Sleep(20 * time.Millisecond)
				as, ups := log.reset()
				t.Logf("\n>> %s  [%s]\n   client got: %s", line, strings.ReplaceAll(strings.TrimSpace(hdrs), "\r\n", " | "), got)
				for _, x := range as {
					t.Logf("   keysmith asked: %s  X-F-M=%q X-F-U=%q X-O-M=%q X-O-URI=%q X-O-URL=%q -> %d", x.line, x.method, x.uri, x.origMethod, x.origURI, x.origURL, x.status)
				}
				for _, x := range ups {
					t.Logf("   UPSTREAM got: %s", x)
				}
			}
		})
	}
}

var defaultProbes = []string{
	"GET /files/1",
	"DELETE /files/1",
	"GET /members/1",
	"GET /status",
	"DELETE /members/1|X-Forwarded-Method: GET|X-Forwarded-Uri: /status|NOKEY",
	"DELETE /files/1|X-Forwarded-Method: GET",
	"DELETE /files/1|X-Original-Method: GET",
	"GET /members/1|X-Original-URI: /files/1",
	"GET /members/1|X-Forwarded-Uri: /files/1",
	"GET /members/1|X-Original-URL: http://x/files/1",
	"GET /members/1|Host: a?|NOKEY",
	"GET /members/1|Host: a#",
	"GET http://evil/members/1",
	"GET http://evil/files/1",
	"GET /files/1#/../../members/1",
	"GET /files/1%23/../../members/1",
	"GET /files/x%2F..%2F..%2Fmembers%2F1",
	"GET /files/x%2Fmembers",
	"GET /files/%252e%252e",
	"GET /files/1%3F/../../members",
	"GET /files/1?/../../members/1",
	"GET //members/1",
	"GET /files//1",
	"GET /files/1/",
	"GET /FILES/1",
	"get /files/1",
	"HEAD /files/1",
	"POST /files/1|X-HTTP-Method-Override: DELETE|Content-Length: 0",
	"GET /files/1|X-HTTP-Method-Override: DELETE",
	"GET /files/1|X_Keysmith_Key_Id: 999|X_Keysmith_Scopes: *",
	"GET /status|X-Keysmith-Key-Id: 999|X_Keysmith_Key_Id: 999",
	"GET /files/\xc0\xae\xc0\xae/members",
	"GET /files/1\t/x",
	"GET /files/1%00",
	"GET /files/%2e",
	"GET /files/.%2e/members",
	"GET /files/1;/../members",
	"GET /files/..;/members",
	"GET /files/1\\..\\..\\members",
	"GET /files/1%5c..%5c..%5cmembers",
	"GET *",
	"OPTIONS *",
	"GET /files/a{b}",
	"GET /files/a%7bb",
	"GET /files/1\\x",
	"GET /files/42%2Fversions",
	"GET /files/1|X_Keysmith_Key_Id: 999|x_keysmith-scopes: *|X-KEYSMITH_TOKEN_TYPE: x",
	"GET /members/1|X-Original-URI: /status|NOKEY",
	"POST /files|X-HTTP-Method-Override: DELETE|Content-Length: 0",
	"POST /files?_method=DELETE|Content-Length: 0",
	"GET /files/1|X-Keysmith-Proxy: nginx",
}
