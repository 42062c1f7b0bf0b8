package handlers_test

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
)

var secretPattern = regexp.MustCompile(`^ks_(sk|pk)_(live|test)_[0-9A-Za-z]{38}$`)

// createKey fills the create form like a person would and returns the
// page that shows the secret.
func createKey(t *testing.T, c *testutil.Client, fields map[string]string) *testutil.Page {
	t.Helper()
	form := c.Get("/settings/api-keys/new")
	if form.Status != http.StatusOK {
		t.Fatalf("create form: %d", form.Status)
	}
	values := map[string]string{"name": "Billing worker", "kind": "sk", "environment": "live", "permission": "read", "expires_in": "30"}
	for k, v := range fields {
		values[k] = v
	}
	return c.Submit(form, "form.key-form", values)
}

func secretOf(t *testing.T, p *testutil.Page) string {
	t.Helper()
	s, _ := p.Doc.Find("#secret").Attr("value")
	if !secretPattern.MatchString(s) {
		t.Fatalf("no secret on the page (%d):\n%s", p.Status, p.Body)
	}
	return s
}

// addMember puts a new user into the owner's current workspace with role.
func addMember(t *testing.T, app *testutil.App, owner, email string, role models.Role) *testutil.Client {
	t.Helper()
	c := signUp(t, app, email)
	var o, u models.User
	app.DB.Where("email = ?", owner).Take(&o)
	app.DB.Where("email = ?", email).Take(&u)
	var om models.Membership
	app.DB.Where("user_id = ?", o.ID).Take(&om)
	if err := app.DB.Create(&models.Membership{WorkspaceID: om.WorkspaceID, UserID: u.ID, Role: role}).Error; err != nil {
		t.Fatal(err)
	}
	c.Submit(c.Get("/settings/account"), "form.switcher", map[string]string{"workspace_id": fmt.Sprint(om.WorkspaceID)})
	return c
}

func keyIDByName(t *testing.T, app *testutil.App, name string) int64 {
	t.Helper()
	var k models.APIKey
	if err := app.DB.Where("name = ?", name).Order("id DESC").Take(&k).Error; err != nil {
		t.Fatalf("key %q: %v", name, err)
	}
	return k.ID
}

func TestCreateKeyShowsTheSecretOnce(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL)
		c := signUp(t, app, "ada@example.com")

		list := c.Get("/settings/api-keys")
		if href, _ := list.Doc.Find(".empty a.btn").Attr("href"); href != "/settings/api-keys/new" {
			t.Fatalf("empty list has no create button:\n%s", list.Body)
		}
		page := createKey(t, c, map[string]string{"description": "nightly invoices"})
		if page.Status != http.StatusCreated || page.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("secret page: %d, Cache-Control %q", page.Status, page.Header.Get("Cache-Control"))
		}
		secret := secretOf(t, page)
		if !strings.HasPrefix(secret, "ks_sk_live_") || !strings.Contains(page.Text(".flash.warning"), "You will not see it again") {
			t.Fatalf("secret %q, warning %q", secret, page.Text(".flash.warning"))
		}
		if page.Doc.Find(`button[data-copy="#secret"]`).Length() != 1 || page.Doc.Find(`.secret-card[hx-history="false"], [hx-history="false"] .secret-card`).Length() == 0 {
			t.Error("no copy button, or the secret may enter htmx's history cache")
		}

		list = c.Get("/settings/api-keys")
		row := list.Doc.Find("table.keys tbody tr")
		if row.Length() != 1 {
			t.Fatalf("list has %d rows:\n%s", row.Length(), list.Body)
		}
		text := strings.Join(strings.Fields(row.Text()), " ")
		for _, want := range []string{"Billing worker", "nightly invoices", keys.Hint(secret), "live", "Read", "by Ada Lovelace", "Never used", "Active"} {
			if !strings.Contains(text, want) {
				t.Errorf("row lacks %q: %s", want, text)
			}
		}
		if strings.Contains(list.Body, secret) || strings.Contains(c.Get(fmt.Sprintf("/settings/api-keys/%d", keyIDByName(t, app, "Billing worker"))).Body, secret) {
			t.Fatal("the secret is shown again")
		}

		// Reloading the secret page re-posts its form: no second key, no secret.
		form := c.Get("/settings/api-keys/new")
		fields := map[string]string{"name": "Second", "kind": "sk", "environment": "live", "permission": "read", "expires_in": "30"}
		secretOf(t, c.Submit(form, "form.key-form", fields))
		resubmit := c.Submit(form, "form.key-form", fields)
		if resubmit.URL.Path != "/settings/api-keys" || !strings.Contains(resubmit.Text(".flash"), "already created") || resubmit.Doc.Find("#secret").Length() != 0 {
			t.Fatalf("re-posting a used form: %s %q", resubmit.URL, resubmit.Text(".flash"))
		}
		var count int64
		app.DB.Model(&models.APIKey{}).Count(&count)
		if count != 2 {
			t.Fatalf("%d keys, want 2", count)
		}
	})
}

