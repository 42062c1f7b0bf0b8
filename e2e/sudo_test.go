package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"keysmith/accounts"
	"keysmith/config"
	"keysmith/models"
	"keysmith/testutil"
)

// Sudo mode: an hour after signing in (a 10-minute window here), creating
// a key asks for the password, and then creates the key the form described,
// without typing it again.
func TestSudoConfirmKeepsTheKeyForm(t *testing.T) {
	b := newTab(t)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"), testutil.WithConfig(func(c *config.Config) { c.SudoTimeout = 10 * time.Minute }))
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
	b.do("open the create form", chromedp.Click(`.empty a.btn`), chromedp.WaitVisible(`form.key-form`))
	b.do("fill it",
		chromedp.SendKeys(`#name`, "deploy-bot"),
		chromedp.Click(`input[name=permission][value=custom]`),
		chromedp.WaitVisible(`.scope-groups`),
		chromedp.Click(`input[name=scopes][value="files:write"]`),
		chromedp.Click(`input[name=scopes][value="projects:read"]`),
	)
	app.Clock.Advance(11 * time.Minute)
	b.do("create", chromedp.Click(`form.key-form button[type=submit]`), chromedp.WaitVisible(`#confirm-access #_sudo_password`))
	b.shot("01-confirm-access")
	b.accessible("Confirm access")
	b.narrow("01-confirm-access-390")
	b.do("a wrong password", chromedp.SendKeys(`#_sudo_password`, "not it"), chromedp.Click(`#confirm-access button[type=submit]`),
		chromedp.WaitVisible(`#_sudo_password-error`))
	b.do("the password", chromedp.SendKeys(`#_sudo_password`, "a long enough password"), chromedp.Click(`#confirm-access button[type=submit]`),
		chromedp.WaitVisible(`#secret`))
	b.shot("02-secret-after-confirming")
	if got := b.text(`main`); !strings.Contains(got, "deploy-bot") {
		t.Fatalf("the secret page does not name the key: %q", got)
	}
	var k models.APIKey
	if err := app.DB.Where("name = ?", "deploy-bot").Take(&k).Error; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(k.Scopes, "files:write") || !strings.Contains(k.Scopes, "projects:read") {
		t.Fatalf("created with scopes %q", k.Scopes)
	}
}
