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

func TestReminderMailAndNotificationSettings(t *testing.T) {
	b := newTab(t)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	u, err := app.Accounts.SignUp(t.Context(), accounts.SignUpInput{Email: "ada@example.com", Name: "Ada", Password: "a long enough password"})
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := app.Accounts.Memberships(t.Context(), u.ID)
	actor := app.Keys.UserActor(u, models.RoleOwner, "", "")
	k, err := app.Keys.Create(t.Context(), ms[0].WorkspaceID, actor, keys.CreateInput{Name: "billing-worker", Kind: keys.Secret, Env: keys.Live, Permission: keys.PermRead, ExpiresIn: "7"})
	if err != nil {
		t.Fatal(err)
	}
	madeEarlier(t, app, k.Key, 24*time.Hour)
	if err := app.Reminders.Run(t.Context()); err != nil {
		t.Fatal(err)
	}

	b.do("open the reminder in the dev mailbox",
		chromedp.Navigate(app.URL("/dev/mailbox")),
		chromedp.WaitVisible(`.mail-list a`),
		chromedp.Click(`.mail-list a`),
		chromedp.WaitVisible(`iframe.mail-frame`),
	)
	if got := b.text(`main h1`); got != `Your API key "billing-worker" expires in 7 days` {
		t.Fatalf("subject %q", got)
	}
	if got := b.text(`pre.mail-text`); !strings.Contains(got, "Rotate it before then") || !strings.Contains(got, "/unsubscribe/") {
		t.Fatalf("text part: %s", got)
	}
	// The message page frames the HTML part in a sandbox; open it alone to
	// see exactly what a mail client renders.
	b.do("the HTML part on its own", chromedp.Navigate(app.URL("/dev/mailbox/1/html")), chromedp.WaitVisible(`a[href*="/settings/api-keys/"]`))
	if got := b.text(`body`); !strings.Contains(got, "Rotate the key") || !strings.Contains(got, "billing-worker") || !strings.Contains(got, "never") {
		t.Fatalf("HTML part: %s", got)
	}
	b.shot("01-reminder-mail")

	b.do("log in",
		chromedp.Navigate(app.URL("/login")),
		chromedp.WaitVisible(`#email`),
		chromedp.SendKeys(`#email`, "ada@example.com"),
		chromedp.SendKeys(`#password`, "a long enough password"),
		chromedp.Click(`button[type=submit]`),
		chromedp.WaitVisible(`table.keys`),
	)
	b.do("notifications", chromedp.Click(`a[href="/settings/notifications"]`), chromedp.WaitVisible(`table.deliveries`))
	if got := b.text(`table.deliveries tbody`); !strings.Contains(got, "billing-worker") || !strings.Contains(got, "sent") || !strings.Contains(got, "7 days before") {
		t.Fatalf("delivery log: %s", got)
	}
	b.shot("02-notifications")
	b.do("turn reminders off",
		chromedp.Click(`input[name=reminders]`),
		chromedp.Click(`form[action="/settings/notifications"] button`),
		chromedp.WaitVisible(`.flash.success`),
	)
	if got := b.text(`.flash.success`); !strings.Contains(got, "no longer") {
		t.Fatalf("flash %q", got)
	}
	var user models.User
	app.DB.Take(&user, u.ID)
	if !user.RemindersOptOut {
		t.Fatal("the opt-out was not saved")
	}
}

// madeEarlier makes k as if created ago earlier, its expiry unchanged,
// with its reminders planned from then: a key made 8 days before its
// expiry, whose 7-day reminder is due now (one made with exactly 7 days
// left never gets that mail).
func madeEarlier(t *testing.T, app *testutil.App, k models.APIKey, ago time.Duration) {
	t.Helper()
	created := k.CreatedAt.Add(-ago)
	if err := app.DB.Model(&models.APIKey{}).Where("id = ?", k.ID).
		Updates(map[string]any{"created_at": created, "reminder_due_at": keys.FirstReminderAt(created, k.ExpiresAt)}).Error; err != nil {
		t.Fatal(err)
	}
}
