package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"keysmith/accounts"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
)

// TestSecondaryPages walks the pages the main click paths do not reach:
// password reset, workspace settings, a removed member's keys, the audit
// log filtered, unsubscribing, and a missing page.
func TestSecondaryPages(t *testing.T) {
	b := newTab(t)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	owner, err := app.Accounts.SignUp(t.Context(), accounts.SignUpInput{Email: "olga@example.com", Name: "Olga", Password: "a long enough password"})
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := app.Accounts.Memberships(t.Context(), owner.ID)
	ws := ms[0].WorkspaceID
	leaver, _ := app.Accounts.SignUp(t.Context(), accounts.SignUpInput{Email: "leo@example.com", Name: "Leo", Password: "a long enough password"})
	app.DB.Create(&models.Membership{WorkspaceID: ws, UserID: leaver.ID, Role: models.RoleEditor})
	leoKey, err := app.Keys.Create(t.Context(), ws, app.Keys.UserActor(leaver, models.RoleEditor, "", ""), keys.CreateInput{Name: "leo-ci", Kind: keys.Secret, Env: keys.Live, Permission: keys.PermRead, ExpiresIn: "7"})
	if err != nil {
		t.Fatal(err)
	}
	madeEarlier(t, app, leoKey.Key, 24*time.Hour)

	b.do("forgot password",
		chromedp.Navigate(app.URL("/login")),
		chromedp.WaitVisible(`a[href="/forgot-password"]`),
		chromedp.Click(`a[href="/forgot-password"]`),
		chromedp.WaitVisible(`#email`),
		chromedp.SendKeys(`#email`, "olga@example.com"),
		chromedp.Click(`button[type=submit]`),
		chromedp.WaitVisible(`.flash.info`),
	)
	b.shot("01-forgot-sent")
	link := ""
	for _, f := range strings.Fields(app.Mails()[0].Text) {
		if strings.Contains(f, "/reset-password?token=") {
			link = f
		}
	}
	b.do("reset", chromedp.Navigate(link), chromedp.WaitVisible(`#password`))
	b.shot("02-reset-form")
	b.do("new password",
		chromedp.SendKeys(`#password`, "a brand new password"),
		chromedp.Click(`button[type=submit]`),
		chromedp.WaitVisible(`.flash.success`),
	)
	b.do("log in with it",
		chromedp.SendKeys(`#email`, "olga@example.com"),
		chromedp.SendKeys(`#password`, "a brand new password"),
		chromedp.Click(`button[type=submit]`),
		chromedp.WaitVisible(`table.keys`),
	)

	b.do("workspace settings", chromedp.Click(`a[href="/settings/workspace"]`), chromedp.WaitVisible(`form[action="/settings/workspace/key-policy"]`))
	b.do("save a key policy",
		chromedp.SetValue(`#default_expiry_days`, "30"),
		chromedp.SendKeys(`#max_lifetime_days`, "60"),
		chromedp.Click(`form[action="/settings/workspace/key-policy"] button`),
		chromedp.WaitVisible(`.flash.success`),
	)
	b.shot("03-workspace")

	b.do("remove Leo",
		chromedp.Click(`a[href="/settings/team"]`),
		chromedp.WaitVisible(`table.members`),
		chromedp.Click(`//tr[contains(., "leo@example.com")]//summary`),
		chromedp.Click(`//tr[contains(., "leo@example.com")]//button[contains(., "Yes, remove")]`),
		chromedp.WaitVisible(`.flash.info a`),
	)
	b.shot("04-removed")
	b.do("review his keys", chromedp.Click(`.flash.info a`), chromedp.WaitVisible(`.badge.former`))
	if got := b.text(`table.keys tbody`); !strings.Contains(got, "leo-ci") || !strings.Contains(got, "former member") {
		t.Fatalf("review list: %s", got)
	}
	b.shot("05-former-members-keys")

	b.do("audit log filtered", chromedp.Navigate(app.URL("/settings/audit-log?action=member.removed")), chromedp.WaitVisible(`table.audit`))
	if got := b.text(`table.audit tbody`); !strings.Contains(got, "leo@example.com") || strings.Contains(got, "key.created") {
		t.Fatalf("filtered audit log: %s", got)
	}
	b.shot("06-audit-filtered")

	if err := app.Reminders.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	unsubscribe := strings.Trim(app.Mails()[0].Headers["List-Unsubscribe"], "<>")
	b.do("unsubscribe page", chromedp.Navigate(unsubscribe), chromedp.WaitVisible(`form button`))
	b.shot("07-unsubscribe")
	b.do("unsubscribe", chromedp.Click(`form button`), chromedp.WaitVisible(`.flash.success`))
	b.shot("08-unsubscribed")

	b.do("missing page", chromedp.Navigate(app.URL("/settings/nothing")), chromedp.WaitVisible(`.error-page`))
	if got := b.text(`h1`); got != "Page not found" {
		t.Fatalf("404 page: %q", got)
	}
	b.shot("09-not-found")
}
