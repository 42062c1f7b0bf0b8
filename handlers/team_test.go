package handlers_test

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"keysmith/models"
	"keysmith/teams"
	"keysmith/testutil"
)

// invite sends an invitation from the Team page and returns the link the
// mail carries.
func invite(t *testing.T, app *testutil.App, c *testutil.Client, email, role string) string {
	t.Helper()
	page := c.Submit(c.Get("/settings/team"), "form.invite", map[string]string{"email": email, "role": role})
	if !strings.Contains(page.Text(".flash"), "Invitation sent to "+email) {
		t.Fatalf("invite %s: %d %q\n%s", email, page.Status, page.Text(".flash"), page.Text("main"))
	}
	mail := app.Mails()[0]
	if mail.To[0] != email || !strings.Contains(mail.Subject, "invited you to") {
		t.Fatalf("invitation mail %+v", mail.Message)
	}
	return strings.TrimPrefix(linkIn(t, mail.Text, "/invitations/"), app.Server.URL)
}

func TestInviteSignUpAndJoin(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL)
		owner := signUp(t, app, "owner@example.com")
		link := invite(t, app, owner, "grace@example.com", "editor")
		if page := owner.Get("/settings/team"); !strings.Contains(page.Text("table.invitations"), "grace@example.com") {
			t.Fatal("pending invitation not listed")
		}

		c := app.NewClient(t)
		page := c.Get(link)
		if !strings.Contains(page.Text("main"), "Ada Lovelace invited grace@example.com to join Ada Lovelace's workspace as editor") {
			t.Fatalf("invitation page: %s", page.Text("main"))
		}
		signup := c.Get(page.Doc.Find(`a.btn`).AttrOr("href", ""))
		if v, _ := signup.Doc.Find("#email").Attr("value"); v != "grace@example.com" {
			t.Fatalf("sign-up not prefilled: %q", v)
		}
		page = c.Submit(signup, "form[action='/signup']", map[string]string{"name": "Grace", "password": "long enough pw"})
		// Confirming the address joins the workspace: no personal
		// workspace, no second "Join" click.
		page = confirmSignUp(t, app, c, page, "grace@example.com")
		if page.URL.Path != "/settings/api-keys" || !strings.Contains(page.Text(".flash"), "You joined Ada Lovelace's workspace as editor") ||
			page.Text(".topbar > .muted") != "Ada Lovelace's workspace" || page.Doc.Find("#workspace-switch").Length() != 0 {
			t.Fatalf("after sign-up: %s %q / %q", page.URL, page.Text(".flash"), page.Text(".topbar"))
		}
		var grace models.User
		app.DB.Where("email = ?", "grace@example.com").Take(&grace)
		if ms, _ := app.Accounts.Memberships(t.Context(), grace.ID); len(ms) != 1 || ms[0].Role != models.RoleEditor || ms[0].Workspace.Name != "Ada Lovelace's workspace" {
			t.Fatalf("grace's memberships: %+v", ms)
		}
		if page := c.Get(link); page.Status != http.StatusGone {
			t.Fatalf("link reused: %d", page.Status)
		}
	})
}

// An invitation cancelled while its guest confirms their address leaves
// them an account with a personal workspace, and the invitation's page
// says it is no longer valid.
func TestSignUpFromACancelledInvitation(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	owner := signUp(t, app, "owner@example.com")
	link := invite(t, app, owner, "grace@example.com", "viewer")
	c := app.NewClient(t)
	signup := c.Get(c.Get(link).Doc.Find(`a.btn`).AttrOr("href", ""))
	page := c.Submit(signup, "form[action='/signup']", map[string]string{"name": "Grace", "password": "long enough pw"})
	team := owner.Get("/settings/team")
	owner.Submit(team, "table.invitations form[action$='/cancel']", nil)
	page = confirmSignUp(t, app, c, page, "grace@example.com")
	if page.URL.Path != link || page.Status != http.StatusGone || !strings.Contains(page.Text("main"), "personal workspace are ready") {
		t.Fatalf("after sign-up: %d %s %q", page.Status, page.URL, page.Text("main"))
	}
	var grace models.User
	app.DB.Where("email = ?", "grace@example.com").Take(&grace)
	if ms, _ := app.Accounts.Memberships(t.Context(), grace.ID); len(ms) != 1 || !ms[0].Workspace.Personal {
		t.Fatalf("grace's memberships: %+v", ms)
	}
}

