package e2e

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"keysmith/keys"
	"keysmith/testutil"
)

// TestDisableAndEnableAKey pauses a key from its row in the list, sees
// the API refuse it and the Disabled tab hold it, then resumes it from
// its page and sees the API accept it again.
func TestDisableAndEnableAKey(t *testing.T) {
	b := newTab(t)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	o := newOwner(t, app, "ida@example.com", keys.CreateInput{Name: "suspicious", Kind: keys.Secret, Env: keys.Live, Permission: keys.PermRead, ExpiresIn: "30"})
	o.logIn(b)
	b.do("disable from the row", chromedp.Click(`summary[aria-label="Actions for suspicious"]`), chromedp.Click(`button[aria-label="Disable suspicious"]`), chromedp.WaitVisible(`.flash.success`))
	if got := b.text(`table.keys tbody tr:first-child .badge.status`); got != "Disabled" {
		t.Fatalf("status after disabling: %q", got)
	}
	if got := apiStatus(t, app, o.key.Secret); got != 401 {
		t.Fatalf("the API with a disabled key: %d", got)
	}
	b.do("the Disabled tab", chromedp.Click(`.tabs a[href="/settings/api-keys?filter=disabled"]`), chromedp.WaitVisible(`table.keys`))
	if got := b.text(`table.keys tbody`); !strings.Contains(got, "suspicious") {
		t.Fatalf("Disabled tab: %q", got)
	}
	b.shot("disable-01-tab")
	b.do("open it", chromedp.Click(`//a[strong[normalize-space()="suspicious"]]`), chromedp.WaitVisible(`#pause`))
	b.shot("disable-02-key-page")
	b.do("enable", chromedp.Click(`#pause button[type=submit]`), chromedp.WaitVisible(`.flash.success`))
	if got := apiStatus(t, app, o.key.Secret); got != 200 {
		t.Fatalf("the API with an enabled key: %d", got)
	}
}
