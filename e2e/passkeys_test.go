package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"keysmith/accounts"
	"keysmith/config"
	"keysmith/models"
	"keysmith/testutil"
)

// onLocalhost serves the test app as http://localhost:PORT: WebAuthn
// refuses an IP address as relying party.
func onLocalhost() testutil.Option {
	return testutil.WithConfig(func(c *config.Config) {
		c.BaseURL = strings.Replace(c.BaseURL, "//127.0.0.1:", "//localhost:", 1)
	})
}

// virtualAuthenticator gives the tab a platform authenticator that holds
// discoverable credentials and verifies its user at once, as a laptop's
// fingerprint reader would.
func virtualAuthenticator(b *tab) {
	b.t.Helper()
	b.do("add a virtual authenticator", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := cdp.Call(ctx, t, webauthn.Enable, webauthn.EnableParams{}); err != nil {
			return fmt.Errorf("enable: %w", err)
		}
		_, err := cdp.Call(ctx, t, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{Options: &webauthn.VirtualAuthenticatorOptions{
			Protocol: webauthn.AuthenticatorProtocolCtap2, Ctap2version: webauthn.Ctap2versionCtap21,
			Transport: webauthn.AuthenticatorTransportInternal, HasResidentKey: true, HasUserVerification: true,
			IsUserVerified: true, AutomaticPresenceSimulation: true,
		}})
		return err
	}))
}

