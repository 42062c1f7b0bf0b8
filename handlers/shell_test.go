package handlers_test

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"keysmith/assets"
	"keysmith/models"
	"keysmith/testutil"
)

func TestSecurityHeadersAndRequestID(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	page := app.NewClient(t).Get("/login")
	h := page.Header
	for name, want := range map[string]string{
		"X-Content-Type-Options": "nosniff",
		"X-Frame-Options":        "DENY",
		"Referrer-Policy":        "same-origin",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	csp := h.Get("Content-Security-Policy")
	for _, part := range []string{"script-src 'self'", "frame-ancestors 'none'", "default-src 'self'"} {
		if !strings.Contains(csp, part) {
			t.Errorf("CSP %q lacks %q", csp, part)
		}
	}
	if strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP allows inline code: %q", csp)
	}
	if page.Doc.Find("script:not([src])").Length() != 0 {
		t.Error("page has an inline script, which the CSP would block")
	}
	id := h.Get("X-Request-Id")
	if !strings.HasPrefix(id, "req_") || len(id) < 20 {
		t.Errorf("X-Request-Id = %q", id)
	}
	if !strings.Contains(app.Logs.String(), "request_id="+id) {
		t.Error("the request id is not in the request's log line")
	}
}

// TestAPIAnswersCarryTheirHeadersOnly: an API answer is JSON, never
// rendered, framed or followed, so it carries nosniff and none of the
// page headers; with them it would outgrow the eight headers that fit in
// Go's smallest header map, which cost the authenticated path a tenth of
// its throughput (docs/BENCHMARKS-notes.md).
func TestAPIAnswersCarryTheirHeadersOnly(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	r := call(t, f.app, "GET", "/v1/auth/test", f.key(t, nil).Secret, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("auth test: %d %s", r.Status, r.Raw)
	}
	var names []string
	for name := range r.Header {
		if name != "Date" && name != "Content-Length" { // the server's own
			names = append(names, name)
		}
	}
	slices.Sort(names)
	want := []string{"Content-Type", "Ratelimit", "Ratelimit-Limit", "Ratelimit-Policy", "Ratelimit-Remaining",
		"Ratelimit-Reset", "X-Content-Type-Options", "X-Request-Id"}
	if !slices.Equal(names, want) {
		t.Errorf("API answer headers %v, want %v", names, want)
	}
	if got := r.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options = %q", got)
	}
}

func TestNotFoundPages(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	page := app.NewClient(t).Get("/no/such/page")
	if page.Status != http.StatusNotFound || page.Text("h1") != "Page not found" {
		t.Fatalf("404 page: %d %q", page.Status, page.Text("h1"))
	}

	res, err := http.Get(app.URL("/v1/no-such-endpoint"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Cookies()) != 0 {
		t.Errorf("the API set cookies: %v", res.Cookies())
	}
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct {
		Error struct {
			Type      string `json:"type"`
			Code      string `json:"code"`
			Message   string `json:"message"`
			RequestID string `json:"request_id"`
		} `json:"error"`
	}
	raw, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("API 404 is not JSON: %s", raw)
	}
	if res.StatusCode != 404 || body.Error.Type != "invalid_request_error" || body.Error.Code != "not_found" ||
		body.Error.RequestID == "" || body.Error.RequestID != res.Header.Get("X-Request-Id") {
		t.Fatalf("API 404: %d %s", res.StatusCode, raw)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	for _, path := range []string{"/healthz", "/readyz"} {
		res, err := http.Get(app.URL(path))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Errorf("%s = %d", path, res.StatusCode)
		}
	}
	if err := models.Close(app.DB); err != nil {
		t.Fatal(err)
	}
	res, err := http.Get(app.URL("/readyz"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with the database closed = %d, want 503", res.StatusCode)
	}
	if res, _ := http.Get(app.URL("/healthz")); res.StatusCode != 200 {
		t.Fatalf("/healthz depends on the database: %d", res.StatusCode)
	}
}

func TestAssetsAreEmbeddedAndCached(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	page := app.NewClient(t).Get("/login")
	href, _ := page.Doc.Find(`link[rel=stylesheet]`).Attr("href")
	if href != assets.Path("app.css") {
		t.Fatalf("stylesheet %q, want the hashed %q", href, assets.Path("app.css"))
	}
	res, err := http.Get(app.URL(href))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(res.Header.Get("Cache-Control"), "immutable") || !strings.Contains(string(body), "--brand") {
		t.Fatalf("hashed asset: %d %q", res.StatusCode, res.Header.Get("Cache-Control"))
	}
	res, err = http.Get(app.URL("/assets/htmx.min.js?v=stale"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("stale asset URL: %d %q", res.StatusCode, res.Header.Get("Cache-Control"))
	}
}

func TestHTMXGetsFragments(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	c := signUp(t, app, "ada@example.com")
	req, _ := http.NewRequest(http.MethodGet, app.URL("/settings/team"), nil)
	req.Header.Set("HX-Request", "true")
	page := c.Do(req)
	if page.Doc.Find("nav.sidenav").Length() != 0 || page.Doc.Find("table").Length() != 1 {
		t.Fatalf("plain HTMX request got the whole layout:\n%s", page.Body)
	}
	req.Header.Set("HX-Boosted", "true")
	if page := c.Do(req); page.Doc.Find("nav.sidenav").Length() != 1 {
		t.Fatal("boosted navigation lost the layout")
	}
}

func TestWorkspaceSwitcher(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL)
		c := signUp(t, app, "ada@example.com")
		if page := c.Get("/settings/team"); page.Doc.Find("#workspace-switch").Length() != 0 {
			t.Fatal("switcher shown with a single workspace")
		}
		signUp(t, app, "bob@example.com")

		var ada, bob models.User
		app.DB.Where("email = ?", "ada@example.com").Take(&ada)
		app.DB.Where("email = ?", "bob@example.com").Take(&bob)
		var bobs models.Membership
		app.DB.Where("user_id = ?", bob.ID).Take(&bobs)
		if err := app.DB.Create(&models.Membership{WorkspaceID: bobs.WorkspaceID, UserID: ada.ID, Role: models.RoleViewer}).Error; err != nil {
			t.Fatal(err)
		}

		page := c.Get("/settings/team")
		if n := page.Doc.Find("#workspace-switch option").Length(); n != 2 {
			t.Fatalf("switcher has %d options, want 2", n)
		}
		page = c.Submit(page, "form.switcher", map[string]string{"workspace_id": itoa(bobs.WorkspaceID)})
		if page.Text(".flash") != "Switched to Ada Lovelace's workspace." {
			t.Fatalf("switch flash = %q", page.Text(".flash"))
		}
		page = c.Get("/settings/team")
		if got := page.Doc.Find("#workspace-switch option[selected]").AttrOr("value", ""); got != itoa(bobs.WorkspaceID) {
			t.Fatalf("selected workspace %q, want %d", got, bobs.WorkspaceID)
		}
		if page.Doc.Find("td .badge.viewer").Length() != 1 || page.Doc.Find("td .badge.owner").Length() != 1 {
			t.Fatalf("team of the switched-to workspace:\n%s", page.Body)
		}
		page = c.Get("/settings/audit-log")
		if page.Text(".empty h2") != "Admins only" {
			t.Errorf("a viewer sees the audit log: %q", page.Text(".empty h2"))
		}

		page = c.Submit(page, "form.switcher", map[string]string{"workspace_id": "999999"})
		if page.Status != http.StatusNotFound {
			t.Fatalf("switch to a foreign workspace: %d", page.Status)
		}
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