func TestInvitationForAnotherAccount(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	owner := signUp(t, app, "owner@example.com")
	link := invite(t, app, owner, "grace@example.com", "viewer")
	mallory := signUp(t, app, "mallory@example.com")
	page := mallory.Get(link)
	if page.Doc.Find("form button").Length() != 0 || !strings.Contains(page.Text(".flash.error"), "logged in as mallory@example.com") {
		t.Fatalf("wrong account page: %s", page.Text("main"))
	}
	p := mallory.PostForm(link, map[string][]string{"_csrf": {csrfOf(mallory.Get("/settings/team"))}})
	if p.Status != http.StatusForbidden {
		t.Fatalf("wrong account posting: %d", p.Status)
	}
}

func TestInvitationExpires(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	owner := signUp(t, app, "owner@example.com")
	link := invite(t, app, owner, "late@example.com", "viewer")
	app.Clock.Advance(teams.InvitationLifetime)
	if p := app.NewClient(t).Get(link); p.Status != http.StatusGone {
		t.Fatalf("expired link: %d", p.Status)
	}
	page := owner.Get("/settings/team")
	if !strings.Contains(page.Text("table.invitations"), "expired") {
		t.Fatal("expired invitation not marked")
	}
	page = owner.Submit(page, "table.invitations form[action$='/resend']", nil)
	if !strings.Contains(page.Text(".flash"), "Invitation sent again to late@example.com") {
		t.Fatalf("resend flash %q", page.Text(".flash"))
	}
	fresh := strings.TrimPrefix(linkIn(t, app.Mails()[0].Text, "/invitations/"), app.Server.URL)
	if fresh == link || app.NewClient(t).Get(fresh).Status != 200 {
		t.Fatal("resend did not give a working new link")
	}
}

func TestTeamManagementThroughThePage(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	owner := signUp(t, app, "owner@example.com")
	editor := addMember(t, app, "owner@example.com", "editor@example.com", models.RoleEditor)
	secretOf(t, createKey(t, editor, map[string]string{"name": "Editor's key"}))
	var ed models.User
	app.DB.Where("email = ?", "editor@example.com").Take(&ed)

	// The editor sees the team but no controls.
	if p := editor.Get("/settings/team"); p.Doc.Find("form.invite, select[name=role]").Length() != 0 {
		t.Fatal("an editor is offered team controls")
	}
	if p := editor.PostForm(fmt.Sprintf("/settings/team/members/%d/role", ed.ID), map[string][]string{"_csrf": {csrfOf(editor.Get("/settings/team"))}, "role": {"owner"}}); p.Status != http.StatusForbidden {
		t.Fatalf("editor promoting themselves: %d", p.Status)
	}

	page := owner.Submit(owner.Get("/settings/team"), fmt.Sprintf("form[action='/settings/team/members/%d/role']", ed.ID), map[string]string{"role": "admin"})
	if !strings.Contains(page.Text(".flash"), "Role changed to admin") {
		t.Fatalf("role change: %q", page.Text(".flash"))
	}
	page = owner.Submit(page, fmt.Sprintf("form[action='/settings/team/members/%d/remove']", ed.ID), nil)
	if !strings.Contains(page.Text(".flash"), "The 1 active key they created keeps working") {
		t.Fatalf("removal flash: %q", page.Text(".flash"))
	}
	review := page.Doc.Find(".flash a").AttrOr("href", "")
	keysPage := owner.Get(review)
	if !strings.Contains(keysPage.Text("table.keys"), "Editor's key") || !strings.Contains(keysPage.Text("table.keys"), "former member") {
		t.Fatalf("review link %q shows:\n%s", review, keysPage.Text("main"))
	}
	if p := editor.Get("/settings/team"); strings.Contains(p.Text("main"), "owner@example.com") || p.Doc.Find("#workspace-switch").Length() != 0 {
		t.Fatalf("the removed member still sees the workspace:\n%s", p.Text("main"))
	}

	// The last owner is not offered Leave, and a stale form cannot leave.
	team := owner.Get("/settings/team")
	if team.Doc.Find("form[action='/settings/team/leave']").Length() != 0 || !strings.Contains(team.Text(".danger-zone"), "only owner") {
		t.Fatalf("the only owner is offered Leave: %q", team.Text(".danger-zone"))
	}
	page = owner.PostForm("/settings/team/leave", url.Values{"_csrf": {csrfOf(team)}})
	if page.Status != http.StatusConflict || !strings.Contains(page.Text(".flash.error"), "at least one owner") {
		t.Fatalf("last owner leaving: %d %q", page.Status, page.Text(".flash.error"))
	}
}