func TestCreateKeyErrorsKeepInput(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	c := signUp(t, app, "ada@example.com")
	page := createKey(t, c, map[string]string{"name": "", "description": "keep me", "permission": "custom", "environment": "test"})
	if page.Status != http.StatusUnprocessableEntity {
		t.Fatalf("status %d", page.Status)
	}
	if page.Text("#name-error") == "" || !strings.Contains(page.Text(".scope-groups .error"), "at least one scope") {
		t.Fatalf("errors: name %q scopes %q", page.Text("#name-error"), page.Text(".scope-groups .error"))
	}
	if page.Text("#description") != "keep me" {
		t.Errorf("description lost: %q", page.Text("#description"))
	}
	if _, ok := page.Doc.Find(`input[name=permission][value=custom]`).Attr("checked"); !ok {
		t.Error("permission choice lost")
	}
	if _, ok := page.Doc.Find(`input[name=environment][value=test]`).Attr("checked"); !ok {
		t.Error("environment choice lost")
	}
	form := page
	page = c.Submit(form, "form.key-form", map[string]string{"name": "Uploader", "permission": "custom", "scopes": "files:write", "kind": "sk", "environment": "test", "expires_in": "custom", "expires_on": "2020-01-01"})
	if page.Text("#expires_on-error") == "" {
		t.Fatalf("past custom date accepted:\n%s", page.Body)
	}
	if _, ok := page.Doc.Find(`input[name=scopes][value="files:write"]`).Attr("checked"); !ok {
		t.Error("chosen scope lost")
	}
	page = c.Submit(form, "form.key-form", map[string]string{"name": "Uploader", "permission": "custom", "scopes": "files:write", "kind": "sk", "environment": "test", "expires_in": "custom", "expires_on": "2026-04-01"})
	secretOf(t, page)
	var k models.APIKey
	app.DB.Where("name = ?", "Uploader").Take(&k)
	if k.Scopes != "files:write" || k.Permission != "custom" || k.ExpiresAt.Format(time.DateOnly) != "2026-04-01" {
		t.Fatalf("stored %+v", k)
	}
}

