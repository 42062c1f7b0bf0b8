package handlers_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"keysmith/models"
	"keysmith/testutil"
)

// Pages behind login are never stored by the browser (Back after logout
// must not show them) and never enter htmx's history cache.
func TestPagesBehindLoginAreNotStored(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	c := signUp(t, app, "ada@example.com")
	for _, path := range []string{"/settings/api-keys", "/settings/team", "/settings/audit-log", "/settings/account", "/settings/api-keys/new"} {
		p := c.Get(path)
		if p.Status != http.StatusOK || p.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d, Cache-Control %q", path, p.Status, p.Header.Get("Cache-Control"))
		}
		if p.Doc.Find(`body[hx-history="false"]`).Length() != 1 || !strings.Contains(p.Doc.Find(`meta[name="htmx-config"]`).AttrOr("content", ""), `"historyCacheSize":0`) {
			t.Errorf("%s may enter htmx's history cache", path)
		}
	}
	if p := app.NewClient(t).Get("/login"); p.Header.Get("Cache-Control") == "no-store" {
		t.Error("the login page need not be no-store")
	}
}

// A boosted form answered with a page (refused, or showing a secret)
// leaves a URL that GET can load: the form's page, or the new object's.
func TestBoostedPostsLeaveAReloadableURL(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	c := signUp(t, app, "ada@example.com")
	boosted := func(path string, page *testutil.Page, fields url.Values) *testutil.Page {
		t.Helper()
		fields.Set("_csrf", csrfOf(page))
		req, _ := http.NewRequest(http.MethodPost, app.URL(path), strings.NewReader(fields.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("HX-Request", "true")
		req.Header.Set("HX-Boosted", "true")
		return c.Do(req)
	}
	team := c.Get("/settings/team")
	for _, tc := range []struct {
		path   string
		fields url.Values
		status int
	}{
		{"/settings/account/password", url.Values{"current_password": {"wrong"}, "new_password": {"another long password"}}, 422},
		{"/settings/team/invitations", url.Values{"email": {"nope"}, "role": {"editor"}}, 422},
		{"/settings/team/leave", url.Values{}, 409},
	} {
		p := boosted(tc.path, team, tc.fields)
		if p.Status != tc.status || p.Header.Get("HX-Push-Url") != "false" {
			t.Errorf("%s: %d, HX-Push-Url %q; want %d and the address bar left alone", tc.path, p.Status, p.Header.Get("HX-Push-Url"), tc.status)
		}
	}
	form := c.Get("/settings/api-keys/new")
	p := boosted("/settings/api-keys", form, url.Values{"nonce": {form.Doc.Find("input[name=nonce]").AttrOr("value", "")},
		"name": {"deploy"}, "kind": {"sk"}, "environment": {"test"}, "permission": {"read"}, "expires_in": {"30"}})
	secret := secretOf(t, p)
	push := p.Header.Get("HX-Push-Url")
	if p.Status != http.StatusCreated || !strings.HasPrefix(push, "/settings/api-keys/") {
		t.Fatalf("secret page: %d, HX-Push-Url %q", p.Status, push)
	}
	if again := c.Get(push); again.Status != http.StatusOK || strings.Contains(again.Body, secret) {
		t.Fatalf("reloading %s: %d, secret shown again: %v", push, again.Status, strings.Contains(again.Body, secret))
	}
}

// The one-time form guard stops a true double submission only: the same
// form posted again with the same values (a reload of the secret page) is
// refused, while its token with other values (the form restored by Back,
// a new name typed) makes another key.
func TestResubmissionGuardComparesWhatWasSubmitted(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	c := signUp(t, app, "ada@example.com")
	form := c.Get("/settings/api-keys/new")
	fields := map[string]string{"name": "first", "kind": "sk", "environment": "live", "permission": "read", "expires_in": "30"}
	secretOf(t, c.Submit(form, "form.key-form", fields))
	if again := c.Submit(form, "form.key-form", fields); !strings.Contains(again.Text(".flash"), "already created") || again.Doc.Find("#secret").Length() != 0 {
		t.Fatalf("the same form again: %d %q", again.Status, again.Text(".flash"))
	}
	fields["name"] = "second"
	if p := c.Submit(form, "form.key-form", fields); p.Status != http.StatusCreated {
		t.Fatalf("the restored form with a new name: %d %q", p.Status, p.Text(".flash"))
	}
	if again := c.Submit(form, "form.key-form", fields); !strings.Contains(again.Text(".flash"), "already created") {
		t.Fatalf("the second form again: %q", again.Text(".flash"))
	}
	var n int64
	app.DB.Model(&models.APIKey{}).Count(&n)
	if n != 2 {
		t.Fatalf("%d keys, want 2", n)
	}
}
