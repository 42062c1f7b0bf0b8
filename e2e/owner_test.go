package e2e

import (
	"net/http"
	"testing"

	"github.com/chromedp/chromedp"

	"keysmith/accounts"
	"keysmith/keys"
	"keysmith/testutil"
)

const ownerPassword = "a long enough password"

// owner is a user with a key in their workspace, for tests that start
// from the key list.
type owner struct {
	app   *testutil.App
	email string
	ws    int64
	actor keys.Actor
	key   keys.Created
}

// newOwner signs up email and creates key in their workspace.
func newOwner(t *testing.T, app *testutil.App, email string, key keys.CreateInput) *owner {
	t.Helper()
	u, err := app.Accounts.SignUp(t.Context(), accounts.SignUpInput{Email: email, Name: "Owner", Password: ownerPassword})
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := app.Accounts.Memberships(t.Context(), u.ID)
	o := &owner{app: app, email: email, ws: ms[0].WorkspaceID, actor: app.Keys.UserActor(u, ms[0].Role, "", "")}
	if o.key, err = app.Keys.Create(t.Context(), o.ws, o.actor, key); err != nil {
		t.Fatal(err)
	}
	return o
}

// logIn logs the owner in, in the browser, and waits for the key list.
func (o *owner) logIn(b *tab) {
	b.do("log in",
		chromedp.Navigate(o.app.URL("/login")),
		chromedp.SendKeys(`#email`, o.email),
		chromedp.SendKeys(`#password`, ownerPassword),
		chromedp.Click(`button[type=submit]`),
		chromedp.WaitVisible(`table.keys`),
	)
}

// apiStatus is the status GET /v1/auth/test answers with bearer.
func apiStatus(t *testing.T, app *testutil.App, bearer string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, app.URL("/v1/auth/test"), nil)
	req.Header.Set("Authorization", "Bearer "+bearer)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}
