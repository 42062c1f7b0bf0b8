package e2e

import (
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"keysmith/accounts"
	"keysmith/keys"
	"keysmith/testutil"
)

// TestDisableAndEnableAKey pauses a key from its row in the list, sees
// the API refuse it and the Disabled tab hold it, then resumes it from
// its page and sees the API accept it again.
func TestDisableAndEnableAKey(t *testing.T) {
	b := newTab(t)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	u, err := app.Accounts.SignUp(t.Context(), accounts.SignUpInput{Email: "ida@example.com", Name: "Ida", Password: "a long enough password"})
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := app.Accounts.Memberships(t.Context(), u.ID)
	k, err := app.Keys.Create(t.Context(), ms[0].WorkspaceID, app.Keys.UserActor(u, ms[0].Role, "", ""),
		keys.CreateInput{Name: "suspicious", Kind: keys.Secret, Env: keys.Live, Permission: keys.PermRead, ExpiresIn: "30"})
	if err != nil {
		t.Fatal(err)
	}
	status := func() int {
		req, _ := http.NewRequest(http.MethodGet, app.URL("/v1/auth/test"), nil)
		req.Header.Set("Authorization", "Bearer "+k.Secret)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}

	b.do("log in",
		chromedp.Navigate(app.URL("/login")),
		chromedp.SendKeys(`#email`, "ida@example.com"),
		chromedp.SendKeys(`#password`, "a long enough password"),
		chromedp.Click(`button[type=submit]`),
		chromedp.WaitVisible(`table.keys`),
	)
	b.do("disable from the row", chromedp.Click(`button[aria-label="Disable suspicious"]`), chromedp.WaitVisible(`.flash.success`))
	if got := b.text(`table.keys tbody tr:first-child .badge.status`); got != "Disabled" {
		t.Fatalf("status after disabling: %q", got)
	}
	if got := status(); got != 401 {
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
	if got := status(); got != 200 {
		t.Fatalf("the API with an enabled key: %d", got)
	}
}