func TestKeyRoleRules(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	owner := signUp(t, app, "owner@example.com")
	secretOf(t, createKey(t, owner, map[string]string{"name": "Owner key"}))
	ownerKey := keyIDByName(t, app, "Owner key")

	viewer := addMember(t, app, "owner@example.com", "viewer@example.com", models.RoleViewer)
	list := viewer.Get("/settings/api-keys")
	if list.Doc.Find(`a[href="/settings/api-keys/new"]`).Length() != 0 || list.Doc.Find("table.keys tbody tr").Length() != 1 {
		t.Fatalf("viewer's list: create button or rows wrong:\n%s", list.Body)
	}
	if p := viewer.Get("/settings/api-keys/new"); p.Status != http.StatusForbidden {
		t.Fatalf("viewer's create form: %d", p.Status)
	}
	if p := viewer.PostForm("/settings/api-keys", url.Values{"_csrf": {csrfOf(list)}, "name": {"x"}, "kind": {"sk"}, "environment": {"live"}, "permission": {"read"}, "expires_in": {"30"}}); p.Status != http.StatusForbidden {
		t.Fatalf("viewer's create post: %d", p.Status)
	}
	if p := viewer.Get(fmt.Sprintf("/settings/api-keys/%d", ownerKey)); p.Doc.Find(`form[action$="/revoke"], a[href*="?from="]`).Length() != 0 {
		t.Fatal("viewer is offered revoke or duplicate")
	}
	if p := viewer.PostForm(fmt.Sprintf("/settings/api-keys/%d/revoke", ownerKey), url.Values{"_csrf": {csrfOf(list)}}); p.Status != http.StatusForbidden {
		t.Fatalf("viewer revoking: %d", p.Status)
	}

	editor := addMember(t, app, "owner@example.com", "editor@example.com", models.RoleEditor)
	form := editor.Get("/settings/api-keys/new")
	if _, disabled := form.Doc.Find(`input[name=permission][value=admin]`).Attr("disabled"); !disabled {
		t.Error("editor is offered the admin permission")
	}
	page := createKey(t, editor, map[string]string{"name": "Sneaky", "permission": "admin"})
	if page.Status != http.StatusForbidden || !strings.Contains(page.Text(".flash.error"), "owners and admins") {
		t.Fatalf("editor creating an admin key: %d %q", page.Status, page.Text(".flash.error"))
	}
	page = createKey(t, editor, map[string]string{"name": "Sneaky", "permission": "custom", "scopes": "members:write"})
	if page.Status != http.StatusForbidden {
		t.Fatalf("editor creating members:write: %d", page.Status)
	}
	secretOf(t, createKey(t, editor, map[string]string{"name": "Editor key", "permission": "write"}))
	editorKey := keyIDByName(t, app, "Editor key")
	token := csrfOf(form)
	for _, action := range []string{"", "/rotate", "/revoke"} {
		p := editor.PostForm(fmt.Sprintf("/settings/api-keys/%d%s", ownerKey, action), url.Values{"_csrf": {token}, "name": {"mine"}, "grace": {"0s"}})
		if p.Status != http.StatusForbidden {
			t.Errorf("editor POST %q on the owner's key: %d", action, p.Status)
		}
	}
	if p := editor.PostForm(fmt.Sprintf("/settings/api-keys/%d", editorKey), url.Values{"_csrf": {token}, "name": {"Editor key v2"}}); p.URL.Path != fmt.Sprintf("/settings/api-keys/%d", editorKey) || p.Text("h1") != "Editor key v2" {
		t.Fatalf("editor renaming own key: %d %s %q", p.Status, p.URL, p.Text("h1"))
	}
	if p := owner.Submit(owner.Get(fmt.Sprintf("/settings/api-keys/%d", editorKey)), `form[action$="/revoke"]`, nil); !strings.Contains(p.Text(".flash"), "Revoked Editor key v2") {
		t.Fatalf("owner revoking the editor's key: %q", p.Text(".flash"))
	}

	// Another workspace's key does not exist for this user.
	stranger := signUp(t, app, "stranger@example.com")
	if p := stranger.Get(fmt.Sprintf("/settings/api-keys/%d", ownerKey)); p.Status != http.StatusNotFound {
		t.Fatalf("a stranger opening the owner's key: %d", p.Status)
	}
	if p := stranger.PostForm(fmt.Sprintf("/settings/api-keys/%d/revoke", ownerKey), url.Values{"_csrf": {csrfOf(stranger.Get("/settings/api-keys"))}}); p.Status != http.StatusNotFound {
		t.Fatalf("a stranger revoking the owner's key: %d", p.Status)
	}
}

