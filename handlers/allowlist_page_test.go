package handlers_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
)

// The key page edits the allowlist: a wrong entry comes back as typed with
// the reason, the hint names the address the page was asked from, a good
// list is saved, audited, shown and marked in the list; an editor may not
// change another's key; create and duplicate carry the list.
func TestAllowlistOnTheKeyPage(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	owner := signUp(t, app, "owner@example.com")
	secretOf(t, createKey(t, owner, map[string]string{"allowed_ips": "203.0.113.7\n2001:db8::/32"}))
	id := keyIDByName(t, app, "Billing worker")
	keyPath := fmt.Sprintf("/settings/api-keys/%d", id)
	page := owner.Get(keyPath)
	if got := page.Text("#allowed_ips"); got != "203.0.113.7\n2001:db8::/32" {
		t.Fatalf("form after create: %q", got)
	}
	if got := page.Text("#allowed_ips-hint"); !strings.Contains(got, "Your current IP is 127.0.0.1") {
		t.Fatalf("hint: %q", got)
	}

	refused := owner.Submit(page, `#allowed-ips form`, map[string]string{"allowed_ips": "10.0.0.0/8\nnot-an-ip"})
	if refused.Status != 422 || refused.Text("#allowed_ips") != "10.0.0.0/8\nnot-an-ip" || !strings.Contains(refused.Text("#allowed_ips-error"), `"not-an-ip" is not an IP address`) {
		t.Fatalf("refused list: %d, field %q, error %q", refused.Status, refused.Text("#allowed_ips"), refused.Text("#allowed_ips-error"))
	}
	var k models.APIKey
	app.DB.Take(&k, id)
	if k.AllowedIPs != "203.0.113.7 2001:db8::/32" {
		t.Fatalf("a refused list changed the key: %q", k.AllowedIPs)
	}

	saved := owner.Submit(refused, `#allowed-ips form`, map[string]string{"allowed_ips": "10.0.0.0/8, 192.168.1.10"})
	if !strings.Contains(saved.Text(".flash"), "only from 10.0.0.0/8, 192.168.1.10") || !strings.Contains(saved.Text("dl.facts"), "10.0.0.0/8192.168.1.10") {
		t.Fatalf("saved: %q / %q", saved.Text(".flash"), saved.Text("dl.facts"))
	}
	var ev models.AuditEvent
	if err := app.DB.Where("action = ? AND key_id = ?", keys.ActionIPs, id).Take(&ev).Error; err != nil || ev.ActorLabel != "owner@example.com" {
		t.Fatalf("audit: %+v %v", ev, err)
	}
	list := owner.Get("/settings/api-keys")
	if title, _ := list.Doc.Find(".badge.ip-limited").Attr("title"); title != "Allowed from 10.0.0.0/8, 192.168.1.10" {
		t.Fatalf("list marker: %q", title)
	}

	editor := addMember(t, app, "owner@example.com", "ed@example.com", models.RoleEditor)
	if editor.Get(keyPath).Doc.Find("#allowed-ips").Length() != 0 {
		t.Error("an editor is offered the owner's key's allowlist")
	}
	csrf, _ := editor.Get("/settings/account").Doc.Find(`input[name=_csrf]`).Attr("value")
	if p := editor.PostForm(keyPath+"/allowed-ips", url.Values{"_csrf": {csrf}, "allowed_ips": {""}}); p.Status != 403 {
		t.Errorf("an editor emptying the owner's key's list: %d", p.Status)
	}

	dup := owner.Get(fmt.Sprintf("/settings/api-keys/new?from=%d", id))
	if got := dup.Text("#allowed_ips"); got != "10.0.0.0/8\n192.168.1.10" {
		t.Fatalf("duplicate form: %q", got)
	}
	secretOf(t, owner.Submit(dup, "form.key-form", map[string]string{"name": "Copy"}))
	var copied models.APIKey
	app.DB.Take(&copied, keyIDByName(t, app, "Copy"))
	if copied.AllowedIPs != "10.0.0.0/8 192.168.1.10" {
		t.Fatalf("duplicated key's list: %q", copied.AllowedIPs)
	}

	// Emptied, the key works from anywhere again.
	owner.Submit(owner.Get(keyPath), `#allowed-ips form`, map[string]string{"allowed_ips": ""})
	k = models.APIKey{}
	app.DB.Take(&k, id)
	if k.AllowedIPs != "" || !strings.Contains(owner.Get(keyPath).Text("dl.facts"), "Anywhere") {
		t.Fatalf("emptied: %q", k.AllowedIPs)
	}
}
