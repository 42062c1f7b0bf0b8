package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"keysmith/accounts"
	"keysmith/testutil"
)

// grantClipboard lets the page write to and read the clipboard, as a
// person's click on Copy would in a real browser.
func grantClipboard(t *testing.T, ctx context.Context, origin string) {
	t.Helper()
	b := chromedp.FromContext(ctx).Browser
	for _, name := range []string{"clipboard-read", "clipboard-write"} {
		if _, err := cdp.Call(ctx, b, browser.SetPermission, browser.SetPermissionParams{
			Permission: &browser.PermissionDescriptor{Name: name},
			Setting:    browser.PermissionSettingGranted,
			Origin:     origin,
		}); err != nil {
			t.Fatalf("grant %s: %v", name, err)
		}
	}
}

func TestCreateCopyRotateRevokeKey(t *testing.T) {
	b := newTab(t)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	if _, err := app.Accounts.SignUp(t.Context(), accounts.SignUpInput{Email: "linus@example.com", Name: "Linus", Password: "a long enough password"}); err != nil {
		t.Fatal(err)
	}

	b.do("log in",
		chromedp.Navigate(app.URL("/login")),
		chromedp.WaitVisible(`#email`),
		chromedp.SendKeys(`#email`, "linus@example.com"),
		chromedp.SendKeys(`#password`, "a long enough password"),
		chromedp.Click(`button[type=submit]`),
		chromedp.WaitVisible(`.empty`),
	)
	grantClipboard(t, b.ctx, app.Server.URL)
	b.shot("01-keys-empty")

	b.do("open the create form", chromedp.Click(`.empty a.btn`), chromedp.WaitVisible(`form.key-form`))
	b.do("fill it",
		chromedp.SendKeys(`#name`, "deploy-bot"),
		chromedp.SendKeys(`#description`, "CI pipeline"),
		chromedp.Click(`input[name=environment][value=live]`),
		chromedp.Click(`input[name=permission][value=custom]`),
		chromedp.WaitVisible(`.scope-groups`), // shown only with Custom
		chromedp.Click(`input[name=scopes][value="files:write"]`),
		chromedp.Click(`input[name=scopes][value="projects:read"]`),
		chromedp.SetValue(`#expires_in`, "30"),
	)
	b.shot("02-create-form")
	b.do("create", chromedp.Click(`form.key-form button[type=submit]`), chromedp.WaitVisible(`#secret`))
	secret := b.value(`#secret`)
	if !strings.HasPrefix(secret, "ks_sk_live_") || !strings.Contains(b.text(`.flash.warning`), "You will not see it again") {
		t.Fatalf("secret page: %q / %q", secret, b.text(`.flash.warning`))
	}
	b.shot("03-secret-shown-once")
	b.accessible("the secret shown once")
	b.narrow("03-secret-shown-once-390")

	b.do("copy", chromedp.Click(`button[data-copy="#secret"]`), chromedp.WaitVisible(`//button[normalize-space()="Copied"]`))
	copied, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`navigator.clipboard.readText()`, chromedp.EvalAwaitPromise))
	if err != nil || copied != secret {
		t.Fatalf("clipboard holds %q (%v), want the secret", copied, err)
	}

	b.do("reload the secret page", chromedp.Reload(), chromedp.WaitVisible(`main h1`))
	if strings.Contains(b.text(`main`), secret) {
		t.Fatal("reloading showed the secret again")
	}
	b.do("go back", chromedp.NavigateBack(), chromedp.WaitVisible(`main h1`))
	if strings.Contains(b.text(`main`), secret) {
		t.Fatal("going back showed the secret again")
	}

	b.do("list", chromedp.Navigate(app.URL("/settings/api-keys")), chromedp.WaitVisible(`table.keys`))
	row := b.text(`table.keys tbody tr`)
	for _, want := range []string{"deploy-bot", "CI pipeline", "Custom", "Never used", "Active", "live"} {
		if !strings.Contains(row, want) {
			t.Errorf("row lacks %q: %s", want, row)
		}
	}
	b.shot("04-list")

	b.do("rename in place", chromedp.Click(`td.key-name a.btn.link`), chromedp.WaitVisible(`form.inline-edit`))
	// The field opens focused with the old name; typing at its end extends it.
	b.do("type the new name", chromedp.SendKeys(`form.inline-edit input[name="name"]`, kb.End+" (prod)"))
	b.shot("05-rename-in-place")
	b.do("save the name", chromedp.Click(`form.inline-edit button[type=submit]`), chromedp.WaitNotPresent(`form.inline-edit`))
	if got := b.text(`td.key-name strong`); got != "deploy-bot (prod)" {
		t.Fatalf("renamed row shows %q", got)
	}

	b.do("open the key", chromedp.Click(`td.key-name a[href^="/settings/api-keys/"]`), chromedp.WaitVisible(`dl.facts`))
	b.shot("05b-key-page")
	b.do("rotate with a 24 hour grace",
		chromedp.Click(`details.confirm summary.btn.secondary`),
		chromedp.WaitVisible(`#grace`),
		chromedp.SetValue(`#grace`, "24h0m0s"),
		chromedp.Click(`form[action$="/rotate"] button`),
		chromedp.WaitVisible(`#secret`),
	)
	rotated := b.value(`#secret`)
	if rotated == secret || !strings.Contains(b.text(`.secret-card`), "keeps working until") {
		t.Fatalf("rotation: new secret %q, text %q", rotated, b.text(`.secret-card`))
	}
	b.shot("06-rotated")
	b.accessible("a key rotated")
	b.narrow("06-rotated-390")

	b.do("both keys listed", chromedp.Click(`//a[normalize-space()="Done"]`), chromedp.WaitVisible(`table.keys`))
	list := b.text(`table.keys tbody`)
	if !strings.Contains(list, "Rotating") || !strings.Contains(list, "Old key, still working") || !strings.Contains(list, "Replaces") {
		t.Fatalf("list after rotation: %s", list)
	}
	b.shot("07-list-rotating")

	b.do("open the new key", chromedp.Click(`table.keys tbody tr:first-child td.key-name a[href^="/settings/api-keys/"]`), chromedp.WaitVisible(`.danger-zone`))
	b.do("revoke after confirming",
		chromedp.Click(`.danger-zone summary`),
		chromedp.WaitVisible(`.danger-zone form button`),
	)
	b.shot("08-revoke-confirm")
	b.do("confirm", chromedp.Click(`.danger-zone form button`), chromedp.WaitVisible(`.flash.success`))
	if got := b.text(`.flash.success`); !strings.Contains(got, "Revoked deploy-bot (prod)") {
		t.Fatalf("revoke flash %q", got)
	}
	if got := b.text(`.tabs a[aria-current="page"]`); !strings.HasPrefix(got, "Revoked") {
		t.Fatalf("after revoking the list shows %q", got)
	}
	b.shot("09-revoked")

	b.do("audit log", chromedp.Click(`a[href="/settings/audit-log"]`), chromedp.WaitVisible(`table.audit`))
	if got := b.text(`table.audit tbody`); !strings.Contains(got, "key.revoked") || !strings.Contains(got, "key.rotated") || !strings.Contains(got, "key.created") {
		t.Fatalf("audit log: %s", got)
	}
	b.shot("10-audit-log")

	b.do("API reference", chromedp.Click(`a[href="/settings/api-reference"]`), chromedp.WaitVisible(`section.endpoint`))
	if got := b.text(`main`); !strings.Contains(got, "/v1/auth/test") || !strings.Contains(got, "Authorization: Bearer") {
		t.Fatalf("API reference: %s", got)
	}
	b.shot("11-api-reference")
}