func TestAuditLogFiltersAndExport(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	owner := signUp(t, app, "owner@example.com")
	secretOf(t, createKey(t, owner, map[string]string{"name": "=HYPERLINK(\"evil\")"}))
	app.Clock.Advance(48 * time.Hour)
	invite(t, app, owner, "grace@example.com", "viewer")

	page := owner.Get("/settings/audit-log?action=member.invited")
	if n := page.Doc.Find("table.audit tbody tr").Length(); n != 1 || !strings.Contains(page.Text("table.audit"), "grace@example.com") {
		t.Fatalf("action filter: %d rows\n%s", n, page.Text("main"))
	}
	day := app.Clock.Now().Format(time.DateOnly)
	if n := owner.Get("/settings/audit-log?to=" + testutil.Epoch.Format(time.DateOnly)).Doc.Find("table.audit tbody tr").Length(); n != 1 {
		t.Fatalf("date filter up to the first day: %d rows", n)
	}
	if n := owner.Get("/settings/audit-log?from=" + day + "&actor=OWNER@").Doc.Find("table.audit tbody tr").Length(); n != 1 {
		t.Fatalf("from + actor filter: %d rows", n)
	}

	res, err := owner.HTTP.Get(app.URL("/settings/audit-log/export.csv"))
	if err != nil {
		t.Fatal(err)
	}
	records, err := csv.NewReader(res.Body).ReadAll()
	res.Body.Close()
	if err != nil || len(records) != 3 || records[0][3] != "action" || records[1][3] != "member.invited" || records[2][3] != "key.created" {
		t.Fatalf("csv: %v %v", records, err)
	}
	if !strings.HasPrefix(records[2][5], "'=") || !strings.Contains(res.Header.Get("Content-Disposition"), "attachment") {
		t.Errorf("csv target %q is not defused, or not an attachment", records[2][5])
	}
	res, err = owner.HTTP.Get(app.URL("/settings/audit-log/export.json?action=key.created"))
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	json.NewDecoder(res.Body).Decode(&rows)
	res.Body.Close()
	if len(rows) != 1 || rows[0]["action"] != "key.created" || rows[0]["actor"] != "owner@example.com" {
		t.Fatalf("json export %v", rows)
	}

	viewer := addMember(t, app, "owner@example.com", "viewer@example.com", models.RoleViewer)
	if r, _ := viewer.HTTP.Get(app.URL("/settings/audit-log/export.csv")); r.StatusCode != http.StatusForbidden {
		t.Fatalf("viewer exporting: %d", r.StatusCode)
	}
}

func TestWorkspaceKeyPolicyShapesTheCreateForm(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	owner := signUp(t, app, "owner@example.com")
	page := owner.Submit(owner.Get("/settings/workspace"), "form[action='/settings/workspace/key-policy']", map[string]string{"default_expiry_days": "30", "max_lifetime_days": "60"})
	if !strings.Contains(page.Text(".flash"), "Key policy saved") {
		t.Fatalf("save: %d %q", page.Status, page.Text(".flash"))
	}
	form := owner.Get("/settings/api-keys/new")
	if form.Doc.Find(`select[name=expires_in] option[value=never]`).Length() != 0 || form.Doc.Find(`select[name=expires_in] option[value="90"]`).Length() != 0 {
		t.Fatal("the form still offers never or 90 days")
	}
	if _, ok := form.Doc.Find(`select[name=expires_in] option[value="30"]`).Attr("selected"); !ok {
		t.Fatal("the default expiry is not preselected")
	}
	p := owner.Submit(form, "form.key-form", map[string]string{"name": "too long", "expires_in": "custom", "expires_on": testutil.Epoch.Add(80 * 24 * time.Hour).Format(time.DateOnly)})
	if p.Status != http.StatusUnprocessableEntity || !strings.Contains(p.Text("#expires_on-error"), "60 days") {
		t.Fatalf("past the workspace maximum: %d %q", p.Status, p.Text("#expires_on-error"))
	}
	page = owner.Submit(owner.Get("/settings/workspace"), "form[action='/settings/workspace']", map[string]string{"name": "Platform team"})
	if page.Text(".topbar .muted") != "Platform team" {
		t.Fatalf("rename: %q", page.Text(".topbar .muted"))
	}
}

