package handlers_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"keysmith/models"
	"keysmith/teams"
	"keysmith/testutil"
)

// An owner requires two-step verification with a week's grace: members
// without it are mailed and see a banner for the week, then can open only
// Settings → Security until they turn it on; their keys keep working.
func TestWorkspaceRequiresTwoStepVerification(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL)
		owner := signUp(t, app, "ada@example.com")
		member := addMember(t, app, "ada@example.com", "bob@example.com", models.RoleEditor)
		admin := addMember(t, app, "ada@example.com", "carol@example.com", models.RoleAdmin)
		memberKey := secretOf(t, createKey(t, member, map[string]string{"name": "Bob's key"}))
		policy := "form[action='/settings/workspace/two-factor-policy']"

		// Owners only.
		page := admin.Get("/settings/workspace")
		if page.Doc.Find(policy).Length() != 0 || !strings.Contains(page.Text("#two-factor-policy-status"), "Not required") {
			t.Fatalf("an admin is offered the policy: %q", page.Text("#two-factor-policy"))
		}
		if p := admin.PostForm("/settings/workspace/two-factor-policy", map[string][]string{"_csrf": {csrfOf(page)}, "require_two_factor": {"on"}, "grace_days": {"7"}}); p.Status != http.StatusForbidden {
			t.Fatalf("an admin setting the policy: %d", p.Status)
		}
		// An owner without two-step verification cannot require it.
		page = owner.Get("/settings/workspace")
		if _, disabled := page.Doc.Find(policy + " input[name=require_two_factor]").Attr("disabled"); !disabled {
			t.Fatal("the box is on offer to an owner without two-step verification")
		}
		if p := owner.PostForm("/settings/workspace/two-factor-policy", map[string][]string{"_csrf": {csrfOf(page)}, "require_two_factor": {"on"}, "grace_days": {"7"}}); p.Status != http.StatusUnprocessableEntity || p.Text("#require_two_factor-error") == "" {
			t.Fatalf("an owner without it: %d %q", p.Status, p.Text("#require_two_factor-error"))
		}

		enableTOTP(t, app, owner)
		page = owner.Submit(owner.Get("/settings/workspace"), policy, map[string]string{"require_two_factor": "on", "grace_days": "7"})
		if !strings.Contains(page.Text(".flash"), "is required in this workspace") || !strings.Contains(page.Text("#two-factor-policy-status"), "Required of every member") {
			t.Fatalf("turning it on: %q / %q", page.Text(".flash"), page.Text("#two-factor-policy-status"))
		}
		var actions []string
		app.DB.Model(&models.AuditEvent{}).Where("action LIKE ?", "workspace.two_factor%").Order("id").Pluck("action", &actions)
		if strings.Join(actions, ",") != teams.ActionTwoFactorRequired {
			t.Fatalf("audit: %v", actions)
		}
		mailed := map[string]bool{}
		for _, m := range app.Mails() {
			if strings.HasSuffix(m.Subject, "requires two-step verification") {
				mailed[m.To[0]] = true
			}
		}
		if !mailed["bob@example.com"] || !mailed["carol@example.com"] || mailed["ada@example.com"] {
			t.Fatalf("mailed %v; want bob and carol, not the owner who has it", mailed)
		}

		// The team page says who has it.
		team := owner.Get("/settings/team")
		if team.Text("tr:has(td:contains('ada@example.com')) .two-step") != "On" || team.Text("tr:has(td:contains('bob@example.com')) .two-step") != "Off" {
			t.Fatalf("team page two-step column:\n%s", team.Text("table.members"))
		}

		// The grace week: a banner, every page open.
		app.Clock.Advance(6 * 24 * time.Hour)
		page = member.Get("/settings/api-keys")
		if page.Status != http.StatusOK || !strings.Contains(page.Text("#notice"), "requires two-step verification") {
			t.Fatalf("during the grace: %d, banner %q", page.Status, page.Text("#notice"))
		}
		if owner.Get("/settings/api-keys").Doc.Find("#notice").Length() != 0 {
			t.Fatal("the owner, who has it, sees the banner")
		}

		// After it: only Settings → Security, for every role without it.
		app.Clock.Advance(24 * time.Hour)
		for name, c := range map[string]*testutil.Client{"editor": member, "admin": admin} {
			page = c.Get("/settings/api-keys")
			if page.URL.Path != "/settings/security" || !strings.Contains(page.Text(".flash"), "requires two-step verification") {
				t.Fatalf("%s after the grace: %s %q", name, page.URL, page.Text(".flash"))
			}
			if p := c.Get("/settings/team"); p.URL.Path != "/settings/security" {
				t.Fatalf("%s opened the team page: %s", name, p.URL)
			}
		}
		if page := owner.Get("/settings/team"); page.URL.Path != "/settings/team" {
			t.Fatalf("the owner was held too: %s", page.URL)
		}
		// Their keys keep working.
		if r := call(t, app, "GET", "/v1/auth/test", memberKey, nil); r.Status != http.StatusOK {
			t.Fatalf("the member's key after the grace: %d", r.Status)
		}
		// Turning it on lets them in again (sudo: the session is a week old).
		page = member.Get("/settings/security")
		page = confirmAccess(t, member, member.Submit(page, "form[action='/settings/security/two-factor']", nil))
		secret := strings.ReplaceAll(page.Text("#totp-secret"), " ", "")
		page = member.Submit(page, "form[action='/settings/security/two-factor/confirm']", map[string]string{"code": codeAt(t, secret, app.Clock.Now())})
		if page.Status != http.StatusCreated {
			t.Fatalf("the member turning it on: %d %q", page.Status, page.Text("main"))
		}
		if p := member.Get("/settings/api-keys"); p.URL.Path != "/settings/api-keys" || p.Doc.Find("#notice").Length() != 0 {
			t.Fatalf("after enrolling: %s, banner %q", p.URL, p.Text("#notice"))
		}

		// The owner stops requiring it.
		page = confirmAccess(t, owner, owner.Submit(owner.Get("/settings/workspace"), policy, map[string]string{"require_two_factor": ""}))
		if !strings.Contains(page.Text(".flash"), "no longer required") {
			t.Fatalf("turning it off: %q", page.Text(".flash"))
		}
		if p := admin.Get("/settings/team"); p.URL.Path != "/settings/team" {
			t.Fatalf("the admin is still held after the policy went off: %s", p.URL)
		}
		actions = nil
		app.DB.Model(&models.AuditEvent{}).Where("action LIKE ?", "workspace.two_factor%").Order("id").Pluck("action", &actions)
		if strings.Join(actions, ",") != teams.ActionTwoFactorRequired+","+teams.ActionTwoFactorNotRequired {
			t.Fatalf("audit: %v", actions)
		}
	})
}