func TestRenameInPlace(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	c := signUp(t, app, "ada@example.com")
	secretOf(t, createKey(t, c, nil))
	id := keyIDByName(t, app, "Billing worker")
	list := c.Get("/settings/api-keys")
	token := csrfOf(list)

	htmx := func(method, path string, form url.Values) *testutil.Page {
		req, _ := http.NewRequest(method, app.URL(path), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("HX-Request", "true")
		req.Header.Set("X-CSRF-Token", token)
		return c.Do(req)
	}
	edit := htmx(http.MethodGet, fmt.Sprintf("/settings/api-keys/%d/edit", id), nil)
	if !strings.HasPrefix(edit.Raw, fmt.Sprintf(`<tr id="key-%d"`, id)) || edit.Fragment().Find("form.inline-edit").Length() != 1 {
		t.Fatalf("edit fragment:\n%s", edit.Raw)
	}
	bad := htmx(http.MethodPost, fmt.Sprintf("/settings/api-keys/%d", id), url.Values{"name": {" "}, "description": {"d"}})
	if bad.Status != http.StatusUnprocessableEntity || !strings.Contains(bad.Fragment().Find(".error").Text(), "Give the key a name") {
		t.Fatalf("empty name: %d %s", bad.Status, bad.Raw)
	}
	// Post what the fragment's form holds, as htmx would.
	form := edit.Fragment().Find("form.inline-edit")
	fields := url.Values{}
	form.Find("input").Each(func(_ int, s *goquery.Selection) { fields.Set(s.AttrOr("name", ""), s.AttrOr("value", "")) })
	if fields.Get("name") != "Billing worker" || form.AttrOr("hx-post", "") != fmt.Sprintf("/settings/api-keys/%d", id) {
		t.Fatalf("inline form posts %v to %q", fields, form.AttrOr("hx-post", ""))
	}
	fields.Set("name", "Invoice worker")
	fields.Set("description", "moved to k8s")
	ok := htmx(http.MethodPost, form.AttrOr("hx-post", ""), fields)
	row := ok.Fragment()
	if ok.Status != http.StatusOK || row.Find(fmt.Sprintf("tr#key-%d td.key-name strong", id)).Text() != "Invoice worker" || strings.Contains(ok.Raw, "<nav") {
		t.Fatalf("rename fragment: %d\n%s", ok.Status, ok.Raw)
	}
	if got := htmx(http.MethodGet, fmt.Sprintf("/settings/api-keys/%d/row", id), nil).Fragment().Find("td.key-name strong").Text(); got != "Invoice worker" {
		t.Fatalf("cancel fragment shows %q", got)
	}
	if p := c.Get(fmt.Sprintf("/settings/api-keys/%d/edit", id)); p.URL.Path != fmt.Sprintf("/settings/api-keys/%d", id) {
		t.Fatalf("without htmx, Rename leads to %s", p.URL)
	}
	var ev models.AuditEvent
	app.DB.Where("action = ?", keys.ActionRenamed).Take(&ev)
	if !strings.Contains(ev.Detail, `renamed from "Billing worker"`) || ev.ActorLabel != "ada@example.com" {
		t.Fatalf("rename audit event %+v", ev)
	}
}

func TestRotateAndRevoke(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL)
		c := signUp(t, app, "ada@example.com")
		first := secretOf(t, createKey(t, c, nil))
		oldID := keyIDByName(t, app, "Billing worker")

		detail := c.Get(fmt.Sprintf("/settings/api-keys/%d", oldID))
		page := c.Submit(detail, `form[action$="/rotate"]`, map[string]string{"grace": "1h0m0s"})
		second := secretOf(t, page)
		if second == first || page.Text("h1") != "Key rotated" || !strings.Contains(page.Text(".secret-card"), "keeps working until") {
			t.Fatalf("rotation page: %q\n%s", page.Text("h1"), page.Text(".secret-card"))
		}
		// The pair reads together: the old key, still working, right under
		// its successor, and only there.
		list := c.Get("/settings/api-keys")
		rows := list.Doc.Find("table.keys tbody tr")
		newRow := strings.Join(strings.Fields(rows.Eq(0).Text()), " ")
		oldRow := strings.Join(strings.Fields(rows.Eq(1).Text()), " ")
		if rows.Length() != 2 || !rows.Eq(1).HasClass("grace-row") || !strings.Contains(newRow, keys.Hint(second)) || !strings.Contains(newRow, "Replaces "+keys.Hint(first)) ||
			!strings.Contains(newRow, "Active") || !strings.Contains(oldRow, keys.Hint(first)) || !strings.Contains(oldRow, "Rotating") || strings.Contains(oldRow, "Rotate…") {
			t.Errorf("list after rotating: %d rows\n%s\n%s", rows.Length(), newRow, oldRow)
		}
		app.Clock.Advance(61 * time.Minute)
		if got := c.Get(fmt.Sprintf("/settings/api-keys/%d", oldID)).Text(".badge.status"); got != "Expired" {
			t.Fatalf("old key after its grace: %q", got)
		}
		// An hour on, the session confirms access (sudo mode) first.
		again := c.Submit(detail, `form[action$="/rotate"]`, map[string]string{"grace": "0s"})
		if again.Doc.Find("#confirm-access").Length() != 1 {
			t.Fatalf("rotating after an hour did not ask to confirm access: %d %q", again.Status, again.Text("h1"))
		}
		again = confirmAccess(t, c, again)
		if !strings.Contains(again.Text(".flash.error"), "already rotated") || again.Doc.Find("#secret").Length() != 0 {
			t.Fatalf("rotating the replaced key again: %q", again.Text(".flash.error"))
		}

		newID := keyIDByName(t, app, "Billing worker")
		page = c.Submit(c.Get(fmt.Sprintf("/settings/api-keys/%d", newID)), `form[action$="/revoke"]`, nil)
		if page.URL.RawQuery != "filter=revoked" || !strings.Contains(page.Text(".flash"), "Revoked Billing worker") {
			t.Fatalf("revoke ended at %s with %q", page.URL, page.Text(".flash"))
		}
		if page.Doc.Find("table.keys tbody tr").Length() != 1 || !strings.Contains(page.Text("table.keys"), "Revoked") {
			t.Fatalf("revoked filter:\n%s", page.Text("main"))
		}
		if c.Get("/settings/api-keys").Doc.Find(fmt.Sprintf("tr#key-%d", newID)).Length() != 0 {
			t.Error("the revoked key is still in the default list")
		}
		if p := c.Get(fmt.Sprintf("/settings/api-keys/%d", newID)); p.Doc.Find(`form[action$="/revoke"], form[action$="/rotate"]`).Length() != 0 {
			t.Error("a revoked key still offers rotate or revoke")
		}

		var actions []string
		app.DB.Model(&models.AuditEvent{}).Order("id").Pluck("action", &actions)
		// The confirmation of access before the second rotation is audited too.
		if strings.Join(actions, ",") != "key.created,key.rotated,account.sudo_confirmed,key.revoked" {
			t.Fatalf("audit actions %v", actions)
		}
	})
}