// A user adds a passkey on Settings → Security, signs out, signs in with
// the passkey alone, then with their password and the passkey as the
// second step, and removes it.
func TestPasskeys(t *testing.T) {
	b := newTab(t)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"), onLocalhost())
	url := func(path string) string { return app.Config.BaseURL + path }
	if _, err := app.Accounts.SignUp(t.Context(), accounts.SignUpInput{Email: "grace@example.com", Name: "Grace Hopper", Password: "a long enough password"}); err != nil {
		t.Fatal(err)
	}
	b.do("open the login page", chromedp.Navigate(url("/login")), chromedp.WaitVisible(`#email`))
	virtualAuthenticator(b)
	logOut := func() {
		b.do("log out", chromedp.Click(`.topbar form[action="/logout"] button`), chromedp.WaitVisible(`.flash.info`))
	}

	b.do("log in with the password",
		chromedp.Navigate(url("/login")),
		chromedp.WaitVisible(`#email`),
		chromedp.SendKeys(`#email`, "grace@example.com"),
		chromedp.SendKeys(`#password`, "a long enough password"),
		chromedp.Click(`form[action="/login"] button[type=submit]`),
		chromedp.WaitVisible(`a[href="/settings/security"]`))
	b.do("open Security", chromedp.Navigate(url("/settings/security")), chromedp.WaitVisible(`#passkeys`))
	if got := b.text(`#no-passkeys`); got != "No passkeys yet." {
		t.Fatalf("passkeys card: %q", got)
	}
	b.do("add a passkey",
		chromedp.WaitVisible(`form[data-passkey="register"] #passkey-name`),
		chromedp.SendKeys(`#passkey-name`, "Work laptop"),
		chromedp.Click(`form[data-passkey="register"] button[type=submit]`),
		chromedp.WaitVisible(`#passkeys tr.passkey`))
	b.shot("01-passkey-added")
	b.do("open the confirmation", chromedp.Click(`#passkeys details.confirm summary`), chromedp.WaitVisible(`#passkeys details.confirm form button`))
	for _, v := range b.axe() {
		t.Errorf("axe on the passkey list: %s (%s): %s %v", v.ID, v.Impact, v.Help, v.Nodes)
	}
	b.do("close the confirmation", chromedp.Click(`#passkeys details.confirm summary`))
	if got := b.text(`.flash.success`); !strings.Contains(got, "Work laptop") {
		t.Fatalf("flash after adding: %q", got)
	}
	if got := b.value(`#passkeys tr.passkey input[name=name]`); got != "Work laptop" {
		t.Fatalf("passkey name: %q", got)
	}
	var row models.Passkey
	if err := app.DB.Take(&row).Error; err != nil || len(row.CredentialID) == 0 || len(row.PublicKey) == 0 || row.Transports != "internal" {
		t.Fatalf("stored passkey %+v: %v", row, err)
	}
	if mails := app.Mails(); len(mails) == 0 || mails[0].Subject != "A passkey was added to your Keysmith account" {
		t.Fatalf("no mail about the new passkey")
	}

	// An hour on, creating a key asks to confirm access; the passkey does,
	// and the key the form described is made.
	app.Clock.Advance(61 * time.Minute)
	b.do("open the create form", chromedp.Navigate(url("/settings/api-keys/new")), chromedp.WaitVisible(`form.key-form #name`))
	b.do("create a key", chromedp.SendKeys(`#name`, "deploy-bot"), chromedp.Click(`form.key-form button[type=submit]`),
		chromedp.WaitVisible(`#confirm-access form[data-passkey="confirm"] button`))
	b.shot("02-confirm-access-with-a-passkey")
	b.do("confirm with the passkey", chromedp.Click(`#confirm-access form[data-passkey="confirm"] button`), chromedp.WaitVisible(`#secret`))
	if err := app.DB.Where("name = ?", "deploy-bot").Take(&models.APIKey{}).Error; err != nil {
		t.Fatalf("no key after confirming with the passkey: %v", err)
	}

	// The login page offers the passkey in the email field's autofill
	// (conditional mediation); the virtual authenticator picks it at once,
	// as a person choosing it from the autofill list would.
	b.do("log out", chromedp.Click(`.topbar form[action="/logout"] button`))
	// The logged-out login page comes and goes (its page context with it):
	// wait for the keys page the autofill's sign-in leads to.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		h1, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`location.pathname + " " + ((document.querySelector("main h1") || {}).textContent || "").trim()`))
		if err == nil && h1 == "/settings/api-keys API Keys" {
			break
		}
		if time.Now().After(deadline) {
			b.shot("failed-autofill")
			t.Fatalf("the autofill did not sign in: %q %v", h1, err)
		}
	}
	b.do("let the keys page settle", chromedp.WaitVisible(`a[href="/settings/security"]`))

	// From here the browser offers no autofill, so the login page waits
	// for a click.
	const noAutofill = `PublicKeyCredential.isConditionalMediationAvailable = () => Promise.resolve(false);`
	b.do("turn the autofill off", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: noAutofill})
		return err
	}), chromedp.Evaluate[chromedp.Void](noAutofill))
	logOut()
	b.do("sign in with the passkey button",
		chromedp.WaitVisible(`form[data-passkey="sign-in"] button`),
		chromedp.Click(`form[data-passkey="sign-in"] button`),
		chromedp.WaitVisible(`a[href="/settings/security"]`))
	if got := b.text(`main h1`); got != "API Keys" {
		t.Fatalf("after the passkey sign-in the page is %q", got)
	}
	b.shot("03-signed-in-with-passkey")
	logOut()

	b.do("log in with the password again",
		chromedp.Navigate(url("/login")),
		chromedp.WaitVisible(`#email`),
		chromedp.SendKeys(`#email`, "grace@example.com"),
		chromedp.SendKeys(`#password`, "a long enough password"),
		chromedp.Click(`form[action="/login"] button[type=submit]`),
		chromedp.WaitVisible(`form[data-passkey="second-step"] button`))
	b.shot("04-second-step-passkey")
	if n, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll("#code").length`)); err != nil || n != 0 {
		t.Fatalf("a user without an authenticator app is asked for a code (%d, %v)", n, err)
	}
	b.do("use the passkey as the second step",
		chromedp.Click(`form[data-passkey="second-step"] button`),
		chromedp.WaitVisible(`a[href="/settings/security"]`))
	if got := b.text(`main h1`); got != "API Keys" {
		t.Fatalf("after the second step the page is %q", got)
	}

	b.do("open Security again", chromedp.Navigate(url("/settings/security")), chromedp.WaitVisible(`#passkeys tr.passkey`))
	if got := b.text(`#passkeys tr.passkey`); !strings.Contains(got, "Never") && !strings.Contains(got, "ago") && !strings.Contains(got, "now") {
		t.Fatalf("passkey row: %q", got)
	}
	b.do("remove the passkey",
		chromedp.Click(`#passkeys details.confirm summary`),
		chromedp.WaitVisible(`#passkeys details.confirm form button`),
		chromedp.Click(`#passkeys details.confirm form button`),
		chromedp.WaitVisible(`#no-passkeys`))
	b.shot("05-passkey-removed")
	var n int64
	app.DB.Model(&models.Passkey{}).Count(&n)
	if n != 0 {
		t.Fatalf("%d passkeys left after removing", n)
	}
	var events []string
	app.DB.Model(&models.AuditEvent{}).Where("action LIKE ?", "passkey.%").Order("id").Pluck("action", &events)
	if strings.Join(events, " ") != "passkey.added passkey.used passkey.used passkey.used passkey.used passkey.removed" {
		t.Fatalf("audit events: %v", events)
	}
}
