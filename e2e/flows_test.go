package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
)

var testKey = keys.CreateInput{Name: "ci", Kind: keys.Secret, Env: keys.Test, Permission: keys.PermRead, ExpiresIn: "30"}

// reloadIsFine reloads the page and fails unless it loads: no 405 or other
// error page, and no POST-only URL left in the address bar.
func (b *tab) reloadIsFine(after string) string {
	b.t.Helper()
	b.do("reload after "+after, chromedp.Reload(), chromedp.WaitVisible(`main`))
	path, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`location.pathname`))
	if err != nil {
		b.t.Fatal(err)
	}
	if n, _ := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll(".error-page").length`)); n != 0 {
		b.shot("failed-reload-" + strings.ReplaceAll(after, " ", "-"))
		b.t.Fatalf("reload after %s at %s: %s", after, path, b.text(`main`))
	}
	return path
}

// back goes Back to path. Pages are not kept in htmx's history cache, so
// htmx reloads the page from the server: back waits for that load.
func (b *tab) back(path string) {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.Evaluate[any](`history.back()`)); err != nil {
		b.t.Fatal(err)
	}
	b.waitForLoad(path)
}

// waitForLoad waits until the page at path has loaded from the server, as
// a new document; errors while the old one goes away are expected.
func (b *tab) waitForLoad(path string) {
	b.t.Helper()
	cond := `location.pathname === ` + strconv.Quote(path) + ` && document.readyState === "complete" && !!document.querySelector("main")`
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](cond)); err == nil && ok {
			time.Sleep(100 * time.Millisecond)
			if ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](cond)); err == nil && ok {
				return
			}
		}
	}
	b.shot("failed-load-" + strings.ReplaceAll(path, "/", "_"))
	b.t.Fatalf("%s did not load", path)
}

func keyCount(t *testing.T, app *testutil.App) int64 {
	t.Helper()
	var n int64
	if err := app.DB.Model(&models.APIKey{}).Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

// Create a key, go Back to the form, type another name, create again: a
// second key, not "That key was already created". Reloading the secret
// page shows the new key's page, never the secret again.
func TestBackThenCreateAnotherKey(t *testing.T) {
	b := newTab(t)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	o := newOwner(t, app, "bea@example.com", testKey)
	o.logIn(b)

	b.do("open the form", chromedp.Navigate(app.URL("/settings/api-keys/new")), chromedp.WaitVisible(`form.key-form`))
	b.do("create the first", chromedp.SendKeys(`#name`, "first"), chromedp.Click(`form.key-form button[type=submit]`), chromedp.WaitVisible(`#secret`))
	first := b.value(`#secret`)
	if path := b.reloadIsFine("creating a key"); !strings.HasPrefix(path, "/settings/api-keys/") || strings.Contains(b.text(`main`), first) {
		t.Fatalf("reloading the secret page: at %s, secret shown again: %v", path, strings.Contains(b.text(`main`), first))
	}
	b.back("/settings/api-keys/new")
	b.do("the form is back", chromedp.WaitVisible(`form.key-form`))
	if _, err := chromedp.Run(b.ctx, chromedp.Evaluate[any](`document.querySelector("#name").value = ""`)); err != nil {
		t.Fatal(err)
	}
	b.do("create another",
		chromedp.SendKeys(`#name`, "second"),
		chromedp.Click(`form.key-form button[type=submit]`),
		chromedp.WaitVisible(`main h1`),
	)
	if n, _ := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll("#secret").length`)); n != 1 {
		t.Fatalf("Back then create: no new secret; the page says %q", b.text(`main`))
	}
	if second := b.value(`#secret`); second == first || keyCount(t, app) != 3 {
		t.Fatalf("second secret %q, %d keys, want 3", second, keyCount(t, app))
	}
}

