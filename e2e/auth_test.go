// Package e2e drives the real dashboard in headless Chromium through the
// main click paths, saving a screenshot of each page it passes.
package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"keysmith/testutil"
)

// tab wraps one browser tab with the test's failure handling: a failing
// step saves a screenshot before it fails the test.
type tab struct {
	t     *testing.T
	ctx   context.Context
	shots string
}

func newTab(t *testing.T) *tab {
	return &tab{t: t, ctx: testutil.Browser(t), shots: testutil.ArtifactDir(t)}
}

func (b *tab) shot(name string) { testutil.Screenshot(b.t, b.ctx, b.shots, name) }

// settled waits until htmx has no request, swap or settle under way, so
// the next step acts on the page a person would see, not one being replaced.
// A poll does not survive a navigation (chromedp answers "Cannot find
// context with specified id" when a submitted form replaces the page under
// it), so it is asked again on the new page until the step's deadline.
var settled chromedp.Action[chromedp.Void] = func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
	ready := chromedp.Poll[chromedp.Void](
		`document.readyState === "complete" && !document.querySelector(".htmx-request, .htmx-swapping, .htmx-settling")`,
		chromedp.WithPollingInterval(20*time.Millisecond))
	for {
		v, err := ready(ctx, t)
		if err == nil || ctx.Err() != nil {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (b *tab) do(step string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, append(actions, settled)...); err != nil {
		b.shot("failed-" + strings.ReplaceAll(step, " ", "-"))
		b.t.Fatalf("%s: %v", step, err)
	}
}

func (b *tab) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(sel))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

func (b *tab) value(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Value(sel))
	if err != nil {
		b.t.Fatalf("value of %s: %v", sel, err)
	}
	return s
}

// mailedLink opens the newest mail in the dev mailbox, as a person
// would, and returns its link containing marker.
func (b *tab) mailedLink(app *testutil.App, marker string) string {
	b.t.Helper()
	b.do("open the newest mail", chromedp.Navigate(app.URL("/dev/mailbox")), chromedp.WaitVisible(`.mail-list a`), chromedp.Click(`.mail-list a`), chromedp.WaitVisible(`pre.mail-text`))
	for _, f := range strings.Fields(b.text(`pre.mail-text`)) {
		if strings.Contains(f, marker) {
			return f
		}
	}
	b.t.Fatalf("no link with %q in the mail: %s", marker, b.text(`pre.mail-text`))
	return ""
}

func TestSignUpLogInSettingsLogOut(t *testing.T) {
	b := newTab(t)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))

	b.do("open sign-up", chromedp.Navigate(app.URL("/")), chromedp.WaitVisible(`a[href="/signup"]`), chromedp.Click(`a[href="/signup"]`), chromedp.WaitVisible(`#email`))
	b.do("sign up with a short password",
		chromedp.SendKeys(`#email`, "grace@example.com"),
		chromedp.SendKeys(`#name`, "Grace Hopper"),
		chromedp.SendKeys(`#password`, "short"),
		chromedp.Click(`button[type=submit]`),
		chromedp.WaitVisible(`#password-error`),
	)
	if got := b.text(`#password-error`); !strings.Contains(got, "at least 8") {
		t.Fatalf("password error = %q", got)
	}
	if got := b.value(`#email`); got != "grace@example.com" {
		t.Fatalf("email after the error = %q", got)
	}
	b.shot("01-signup-error")
	b.accessible("sign-up with errors")
	b.narrow("01-signup-error-390")

	b.do("sign up",
		chromedp.SendKeys(`#password`, "a long enough password"),
		chromedp.Click(`button[type=submit]`),
		chromedp.WaitVisible(`.flash.info`),
	)
	if got := b.text(`.flash.info`); !strings.Contains(got, "We have sent a link to grace@example.com") {
		t.Fatalf("after sign-up: %q", got)
	}
	b.shot("02-signup-check-your-email")
	link := b.mailedLink(app, "/signup/confirm?token=")
	b.do("open the link", chromedp.Navigate(link), chromedp.WaitVisible(`form[action="/signup/confirm"] button`))
	b.shot("02-signup-confirm")
	b.accessible("the sign-up confirmation")
	b.narrow("02-signup-confirm-390")
	b.do("confirm", chromedp.Click(`form[action="/signup/confirm"] button`), chromedp.WaitVisible(`.flash.success`))
	if got := b.text(`main h1`); got != "API Keys" {
		t.Fatalf("after sign-up the page is %q", got)
	}
	b.shot("03-api-keys-empty")

	b.do("open Team", chromedp.Click(`a[href="/settings/team"]`), chromedp.WaitVisible(`table`))
	if got := b.text(`table tbody`); !strings.Contains(got, "grace@example.com") || !strings.Contains(got, "owner") {
		t.Fatalf("team table = %q", got)
	}
	b.shot("03-team")
	b.do("open Account", chromedp.Click(`a[href="/settings/account"]`), chromedp.WaitVisible(`#current_password`))
	b.do("change password with a wrong current one",
		chromedp.SendKeys(`#current_password`, "not my password"),
		chromedp.SendKeys(`#new_password`, "an even longer password"),
		chromedp.Click(`form[action="/settings/account/password"] button`),
		chromedp.WaitVisible(`#current_password-error`), // a 422 under hx-boost must still show
	)
	b.shot("04-account-error")
	b.do("change password",
		chromedp.SendKeys(`#current_password`, "a long enough password"),
		chromedp.SendKeys(`#new_password`, "an even longer password"),
		chromedp.Click(`form[action="/settings/account/password"] button`),
		chromedp.WaitVisible(`.flash.success`),
	)
	if got := b.text(`.flash.success`); !strings.Contains(got, "Password changed") {
		t.Fatalf("password change flash = %q", got)
	}

	b.do("log out", chromedp.Click(`.topbar form[action="/logout"] button`), chromedp.WaitVisible(`.flash.info`))
	if got := b.text(`.flash.info`); got != "You have been logged out." {
		t.Fatalf("logout flash = %q", got)
	}
	b.shot("05-logged-out")

	b.do("protected page after logout", chromedp.Navigate(app.URL("/settings/team")), chromedp.WaitVisible(`form[action="/login"]`))
	b.do("wrong password",
		chromedp.SendKeys(`#email`, "grace@example.com"),
		chromedp.SendKeys(`#password`, "not my password"),
		chromedp.Click(`button[type=submit]`),
		chromedp.WaitVisible(`.flash.error`),
	)
	b.shot("06-login-error")
	b.do("log in",
		chromedp.SendKeys(`#password`, "an even longer password"),
		chromedp.Click(`button[type=submit]`),
		chromedp.WaitVisible(`table`), // back on Team, where login was asked for
	)
	if got := b.text(`main h1`); got != "Team" {
		t.Fatalf("after login the page is %q, want the Team page that asked for it", got)
	}

}
