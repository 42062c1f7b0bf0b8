package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"keysmith/testutil"
)

// focused describes the element that has focus: its tag, name and text.
func (b *tab) focused() string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`(e => e.tagName.toLowerCase() + "|" + (e.getAttribute("name") || "") + "|" + (e.getAttribute("aria-label") || e.textContent.trim().slice(0, 40)))(document.activeElement)`))
	if err != nil {
		b.t.Fatal(err)
	}
	return s
}

func (b *tab) wantFocus(step, want string) {
	b.t.Helper()
	var got string
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got = b.focused(); strings.Contains(got, want) {
			return
		}
	}
	b.shot("failed-focus-" + strings.ReplaceAll(step, " ", "-"))
	b.t.Fatalf("%s: focus is on %q, want %q", step, got, want)
}

// hidden waits until sel is no longer shown (in a closed <details>, say).
func hidden(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](`!document.querySelector(`+strconv.Quote(sel)+`).checkVisibility()`, chromedp.WithPollingInterval(20*time.Millisecond))
}

// A keyboard-only walk through a key's life: create, copy (announced),
// rename in place (Escape cancels; focus comes back), rotate (Escape
// closes its panel) and revoke.
func TestKeyboardOnlyCreateCopyRotateRevoke(t *testing.T) {
	b := newTab(t)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	o := newOwner(t, app, "kim@example.com", testKey)
	o.logIn(b)
	grantClipboard(t, b.ctx, app.Server.URL)

	b.do("create with the keyboard", chromedp.Navigate(app.URL("/settings/api-keys/new")), chromedp.WaitVisible(`#name`),
		chromedp.Focus(`#name`), chromedp.SendKeys(`#name`, "ci-bot"+kb.Enter), chromedp.WaitVisible(`#secret`))
	b.do("copy with the keyboard", chromedp.Focus(`button[data-copy="#secret"]`), chromedp.KeyEvent(" "),
		chromedp.WaitVisible(`//button[normalize-space()="Copied"]`))
	b.do("the copy is announced", chromedp.Poll[chromedp.Void](`document.getElementById("announce").textContent.includes("Copied")`))
	if role, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.getElementById("announce").getAttribute("role")`)); role != "status" {
		t.Fatalf("the announcement is in a %q, not a live status region", role)
	}

	b.do("list", chromedp.Navigate(app.URL("/settings/api-keys")), chromedp.WaitVisible(`table.keys`))
	rename := `tr#key-1 [hx-get$="/edit"]`
	b.do("open rename", chromedp.Focus(rename), chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(`form.inline-edit`))
	b.wantFocus("rename opens on the name", "input|name|")
	b.do("Escape cancels", chromedp.KeyEvent(kb.Escape), chromedp.WaitNotPresent(`form.inline-edit`))
	b.wantFocus("after Escape", "Rename ci")
	b.do("rename again", chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(`form.inline-edit`))
	b.wantFocus("rename reopens on the name", "input|name|")
	b.do("type and save", chromedp.KeyEvent(kb.End+"-prod"+kb.Enter), chromedp.WaitNotPresent(`form.inline-edit`))
	b.wantFocus("after saving", "Rename ci-prod")

	// The row's menu: Escape closes it; its Rotate… opens the key page's
	// rotate panel, focused.
	menu := `summary[aria-label="Actions for ci-prod"]`
	b.do("open the row menu", chromedp.Focus(menu), chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(`tr#key-1 .menu-items a[href$="#rotate"]`))
	b.do("Escape closes the menu", chromedp.Focus(`tr#key-1 .menu-items a[href$="#rotate"]`), chromedp.KeyEvent(kb.Escape), hidden(`tr#key-1 .menu-items`))
	b.wantFocus("after closing the menu", "Actions for ci-prod")
	b.do("Rotate… from the menu", chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(`tr#key-1 .menu-items a[href$="#rotate"]`),
		chromedp.Focus(`tr#key-1 .menu-items a[href$="#rotate"]`), chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(`#grace`))
	b.wantFocus("the rotate panel opens", "Rotate key…")
	b.do("into the panel", chromedp.Focus(`#grace`))
	b.do("Escape closes it", chromedp.KeyEvent(kb.Escape), hidden(`#grace`))
	b.wantFocus("after closing rotate", "Rotate key…")
	b.do("rotate", chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(`#grace`),
		chromedp.Focus(`form[action$="/rotate"] button`), chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(`#secret`))

	b.do("the old key's page", chromedp.Navigate(app.URL("/settings/api-keys/1")), chromedp.WaitVisible(`dl.facts`))
	b.do("open revoke", chromedp.Focus(`.danger-zone summary`), chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(`.danger-zone form button`))
	b.do("Escape closes revoke", chromedp.KeyEvent(kb.Escape), hidden(`.danger-zone form button`))
	b.wantFocus("after closing revoke", "Revoke key")
	b.do("revoke", chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(`.danger-zone form button`),
		chromedp.Focus(`.danger-zone form button`), chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(`.flash.success`))
	if got := b.text(`.flash.success`); !strings.Contains(got, "Revoked ci-prod") {
		t.Fatalf("revoke: %q", got)
	}
}
