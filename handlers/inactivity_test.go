package handlers_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
)

const inactivityForm = "form[action='/settings/workspace/inactivity-policy']"

func TestInactivityPolicyForm(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL)
		owner := signUp(t, app, "owner@example.com")

		page := owner.Get("/settings/workspace")
		form := page.Doc.Find(inactivityForm)
		if _, on := form.Find("input[name=inactivity_on]").Attr("checked"); on || form.Find("input[name=inactivity_days]").AttrOr("value", "") != "90" {
			t.Fatalf("a new workspace's policy is not off, 90 days:\n%s", page.Text("#inactivity-policy"))
		}
		if _, ok := form.Find("input[name=inactivity_action][value=disable]").Attr("checked"); !ok {
			t.Fatal("disable is not the default action")
		}

		// Out of range, or not a number: the message, and the input kept.
		for _, days := range []string{"12", "366", "ninety"} {
			p := owner.Submit(owner.Get("/settings/workspace"), inactivityForm, map[string]string{"inactivity_on": "on", "inactivity_action": "revoke", "inactivity_days": days})
			f := p.Doc.Find(inactivityForm)
			_, on := f.Find("input[name=inactivity_on]").Attr("checked")
			_, revoke := f.Find("input[name=inactivity_action][value=revoke]").Attr("checked")
			if p.Status != http.StatusUnprocessableEntity || p.Text("#inactivity_days-error") != "Enter a whole number of days from 30 to 365." ||
				f.Find("input[name=inactivity_days]").AttrOr("value", "") != days || !on || !revoke {
				t.Errorf("%s days: %d %q\n%s", days, p.Status, p.Text("#inactivity_days-error"), p.Text("#inactivity-policy"))
			}
		}

		page = owner.Submit(owner.Get("/settings/workspace"), inactivityForm, map[string]string{"inactivity_on": "on", "inactivity_action": "revoke", "inactivity_days": "180"})
		if !strings.Contains(page.Text(".flash"), "Inactivity policy saved: On: keys unused for 180 days are revoked") {
			t.Fatalf("save: %d %q", page.Status, page.Text(".flash"))
		}
		var ws models.Workspace
		app.DB.Joins("JOIN memberships ON memberships.workspace_id = workspaces.id JOIN users ON users.id = memberships.user_id").
			Where("users.email = ?", "owner@example.com").Take(&ws)
		if p := keys.PolicyOf(ws); p.Action != keys.InactivityRevoke || p.Days != 180 || !p.Since.Equal(app.Clock.Now()) {
			t.Fatalf("stored policy %+v", p)
		}

		// Viewers and editors read it; they cannot change it.
		for _, role := range []models.Role{models.RoleEditor, models.RoleViewer} {
			c := addMember(t, app, "owner@example.com", string(role)+"@example.com", role)
			p := c.Get("/settings/workspace")
			if p.Doc.Find(inactivityForm).Length() != 0 || !strings.Contains(p.Text(".inactivity-summary"), "keys unused for 180 days are revoked") {
				t.Errorf("%s sees:\n%s", role, p.Text("#inactivity-policy"))
			}
			res := c.PostForm("/settings/workspace/inactivity-policy", url.Values{"_csrf": {csrfOf(p)}, "inactivity_on": {"on"}, "inactivity_days": {"30"}})
			if res.Status != http.StatusForbidden {
				t.Errorf("%s saving: %d", role, res.Status)
			}
		}

		// An admin switches it off (the box unticked); the days stay.
		admin := addMember(t, app, "owner@example.com", "admin@example.com", models.RoleAdmin)
		page = admin.Submit(admin.Get("/settings/workspace"), inactivityForm, map[string]string{"inactivity_on": "", "inactivity_action": "disable"})
		if !strings.Contains(page.Text(".flash"), "Inactivity policy saved: Off") {
			t.Fatalf("switch off: %d %q", page.Status, page.Text(".flash"))
		}
		f := page.Doc.Find(inactivityForm)
		if _, on := f.Find("input[name=inactivity_on]").Attr("checked"); on || f.Find("input[name=inactivity_days]").AttrOr("value", "") != "180" {
			t.Fatalf("after switching off:\n%s", page.Text("#inactivity-policy"))
		}

		// Each change is in the audit log, by whom and from what.
		log := owner.Get("/settings/audit-log?action=" + keys.ActionInactivityPolicy)
		rows := log.Doc.Find("table.audit tbody tr")
		if rows.Length() != 2 || !strings.Contains(rows.Eq(0).Text(), "admin@example.com") || !strings.Contains(rows.Eq(0).Text(), "off (was revoke keys unused for 180 days)") ||
			!strings.Contains(rows.Eq(1).Text(), "owner@example.com") || !strings.Contains(rows.Eq(1).Text(), "revoke keys unused for 180 days (was off)") {
			t.Fatalf("audit log:\n%s", log.Text("table.audit"))
		}
	})
}