func TestDuplicateADeadKey(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	c := signUp(t, app, "ada@example.com")
	secretOf(t, createKey(t, c, map[string]string{"name": "Uploader", "permission": "custom", "scopes": "files:write", "environment": "test", "expires_in": "7"}))
	id := keyIDByName(t, app, "Uploader")
	c.Submit(c.Get(fmt.Sprintf("/settings/api-keys/%d", id)), `form[action$="/revoke"]`, nil)

	form := c.Get(fmt.Sprintf("/settings/api-keys/new?from=%d", id))
	if form.Text("h1") != "Duplicate API key" {
		t.Fatalf("duplicate form: %q", form.Text("h1"))
	}
	if v, _ := form.Doc.Find("#name").Attr("value"); v != "Uploader (copy)" {
		t.Errorf("name %q", v)
	}
	for sel, what := range map[string]string{
		`input[name=permission][value=custom]`:      "permission",
		`input[name=scopes][value="files:write"]`:   "scope",
		`input[name=environment][value=test]`:       "environment",
		`select[name=expires_in] option[value="7"]`: "expiry",
	} {
		attr := "checked"
		if strings.HasPrefix(sel, "select") {
			attr = "selected"
		}
		if _, ok := form.Doc.Find(sel).Attr(attr); !ok {
			t.Errorf("duplicate lost the %s", what)
		}
	}
	secretOf(t, c.Submit(form, "form.key-form", nil))
}

func TestAuditLogForAdminsOnly(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	owner := signUp(t, app, "owner@example.com")
	secretOf(t, createKey(t, owner, nil))
	app.Clock.Advance(time.Minute)
	id := keyIDByName(t, app, "Billing worker")
	owner.PostForm(fmt.Sprintf("/settings/api-keys/%d", id), url.Values{"_csrf": {csrfOf(owner.Get("/settings/api-keys"))}, "name": {"Renamed"}})

	page := owner.Get("/settings/audit-log")
	rows := page.Doc.Find("tbody tr")
	if rows.Length() != 2 || !strings.Contains(rows.First().Text(), "key.renamed") || !strings.Contains(rows.Last().Text(), "key.created") {
		t.Fatalf("audit log:\n%s", page.Text("main"))
	}
	if !strings.Contains(rows.First().Text(), "owner@example.com") || !strings.Contains(rows.First().Text(), "127.0.0.1") {
		t.Errorf("audit row lacks actor or IP: %s", rows.First().Text())
	}
	editor := addMember(t, app, "owner@example.com", "editor@example.com", models.RoleEditor)
	if p := editor.Get("/settings/audit-log"); p.Status != http.StatusForbidden || p.Doc.Find("tbody tr").Length() != 0 {
		t.Fatalf("editor sees the audit log: %d", p.Status)
	}
}