// Every form, submitted through htmx and then reloaded, leaves a page a
// reload can load: refused forms and shown-once secrets included.
func TestReloadAfterEachForm(t *testing.T) {
	b := newTab(t)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	o := newOwner(t, app, "rhea@example.com", testKey)
	o.logIn(b)
	keyPage := app.URL(fmt.Sprintf("/settings/api-keys/%d", o.key.Key.ID))

	b.do("refused rate limit", chromedp.Navigate(keyPage), chromedp.WaitVisible(`#rate_limit`),
		chromedp.SendKeys(`#rate_limit`, "0"), chromedp.Click(`form[action$="/rate-limit"] button`), chromedp.WaitVisible(`#rate_limit-error`))
	b.reloadIsFine("a refused rate limit")
	b.do("saved rate limit", chromedp.Navigate(keyPage), chromedp.WaitVisible(`#rate_limit`),
		chromedp.SendKeys(`#rate_limit`, "50"), chromedp.Click(`form[action$="/rate-limit"] button`), chromedp.WaitVisible(`.flash.success`))
	b.reloadIsFine("a saved rate limit")

	b.do("rotate", chromedp.Navigate(keyPage), chromedp.WaitVisible(`dl.facts`),
		chromedp.Click(`details.confirm summary.btn.secondary`), chromedp.WaitVisible(`#grace`),
		chromedp.Click(`form[action$="/rotate"] button`), chromedp.WaitVisible(`#secret`))
	secret := b.value(`#secret`)
	if path := b.reloadIsFine("rotating"); path == fmt.Sprintf("/settings/api-keys/%d", o.key.Key.ID) || strings.Contains(b.text(`main`), secret) {
		t.Fatalf("after rotating, reload shows %s (secret again: %v), want the new key's page", path, strings.Contains(b.text(`main`), secret))
	}

	b.do("wrong current password", chromedp.Navigate(app.URL("/settings/account")), chromedp.WaitVisible(`#current_password`),
		chromedp.SendKeys(`#current_password`, "not my password"), chromedp.SendKeys(`#new_password`, "another long password"),
		chromedp.Click(`form[action="/settings/account/password"] button`), chromedp.WaitVisible(`#current_password-error`))
	b.reloadIsFine("a refused password change")

	b.do("refused invitation", chromedp.Navigate(app.URL("/settings/team")), chromedp.WaitVisible(`form.invite`),
		chromedp.SendKeys(`form.invite #email`, "not an address"), chromedp.Click(`form.invite button[type=submit]`), chromedp.WaitVisible(`#email-error`))
	b.reloadIsFine("a refused invitation")
	b.do("invitation", chromedp.Navigate(app.URL("/settings/team")), chromedp.WaitVisible(`form.invite`),
		chromedp.SendKeys(`form.invite #email`, "ivy@example.com"), chromedp.Click(`form.invite button[type=submit]`), chromedp.WaitVisible(`.flash.success`))
	b.reloadIsFine("an invitation")
}

// After logout, Back shows the login page, not the key list, the audit
// log or the team's addresses from a cache.
func TestLogoutThenBack(t *testing.T) {
	b := newTab(t)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	o := newOwner(t, app, "lou@example.com", testKey)
	o.logIn(b)
	b.do("team", chromedp.Click(`a[href="/settings/team"]`), chromedp.WaitVisible(`table.members`))
	b.do("audit log", chromedp.Click(`a[href="/settings/audit-log"]`), chromedp.WaitVisible(`table.audit`))
	b.do("log out", chromedp.Click(`//button[normalize-space()="Log out"]`), chromedp.WaitVisible(`#email`))
	for _, step := range []string{"back once", "back twice"} {
		b.do(step, chromedp.NavigateBack(), chromedp.WaitVisible(`main`))
		b.do("let htmx settle", chromedp.WaitVisible(`#email`))
		if main := b.text(`body`); strings.Contains(main, "lou@example.com") || strings.Contains(main, o.key.Key.Hint) {
			t.Fatalf("%s after logout shows: %s", step, main)
		}
	}
	cached, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`sessionStorage.getItem("htmx-history-cache") || ""`))
	if err != nil || strings.Contains(cached, "lou@example.com") || strings.Contains(cached, o.key.Key.Hint) {
		t.Fatalf("htmx's history cache holds a logged-in page (%v): %.200s", err, cached)
	}
}
