package e2e

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"keysmith/keys"
	"keysmith/testutil"
	"keysmith/tokens"
)

// TestIssueATemporaryToken issues a token from a key's page with one of
// its scopes, copies it, uses it on the API, and sees the API refuse it
// once its key is revoked.
func TestIssueATemporaryToken(t *testing.T) {
	b := newTab(t)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	o := newOwner(t, app, "grace@example.com",
		keys.CreateInput{Name: "uploader", Kind: keys.Secret, Env: keys.Live, Permission: keys.PermCustom, Scopes: []string{"files:read", "files:write"}, ExpiresIn: "30"})
	o.logIn(b)
	grantClipboard(t, b.ctx, app.Server.URL)
	b.do("open the key", chromedp.Click(`//a[strong[normalize-space()="uploader"]]`), chromedp.WaitVisible(`#token`))
	b.do("narrow the token",
		chromedp.Click(`#token input[value="files:write"]`), // unchecked: files:read alone
		chromedp.SetValue(`#token_lifetime`, "5m0s"),
		chromedp.ScrollIntoView(`#token`),
	)
	b.shot("token-01-form")
	b.do("issue", chromedp.Click(`#token button[type=submit]`), chromedp.WaitVisible(`#secret`))
	token := b.value(`#secret`)
	if !tokens.LooksLikeJWT(token) || !strings.Contains(b.text(`main`), "files:read") || strings.Contains(b.text(`dl.facts`), "files:write") {
		t.Fatalf("token page: %q", b.text(`main`))
	}
	b.shot("token-02-shown-once")
	b.do("copy", chromedp.Click(`button[data-copy="#secret"]`), chromedp.WaitVisible(`//button[normalize-space()="Copied"]`))
	copied, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`navigator.clipboard.readText()`, chromedp.EvalAwaitPromise))
	if err != nil || copied != token {
		t.Fatalf("clipboard holds %q (%v), want the token", copied, err)
	}
	if got := apiStatus(t, app, token); got != 200 {
		t.Fatalf("the token on the API: %d", got)
	}
	if _, err := app.Keys.Revoke(t.Context(), o.ws, o.actor, o.key.Key.ID); err != nil {
		t.Fatal(err)
	}
	if got := apiStatus(t, app, token); got != 401 {
		t.Fatalf("the token after its key was revoked: %d", got)
	}
}
