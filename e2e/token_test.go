package e2e

import (
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"keysmith/accounts"
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
	u, err := app.Accounts.SignUp(t.Context(), accounts.SignUpInput{Email: "grace@example.com", Name: "Grace", Password: "a long enough password"})
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := app.Accounts.Memberships(t.Context(), u.ID)
	k, err := app.Keys.Create(t.Context(), ms[0].WorkspaceID, app.Keys.UserActor(u, ms[0].Role, "", ""),
		keys.CreateInput{Name: "uploader", Kind: keys.Secret, Env: keys.Live, Permission: keys.PermCustom, Scopes: []string{"files:read", "files:write"}, ExpiresIn: "30"})
	if err != nil {
		t.Fatal(err)
	}

	b.do("log in",
		chromedp.Navigate(app.URL("/login")),
		chromedp.SendKeys(`#email`, "grace@example.com"),
		chromedp.SendKeys(`#password`, "a long enough password"),
		chromedp.Click(`button[type=submit]`),
		chromedp.WaitVisible(`table.keys`),
	)
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
	status := func() int {
		req, _ := http.NewRequest(http.MethodGet, app.URL("/v1/auth/test"), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if got := status(); got != 200 {
		t.Fatalf("the token on the API: %d", got)
	}
	if _, err := app.Keys.Revoke(t.Context(), ms[0].WorkspaceID, app.Keys.UserActor(u, ms[0].Role, "", ""), k.Key.ID); err != nil {
		t.Fatal(err)
	}
	if got := status(); got != 401 {
		t.Fatalf("the token after its key was revoked: %d", got)
	}
}