// Every team action through HTTP, for each non-owner role: admins may
// manage non-owners, editors and viewers may not touch the team at all.
func TestTeamActionsByRole(t *testing.T) {
	for _, role := range []models.Role{models.RoleAdmin, models.RoleEditor, models.RoleViewer} {
		t.Run(string(role), func(t *testing.T) {
			app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
			signUp(t, app, "owner@example.com")
			actor := addMember(t, app, "owner@example.com", "actor@example.com", role)
			addMember(t, app, "owner@example.com", "target@example.com", models.RoleViewer)
			var target, owner models.User
			app.DB.Where("email = ?", "target@example.com").Take(&target)
			app.DB.Where("email = ?", "owner@example.com").Take(&owner)
			token := csrfOf(actor.Get("/settings/team"))
			post := func(path string, fields map[string]string) int {
				v := map[string][]string{"_csrf": {token}}
				for k, f := range fields {
					v[k] = []string{f}
				}
				return actor.PostForm(path, v).Status
			}
			allowed := role == models.RoleAdmin
			for _, tc := range []struct {
				name, path string
				fields     map[string]string
				adminOK    bool
			}{
				{"invite", "/settings/team/invitations", map[string]string{"email": "new@example.com", "role": "viewer"}, true},
				{"change a viewer's role", fmt.Sprintf("/settings/team/members/%d/role", target.ID), map[string]string{"role": "editor"}, true},
				{"demote the owner", fmt.Sprintf("/settings/team/members/%d/role", owner.ID), map[string]string{"role": "viewer"}, false},
				{"remove the owner", fmt.Sprintf("/settings/team/members/%d/remove", owner.ID), nil, false},
				{"transfer ownership", "/settings/team/transfer", map[string]string{"user_id": fmt.Sprint(target.ID)}, false},
				{"rename the workspace", "/settings/workspace", map[string]string{"name": "Mine"}, true},
				{"remove a viewer", fmt.Sprintf("/settings/team/members/%d/remove", target.ID), nil, true},
			} {
				status := post(tc.path, tc.fields)
				ok := status == http.StatusOK // a redirect followed to the page
				if want := allowed && tc.adminOK; ok != want || (!ok && status != http.StatusForbidden) {
					t.Errorf("%s: %d, want allowed=%v (else 403)", tc.name, status, want)
				}
			}
		})
	}
}

func TestAuditLogPagesKeepTheFilter(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	owner := signUp(t, app, "owner@example.com")
	var m models.Membership
	app.DB.Joins("User").Where(`"User"."email" = ?`, "owner@example.com").Take(&m)
	for i := range 55 {
		app.DB.Create(&models.AuditEvent{WorkspaceID: m.WorkspaceID, ActorLabel: "owner@example.com", Action: "key.renamed", KeyLabel: fmt.Sprintf("k%d", i), CreatedAt: app.Clock.Now()})
	}
	app.DB.Create(&models.AuditEvent{WorkspaceID: m.WorkspaceID, ActorLabel: "owner@example.com", Action: "key.created", CreatedAt: app.Clock.Now()})
	page := owner.Get("/settings/audit-log?action=key.renamed")
	if page.Doc.Find(".pager a[rel=prev], .pager a[rel=first]").Length() != 0 {
		t.Fatalf("the first page links above itself: %s", page.Text(".pager"))
	}
	next := page.Doc.Find(`.pager a[rel=next]`).AttrOr("href", "")
	if !strings.Contains(next, "action=key.renamed") || !strings.Contains(next, "before=") {
		t.Fatalf("older link %q lacks the filter or the cursor", next)
	}
	second := owner.Get(next)
	if n := second.Doc.Find("table.audit tbody tr").Length(); n != 5 || strings.Contains(second.Text("table.audit"), "key.created") {
		t.Fatalf("page 2 (%s): %d rows", next, n)
	}
}