func TestKeyListPaginates(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	c := signUp(t, app, "ada@example.com")
	var u models.User
	app.DB.Where("email = ?", "ada@example.com").Take(&u)
	var m models.Membership
	app.DB.Where("user_id = ?", u.ID).Take(&m)
	actor := app.Keys.UserActor(u, models.RoleOwner, "", "")
	for i := range 30 {
		app.Clock.Advance(time.Second)
		in := keys.CreateInput{Name: fmt.Sprintf("key %02d", i), Kind: keys.Secret, Env: keys.Live, Permission: keys.PermRead, ExpiresIn: "never"}
		if _, err := app.Keys.Create(t.Context(), m.WorkspaceID, actor, in); err != nil {
			t.Fatal(err)
		}
	}
	first := c.Get("/settings/api-keys")
	if n := first.Doc.Find("table.keys tbody tr").Length(); n != 25 || first.Text("table.keys tbody tr:first-child strong") != "key 29" {
		t.Fatalf("page 1: %d rows, first %q", n, first.Text("table.keys tbody tr:first-child strong"))
	}
	if !strings.Contains(first.Text(".pager"), "Page 1 of 2 · 30 keys") {
		t.Errorf("pager: %q", first.Text(".pager"))
	}
	next, _ := first.Doc.Find(`.pager a[rel=next]`).Attr("href")
	second := c.Get(next)
	if n := second.Doc.Find("table.keys tbody tr").Length(); n != 5 || second.Text("table.keys tbody tr:last-child strong") != "key 00" {
		t.Fatalf("page 2: %d rows", n)
	}
	// The links carry a keyset cursor; the page number is only shown.
	if !strings.Contains(next, "before=") || !strings.Contains(second.Text(".pager"), "Page 2 of 2 · 30 keys") || second.Doc.Find(`.pager a[rel=next]`).Length() != 0 {
		t.Errorf("page 2 link %q, pager %q", next, second.Text(".pager"))
	}
	prev, _ := second.Doc.Find(`.pager a[rel=prev]`).Attr("href")
	if back := c.Get(prev); back.Text("table.keys tbody tr:first-child strong") != "key 29" || !strings.Contains(back.Text(".pager"), "Page 1 of 2") {
		t.Errorf("back from page 2 (%s): first %q, pager %q", prev, back.Text("table.keys tbody tr:first-child strong"), back.Text(".pager"))
	}
	if got := first.Text(`.tabs a[aria-current="page"] .count`); got != "30" {
		t.Errorf("All tab count %q", got)
	}
}

func TestPlaintextNeverStoredOrLogged(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "keysmith.db")
	app := testutil.StartApp(t, dbPath)
	c := signUp(t, app, "ada@example.com")
	secrets := []string{secretOf(t, createKey(t, c, nil))}
	id := keyIDByName(t, app, "Billing worker")
	secrets = append(secrets, secretOf(t, c.Submit(c.Get(fmt.Sprintf("/settings/api-keys/%d", id)), `form[action$="/rotate"]`, map[string]string{"grace": "24h0m0s"})))

	files, _ := filepath.Glob(dbPath + "*") // the database, its WAL and shared memory
	if len(files) == 0 {
		t.Fatal("no database files")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets {
			body := s[len("ks_sk_live_"):]
			if strings.Contains(string(b), body) {
				t.Fatalf("%s holds a key's plaintext", filepath.Base(f))
			}
		}
	}
	for _, s := range secrets {
		if strings.Contains(app.Logs.String(), s[len("ks_sk_live_"):]) {
			t.Fatal("the logs hold a key's plaintext")
		}
	}
}

func TestKeyActionsNeedCSRF(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	c := signUp(t, app, "ada@example.com")
	p := c.PostForm("/settings/api-keys", url.Values{"name": {"x"}, "kind": {"sk"}, "environment": {"live"}, "permission": {"read"}, "expires_in": {"30"}})
	if p.Status != http.StatusBadRequest {
		t.Fatalf("create without a CSRF token: %d", p.Status)
	}
	var count int64
	app.DB.Model(&models.APIKey{}).Count(&count)
	if count != 0 {
		t.Fatal("a key was created without a CSRF token")
	}
}

