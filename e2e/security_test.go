package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"

	"keysmith/accounts"
	"keysmith/testutil"
)

// A user turns on two-step verification with the secret the page shows
// (as a phone app would read it from the QR code), logs out, and logs in
// with their password and a code.
func TestTwoStepVerification(t *testing.T) {
	b := newTab(t)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	if _, err := app.Accounts.SignUp(context.Background(), accounts.SignUpInput{Email: "grace@example.com", Name: "Grace Hopper", Password: "a long enough password"}); err != nil {
		t.Fatal(err)
	}
	code := func() string {
		c, err := totp.GenerateCode(strings.ReplaceAll(b.text(`#totp-secret`), " ", ""), app.Clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	logIn := func(step string) {
		b.do(step,
			chromedp.Navigate(app.URL("/login")),
			chromedp.WaitVisible(`#email`),
			chromedp.SendKeys(`#email`, "grace@example.com"),
			chromedp.SendKeys(`#password`, "a long enough password"),
			chromedp.Click(`form[action="/login"] button[type=submit]`),
		)
	}

	logIn("log in")
	b.do("open Security", chromedp.WaitVisible(`a[href="/settings/security"]`), chromedp.Click(`a[href="/settings/security"]`),
		chromedp.WaitVisible(`form[action="/settings/security/two-factor"] button`))
	b.shot("01-security-off")
	b.do("set up an authenticator app", chromedp.Click(`form[action="/settings/security/two-factor"] button`),
		chromedp.WaitVisible(`#totp-secret`), chromedp.WaitVisible(`img.qr`))
	if qrWidth, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelector("img.qr").naturalWidth`)); err != nil || qrWidth == 0 {
		t.Fatalf("the QR code did not load (%d): %v", qrWidth, err)
	}
	b.shot("02-totp-setup")
	b.accessible("Set up an authenticator app")
	b.narrow("02-totp-setup-390")
	secret := strings.ReplaceAll(b.text(`#totp-secret`), " ", "")
	b.do("confirm with a code", chromedp.SendKeys(`#code`, code()), chromedp.Click(`form[action="/settings/security/two-factor/confirm"] button`),
		chromedp.WaitVisible(`#recovery-codes`))
	if codes := strings.Fields(b.value(`#recovery-codes`)); len(codes) != accounts.RecoveryCodeCount {
		t.Fatalf("%d recovery codes shown", len(codes))
	}
	b.shot("03-recovery-codes")
	b.accessible("the recovery codes")
	b.narrow("03-recovery-codes-390")
	b.do("back to Security", chromedp.Click(`a[href="/settings/security"].btn, main a[href="/settings/security"]`), chromedp.WaitVisible(`#recovery-left`))
	if got := b.text(`#recovery-left`); got != "10 of 10 recovery codes left." {
		t.Fatalf("recovery codes left: %q", got)
	}
	if got := b.text(`#sessions tbody`); !strings.Contains(got, "This session") || !strings.Contains(got, "Linux") {
		t.Fatalf("sessions: %q", got)
	}
	b.shot("04-security-on")
	b.do("log out", chromedp.Click(`.topbar form[action="/logout"] button`), chromedp.WaitVisible(`.flash.info`))

	logIn("log in with the password")
	b.do("second step asked", chromedp.WaitVisible(`form[action="/login/two-factor"] #code`))
	b.shot("05-second-step")
	b.accessible("the second step of signing in")
	b.narrow("05-second-step-390")
	app.Clock.Advance(30 * time.Second)
	now, err := totp.GenerateCode(secret, app.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	b.do("enter the code", chromedp.SendKeys(`#code`, now), chromedp.Click(`form[action="/login/two-factor"] button`),
		chromedp.WaitVisible(`a[href="/settings/security"]`))
	if got := b.text(`main h1`); got != "API Keys" {
		t.Fatalf("after the second step the page is %q", got)
	}
	b.shot("06-signed-in")
}