func TestAdminsSetRateLimits(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	owner := signUp(t, app, "owner@example.com")
	secretOf(t, createKey(t, owner, map[string]string{"name": "Busy"}))
	id := keyIDByName(t, app, "Busy")
	detail := owner.Get(fmt.Sprintf("/settings/api-keys/%d", id))
	if !strings.Contains(detail.Text("dl.facts"), "1000 requests per minute (default for Secret keys)") {
		t.Fatalf("detail facts: %s", detail.Text("dl.facts"))
	}
	page := owner.Submit(detail, `form[action$="/rate-limit"]`, map[string]string{"rate_limit": "0"})
	if page.Status != http.StatusUnprocessableEntity || page.Text("#rate_limit-error") == "" {
		t.Fatalf("limit 0: %d %q", page.Status, page.Text("#rate_limit-error"))
	}
	if v, _ := page.Doc.Find("#rate_limit").Attr("value"); v != "0" {
		t.Errorf("input not kept: %q", v)
	}
	page = owner.Submit(detail, `form[action$="/rate-limit"]`, map[string]string{"rate_limit": "5000"})
	if !strings.Contains(page.Text(".flash"), "5000 requests per minute") || !strings.Contains(page.Text("dl.facts"), "5000 requests per minute") {
		t.Fatalf("after setting: %q / %q", page.Text(".flash"), page.Text("dl.facts"))
	}
	page = owner.Submit(page, `form[action$="/rate-limit"]`, map[string]string{"rate_limit": ""})
	if !strings.Contains(page.Text("dl.facts"), "1000 requests per minute (default") {
		t.Fatalf("back to default: %s", page.Text("dl.facts"))
	}

	editor := addMember(t, app, "owner@example.com", "editor@example.com", models.RoleEditor)
	secretOf(t, createKey(t, editor, map[string]string{"name": "Editor's"}))
	own := keyIDByName(t, app, "Editor's")
	if p := editor.Get(fmt.Sprintf("/settings/api-keys/%d", own)); p.Doc.Find(`form[action$="/rate-limit"]`).Length() != 0 {
		t.Error("an editor is offered the rate limit form")
	}
	p := editor.PostForm(fmt.Sprintf("/settings/api-keys/%d/rate-limit", own), url.Values{"_csrf": {csrfOf(detail)}, "rate_limit": {"99999"}})
	if p.Status != http.StatusForbidden {
		t.Fatalf("editor raising their own limit: %d", p.Status)
	}
}

func TestAPIReferencePage(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	c := signUp(t, app, "ada@example.com")
	page := c.Get("/settings/api-reference")
	if page.Status != 200 {
		t.Fatalf("status %d", page.Status)
	}
	var got []string
	page.Doc.Find("section.endpoint h2").Each(func(_ int, s *goquery.Selection) {
		got = append(got, strings.Join(strings.Fields(s.Text()), " "))
	})
	want := "GET /v1/auth/test|POST /v1/keys/verify|ANY /v1/authz|GET /v1/keys|POST /v1/keys|POST /v1/keys/leaked|GET /v1/keys/{id}|PATCH /v1/keys/{id}|DELETE /v1/keys/{id}|POST /v1/keys/{id}/disable|POST /v1/keys/{id}/enable|POST /v1/keys/{id}/rotate|GET /v1/keys/{id}/usage|GET /v1/webhook-endpoints|POST /v1/webhook-endpoints|DELETE /v1/webhook-endpoints/{id}|POST /oauth/token|GET /oauth/authorize|POST /oauth/authorize|POST /oauth/revoke|POST /oauth/introspect|GET /.well-known/jwks.json|GET /.well-known/oauth-authorization-server"
	if strings.Join(got, "|") != want {
		t.Fatalf("endpoints:\n%s\nwant\n%s", strings.Join(got, "|"), want)
	}
	if !strings.Contains(page.Text("section.endpoint pre"), app.Server.URL+"/v1/auth/test") {
		t.Error("curl examples do not use the base URL")
	}
	// The routes each scope opens behind a proxy (the demo catalog's).
	routes := map[string]string{}
	page.Doc.Find("#routes tbody tr").Each(func(_ int, s *goquery.Selection) {
		routes[strings.TrimSpace(s.Find("td").First().Text())] = strings.Join(strings.Fields(s.Find("td").Last().Text()), " ")
	})
	if routes["public: no key"] != "GET /status" || routes["files:read"] != "GET /files GET /files/{id}" || !strings.Contains(routes["files:write"], "DELETE /files/{id}") {
		t.Errorf("routes card: %v", routes)
	}
	form := c.Get("/settings/api-keys/new")
	if got := form.Text(`label:has(input[value="files:read"]) .scope-routes`); got != "opens GET /files, GET /files/{id}" {
		t.Errorf("the scope picker says files:read %q", got)
	}
}

// A reminder email links to the key with ?workspace=…. Following it never
// switches the session's workspace by itself (a link from another site
// could): it asks, and the switch is a POST.
func TestKeyLinkAsksBeforeSwitchingWorkspace(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	owner := signUp(t, app, "owner@example.com")
	secretOf(t, createKey(t, owner, map[string]string{"name": "Shared key"}))
	id := keyIDByName(t, app, "Shared key")
	var k models.APIKey
	app.DB.Take(&k, id)

	admin := addMember(t, app, "owner@example.com", "admin@example.com", models.RoleAdmin)
	var u models.User
	app.DB.Where("email = ?", "admin@example.com").Take(&u)
	ms, _ := app.Accounts.Memberships(t.Context(), u.ID)
	// Back to the admin's own workspace, where the key does not exist.
	admin.Submit(admin.Get("/settings/account"), "form.switcher", map[string]string{"workspace_id": fmt.Sprint(ms[0].WorkspaceID)})
	if p := admin.Get(fmt.Sprintf("/settings/api-keys/%d", id)); p.Status != http.StatusNotFound {
		t.Fatalf("without the workspace in the link: %d", p.Status)
	}
	link := fmt.Sprintf("/settings/api-keys/%d?workspace=%d", id, k.WorkspaceID)
	p := admin.Get(link)
	if p.Status != 200 || p.Text("main h1") != "Switch workspace?" || !strings.Contains(p.Text("main"), "Ada Lovelace's workspace") {
		t.Fatalf("the link: %d %q", p.Status, p.Text("main"))
	}
	// The GET changed nothing: the session is still in the admin's own workspace.
	if p := admin.Get(fmt.Sprintf("/settings/api-keys/%d", id)); p.Status != http.StatusNotFound {
		t.Fatalf("a GET switched the workspace: %d", p.Status)
	}
	p = admin.Submit(admin.Get(link), "form.switch-confirm", nil)
	if p.Status != 200 || p.Text("main h1") != "Shared key" || p.URL.RawQuery != "" {
		t.Fatalf("after switching: %d %q at %s", p.Status, p.Text("main h1"), p.URL)
	}
	// Now in that workspace, the same link opens the page directly.
	if p := admin.Get(link); p.Text("main h1") != "Shared key" {
		t.Fatalf("link in the current workspace: %q", p.Text("main h1"))
	}
	if p := admin.Get(fmt.Sprintf("/settings/api-keys/%d?workspace=%d", id, 999)); p.Status != 200 || p.Text("main h1") != "Shared key" {
		t.Fatalf("a foreign workspace in the link is ignored, not an error: %d", p.Status)
	}
}

// Disable and Enable follow revoke's role rules: an editor may pause only
// the keys they created; the key page offers the button only to them.
func TestDisableFollowsRevokeRoles(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	owner := signUp(t, app, "owner@example.com")
	createKey(t, owner, nil)
	id := keyIDByName(t, app, "Billing worker")
	editor := addMember(t, app, "owner@example.com", "ed@example.com", models.RoleEditor)
	page := editor.Get(fmt.Sprintf("/settings/api-keys/%d", id))
	if page.Doc.Find("#pause").Length() != 0 {
		t.Error("an editor is offered Disable on the owner's key")
	}
	csrf, _ := editor.Get("/settings/account").Doc.Find(`input[name=_csrf]`).Attr("value")
	if p := editor.PostForm(fmt.Sprintf("/settings/api-keys/%d/disable", id), url.Values{"_csrf": {csrf}}); p.Status != 403 {
		t.Errorf("an editor disabling the owner's key: %d", p.Status)
	}
	done := owner.Submit(owner.Get(fmt.Sprintf("/settings/api-keys/%d", id)), `#pause form`, nil)
	if !strings.Contains(done.Text(".flash"), "Disabled Billing worker") || done.Text(".badge.status") != "Disabled" {
		t.Errorf("owner disabling: %q / %q", done.Text(".flash"), done.Text(".badge.status"))
	}
	if facts := done.Text("dl.facts"); !strings.Contains(facts, "Disabled by") || !strings.Contains(facts, "Ada Lovelace") {
		t.Errorf("key page facts after disabling: %q", facts)
	}
	if done.Doc.Find("#token").Length() != 0 {
		t.Error("a disabled key's page offers a temporary token")
	}
}
