package handlers_test

import (
	"context"
	"keysmith/mailer"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"keysmith/accounts"
	"keysmith/testutil"
)

const password = "correct horse battery"

// signUp creates an account through the sign-up form and the emailed
// confirmation link, and returns the logged-in client.
func signUp(t *testing.T, app *testutil.App, email string) *testutil.Client {
	t.Helper()
	c := app.NewClient(t)
	page := c.Submit(c.Get("/signup"), "form[action='/signup']", map[string]string{
		"email": email, "name": "Ada Lovelace", "password": password,
	})
	page = confirmSignUp(t, app, c, page, email)
	if page.Status != http.StatusOK || page.URL.Path != "/settings/api-keys" {
		t.Fatalf("sign-up ended at %d %s:\n%s", page.Status, page.URL, page.Body)
	}
	return c
}

// confirmSignUp follows the confirmation link mailed to email after the
// sign-up form answered with page, and presses the button it shows.
func confirmSignUp(t *testing.T, app *testutil.App, c *testutil.Client, page *testutil.Page, email string) *testutil.Page {
	t.Helper()
	if page.Status != http.StatusOK || !strings.Contains(page.Text(".flash"), "We have sent a link to "+strings.ToLower(email)) {
		t.Fatalf("sign-up answered %d %q:\n%s", page.Status, page.Text(".flash"), page.Text("main"))
	}
	mail := mailTo(t, app, email)
	if mail.Subject != "Confirm your email for Keysmith" {
		t.Fatalf("mail to %s: %q, want the confirmation link", email, mail.Subject)
	}
	page = c.Get(strings.TrimPrefix(linkIn(t, mail.Text, "/signup/confirm?token="), app.Server.URL))
	return c.Submit(page, "form[action='/signup/confirm']", nil)
}

// mailTo is the newest mail to an address.
func mailTo(t *testing.T, app *testutil.App, email string) mailer.Stored {
	t.Helper()
	for _, m := range app.Mails() {
		if m.To[0] == strings.ToLower(email) {
			return m
		}
	}
	t.Fatalf("no mail to %s", email)
	return mailer.Stored{}
}

func logIn(t *testing.T, app *testutil.App, email, pw string) (*testutil.Client, *testutil.Page) {
	t.Helper()
	c := app.NewClient(t)
	page := c.Submit(c.Get("/login"), "form[action='/login']", map[string]string{"email": email, "password": pw})
	return c, page
}

func sessionCookie(c *testutil.Client, app *testutil.App) string {
	u, _ := url.Parse(app.Server.URL)
	for _, ck := range c.HTTP.Jar.Cookies(u) {
		if ck.Name == "keysmith_session" {
			return ck.Value
		}
	}
	return ""
}

func TestSignUpLogOutLogIn(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL)
		c := signUp(t, app, "ada@example.com")

		page := c.Get("/settings/api-keys")
		if got := page.Text(".flash"); got != "" {
			t.Errorf("flash shown twice: %q", got)
		}
		if got := page.Text(".user-chip"); got != "Ada Lovelace" {
			t.Errorf("user chip = %q", got)
		}
		if got := page.Text(".topbar .muted"); got != "Ada Lovelace's workspace" {
			t.Errorf("current workspace = %q", got)
		}
		if page.Doc.Find(".empty h2").Text() != "No API keys yet" {
			t.Errorf("API keys page lacks its empty state:\n%s", page.Body)
		}
		if page := c.Get("/signup/confirm?token=" + "x"); page.Status != http.StatusGone {
			t.Errorf("a made-up confirmation link answered %d", page.Status)
		}

		page = c.Submit(page, "form[action='/logout']", nil)
		if page.URL.Path != "/login" || page.Text(".flash") != "You have been logged out." {
			t.Fatalf("logout ended at %s with flash %q", page.URL, page.Text(".flash"))
		}
		if page = c.Get("/settings/team"); page.URL.Path != "/login" {
			t.Fatalf("after logout /settings/team answered from %s", page.URL)
		}

		_, page = logIn(t, app, "ADA@example.com", password)
		if page.URL.Path != "/settings/api-keys" {
			t.Fatalf("login ended at %s:\n%s", page.URL, page.Body)
		}
	})
}

func TestSignUpErrorsKeepInput(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	signUp(t, app, "taken@example.com")

	c := app.NewClient(t)
	page := c.Submit(c.Get("/signup"), "form[action='/signup']", map[string]string{
		"email": "taken@example.com", "name": "Second Ada", "password": "short",
	})
	if page.Status != http.StatusUnprocessableEntity {
		t.Fatalf("status %d, want 422", page.Status)
	}
	if v, _ := page.Doc.Find("#email").Attr("value"); v != "taken@example.com" {
		t.Errorf("email not kept: %q", v)
	}
	if v, _ := page.Doc.Find("#name").Attr("value"); v != "Second Ada" {
		t.Errorf("name not kept: %q", v)
	}
	if v, _ := page.Doc.Find("#password").Attr("value"); v != "" {
		t.Errorf("password echoed back into the form: %q", v)
	}
	if got := page.Text("#password-error"); !strings.Contains(got, "at least 8") {
		t.Errorf("password error = %q", got)
	}
	if inv, _ := page.Doc.Find("#password").Attr("aria-invalid"); inv != "true" {
		t.Error("invalid field not marked aria-invalid")
	}

}

// The sign-up form must not tell whether an address is registered: it
// answers a registered address exactly as a new one, and mails the owner
// instead. Only the mailbox's owner learns which it was.
func TestSignUpDoesNotTellRegisteredAddresses(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL)
		signUp(t, app, "taken@example.com")

		answer := func(email string) *testutil.Page {
			c := app.NewClient(t)
			return c.Submit(c.Get("/signup"), "form[action='/signup']", map[string]string{"email": email, "name": "Eve", "password": "long enough now"})
		}
		taken, fresh := answer("Taken@Example.com"), answer("fresh@example.com")
		if taken.Status != fresh.Status || taken.URL.Path != fresh.URL.Path {
			t.Fatalf("registered %d %s, new %d %s", taken.Status, taken.URL, fresh.Status, fresh.URL)
		}
		scrub := func(p *testutil.Page) string {
			return strings.ReplaceAll(strings.ReplaceAll(p.Text("main"), "taken@example.com", "X"), "fresh@example.com", "X")
		}
		if scrub(taken) != scrub(fresh) {
			t.Errorf("answers differ:\n%s\n%s", scrub(taken), scrub(fresh))
		}
		if names := slices.Sorted(maps.Keys(taken.Header)); !slices.Equal(names, slices.Sorted(maps.Keys(fresh.Header))) {
			t.Errorf("headers differ: %v / %v", taken.Header, fresh.Header)
		}

		owner := mailTo(t, app, "taken@example.com")
		if owner.Subject != "You already have a Keysmith account" || !strings.Contains(owner.Text, "/forgot-password") {
			t.Errorf("mail to the owner: %q\n%s", owner.Subject, owner.Text)
		}
		if strings.Contains(owner.Text, "/signup/confirm") {
			t.Error("the owner's mail carries a sign-up link")
		}
		// The owner's password still works and no second account appeared.
		if _, page := logIn(t, app, "taken@example.com", password); page.URL.Path != "/settings/api-keys" {
			t.Fatalf("owner's login after the attempt: %s", page.URL)
		}
		var users int64
		app.DB.Table("users").Where("email = ?", "taken@example.com").Count(&users)
		if users != 1 {
			t.Errorf("%d accounts for taken@example.com", users)
		}

		// The new address gets its account only once its link is used, once.
		mail := mailTo(t, app, "fresh@example.com")
		link := strings.TrimPrefix(linkIn(t, mail.Text, "/signup/confirm?token="), app.Server.URL)
		c := app.NewClient(t)
		confirm := c.Get(link)
		if _, err := app.Accounts.SignUp(t.Context(), accounts.SignUpInput{Email: "nobody-yet@example.com", Password: "long enough"}); err != nil {
			t.Fatal(err)
		}
		if app.DB.Table("users").Where("email = ?", "fresh@example.com").Count(&users); users != 0 {
			t.Fatal("opening the link (as a mail scanner would) created the account")
		}
		page := c.Submit(confirm, "form[action='/signup/confirm']", nil)
		if page.URL.Path != "/settings/api-keys" || page.Text(".user-chip") != "Eve" {
			t.Fatalf("after confirming: %s %q", page.URL, page.Text(".user-chip"))
		}
		if again := app.NewClient(t).Get(link); again.Status != http.StatusGone {
			t.Errorf("used link answered %d, want 410", again.Status)
		}
		// The link expires.
		c2 := app.NewClient(t)
		c2.Submit(c2.Get("/signup"), "form[action='/signup']", map[string]string{"email": "late@example.com", "password": "long enough now"})
		late := strings.TrimPrefix(linkIn(t, mailTo(t, app, "late@example.com").Text, "/signup/confirm?token="), app.Server.URL)
		app.Clock.Advance(accounts.SignUpLinkLifetime + time.Minute)
		if p := c2.Get(late); p.Status != http.StatusGone {
			t.Errorf("expired link answered %d", p.Status)
		}
	})
}

func TestLoginErrors(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	signUp(t, app, "ada@example.com")

	_, page := logIn(t, app, "ada@example.com", "wrong password")
	if page.Status != http.StatusUnauthorized || !strings.Contains(page.Text(".flash.error"), "do not match") {
		t.Fatalf("wrong password: %d %q", page.Status, page.Text(".flash.error"))
	}
	if v, _ := page.Doc.Find("#email").Attr("value"); v != "ada@example.com" {
		t.Errorf("email not kept after a failed login: %q", v)
	}
	_, unknown := logIn(t, app, "nobody@example.com", "wrong password")
	if unknown.Text(".flash.error") != page.Text(".flash.error") || unknown.Status != page.Status {
		t.Error("an unknown email answers differently from a wrong password")
	}

	_, page = logIn(t, app, "", "")
	if page.Status != http.StatusUnprocessableEntity || page.Text("#email-error") == "" || page.Text("#password-error") == "" {
		t.Fatalf("empty form: %d, errors %q %q", page.Status, page.Text("#email-error"), page.Text("#password-error"))
	}
}

func TestLoginIsRateLimited(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	signUp(t, app, "ada@example.com")
	for range accounts.MaxFailuresPerUser {
		if _, page := logIn(t, app, "ada@example.com", "wrong password"); page.Status != http.StatusUnauthorized {
			t.Fatalf("failure answered %d", page.Status)
		}
	}
	_, page := logIn(t, app, "ada@example.com", password)
	if page.Status != http.StatusTooManyRequests || page.Header.Get("Retry-After") != "900" {
		t.Fatalf("throttled login: %d, Retry-After %q", page.Status, page.Header.Get("Retry-After"))
	}
	if !strings.Contains(page.Text(".flash.error"), "Try again in 15 minutes") {
		t.Errorf("throttle message = %q", page.Text(".flash.error"))
	}
	app.Clock.Advance(accounts.LoginWindow)
	if _, page := logIn(t, app, "ada@example.com", password); page.URL.Path != "/settings/api-keys" {
		t.Fatalf("after the window: %d %s", page.Status, page.URL)
	}
}

func TestLoginRedirectsBackToRequestedPage(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	signUp(t, app, "ada@example.com")
	c := app.NewClient(t)
	page := c.Get("/settings/team")
	if page.URL.Path != "/login" || page.URL.Query().Get("next") != "/settings/team" {
		t.Fatalf("logged-out /settings/team went to %s", page.URL)
	}
	page = c.Submit(page, "form[action='/login']", map[string]string{"email": "ada@example.com", "password": password})
	if page.URL.Path != "/settings/team" {
		t.Fatalf("login went to %s, want /settings/team", page.URL)
	}

	for _, next := range []string{"//evil.example/x", "https://evil.example/", "/\\evil.example"} {
		c := app.NewClient(t)
		page := c.Submit(c.Get("/login?next="+url.QueryEscape(next)), "form[action='/login']", map[string]string{"email": "ada@example.com", "password": password})
		if page.URL.Host != app.Server.Listener.Addr().String() || page.URL.Path != "/settings/api-keys" {
			t.Errorf("next=%q sent the user to %s", next, page.URL)
		}
	}
}

func TestCSRFRefusesForeignPosts(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	signUp(t, app, "ada@example.com")

	c := app.NewClient(t)
	c.Get("/login") // has a CSRF cookie, but the post carries no token
	page := c.PostForm("/login", url.Values{"email": {"ada@example.com"}, "password": {password}})
	if page.Status != http.StatusBadRequest || sessionCookie(c, app) != "" {
		t.Fatalf("post without token: %d, session %q", page.Status, sessionCookie(c, app))
	}
	page = c.PostForm("/login", url.Values{"email": {"ada@example.com"}, "password": {password}, "_csrf": {"forged"}})
	if page.Status != http.StatusForbidden || page.Text("h1") != "This form has expired" {
		t.Fatalf("forged token: %d %q", page.Status, page.Text("h1"))
	}

	// A cross-site browser request is refused on Sec-Fetch-Site alone.
	req, _ := http.NewRequest(http.MethodPost, app.URL("/logout"), nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if page := c.Do(req); page.Status != http.StatusForbidden {
		t.Fatalf("cross-site post: %d", page.Status)
	}

	// HTMX requests carry the token in X-CSRF-Token.
	logged := signUp(t, app, "bob@example.com")
	settings := logged.Get("/settings/account")
	token, _ := settings.Doc.Find(`meta[name="csrf-token"]`).Attr("content")
	req, _ = http.NewRequest(http.MethodPost, app.URL("/logout"), nil)
	req.Header.Set("HX-Request", "true")
	req.Header.Set("X-CSRF-Token", token)
	res, err := logged.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent || res.Header.Get("HX-Redirect") != "/login" {
		t.Fatalf("htmx logout with header token: %d HX-Redirect %q", res.StatusCode, res.Header.Get("HX-Redirect"))
	}
}

func TestSessionCookieAndRenewal(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	c := signUp(t, app, "ada@example.com")
	// Logging out leaves an anonymous session (it carries the flash message):
	// the token an attacker could have planted before the next login.
	page := c.Submit(c.Get("/settings/account"), "form[action='/logout']", nil)
	before := sessionCookie(c, app)
	if before == "" {
		t.Fatal("no anonymous session after logout")
	}

	req, _ := http.NewRequest(http.MethodPost, app.URL("/login"), strings.NewReader(url.Values{
		"email": {"ada@example.com"}, "password": {password}, "_csrf": {csrfOf(page)},
	}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	c.HTTP.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	res, err := c.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", res.StatusCode)
	}
	var set *http.Cookie
	for _, ck := range res.Cookies() {
		if ck.Name == "keysmith_session" {
			set = ck
		}
	}
	if set == nil || set.Value == "" || set.Value == before {
		t.Fatalf("login did not issue a new session token (before %q, after %+v)", before, set)
	}
	fixated := app.NewClient(t)
	u, _ := url.Parse(app.Server.URL)
	fixated.HTTP.Jar.SetCookies(u, []*http.Cookie{{Name: "keysmith_session", Value: before}})
	if page := fixated.Get("/settings/account"); page.URL.Path != "/login" {
		t.Fatal("the pre-login token was logged in along with the new one")
	}
	if !set.HttpOnly || set.SameSite != http.SameSiteLaxMode || set.Secure {
		t.Errorf("cookie attributes: HttpOnly=%v SameSite=%v Secure=%v (plain http test server)", set.HttpOnly, set.SameSite, set.Secure)
	}
}

func csrfOf(p *testutil.Page) string {
	v, _ := p.Doc.Find("input[name=_csrf]").First().Attr("value")
	return v
}

func TestSessionSurvivesRestartAndLogoutKillsIt(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		first := testutil.StartApp(t, dbURL)
		c := signUp(t, first, "ada@example.com")
		token := sessionCookie(c, first)
		first.Server.Close()

		// A second process on the same database: the cookie alone logs in.
		second := testutil.StartApp(t, dbURL)
		c2 := second.NewClient(t)
		u, _ := url.Parse(second.Server.URL)
		c2.HTTP.Jar.SetCookies(u, []*http.Cookie{{Name: "keysmith_session", Value: token}})
		page := c2.Get("/settings/api-keys")
		if page.URL.Path != "/settings/api-keys" || page.Text(".user-chip") != "Ada Lovelace" {
			t.Fatalf("restored session ended at %s", page.URL)
		}
		c2.Submit(page, "form[action='/logout']", nil)

		replay := second.NewClient(t)
		replay.HTTP.Jar.SetCookies(u, []*http.Cookie{{Name: "keysmith_session", Value: token}})
		if page := replay.Get("/settings/api-keys"); page.URL.Path != "/login" {
			t.Fatalf("the logged-out token still opens %s", page.URL)
		}
	})
}

func TestPasswordChangeEndsOtherSessions(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL)
		laptop := signUp(t, app, "ada@example.com")
		phone, _ := logIn(t, app, "ada@example.com", password)

		page := laptop.Submit(laptop.Get("/settings/account"), "form[action='/settings/account/password']", map[string]string{
			"current_password": "wrong", "new_password": "a new long password",
		})
		if page.Status != http.StatusUnprocessableEntity || page.Text("#current_password-error") == "" {
			t.Fatalf("wrong current password: %d %q", page.Status, page.Text("#current_password-error"))
		}
		page = laptop.Submit(page, "form[action='/settings/account/password']", map[string]string{
			"current_password": password, "new_password": "a new long password",
		})
		if page.URL.Path != "/settings/account" || !strings.Contains(page.Text(".flash"), "Password changed") {
			t.Fatalf("change ended at %s with %q", page.URL, page.Text(".flash"))
		}
		if page := laptop.Get("/settings/team"); page.URL.Path != "/settings/team" {
			t.Fatalf("the session that changed the password was logged out (%s)", page.URL)
		}
		page = phone.Get("/settings/team")
		if page.URL.Path != "/login" || !strings.Contains(page.Text(".flash"), "session has ended") {
			t.Fatalf("the other session still works: %s %q", page.URL, page.Text(".flash"))
		}
		if _, page := logIn(t, app, "ada@example.com", "a new long password"); page.URL.Path != "/settings/api-keys" {
			t.Fatalf("new password does not log in: %s", page.URL)
		}
	})
}

func TestForgotAndResetPassword(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL)
		other := signUp(t, app, "ada@example.com")

		c := app.NewClient(t)
		unknown := c.Submit(c.Get("/forgot-password"), "form", map[string]string{"email": "nobody@example.com"})
		known := c.Submit(c.Get("/forgot-password"), "form", map[string]string{"email": "Ada@example.com"})
		if unknown.Status != known.Status || strings.ReplaceAll(unknown.Text(".flash"), "nobody@example.com", "X") != strings.ReplaceAll(known.Text(".flash"), "ada@example.com", "X") {
			t.Fatalf("answers differ for a known and an unknown email:\n%q\n%q", unknown.Text(".flash"), known.Text(".flash"))
		}
		mails := app.Mails()
		if len(mails) != 2 || mails[0].Subject != "Reset your Keysmith password" {
			t.Fatalf("mailbox: %+v, want the welcome and one reset mail", mails)
		}
		link := linkIn(t, mails[0].Text, "/reset-password?token=")

		page := c.Get(strings.TrimPrefix(link, app.Server.URL))
		if page.URL.RawQuery != "" || page.URL.Path != "/reset-password" {
			t.Fatalf("the token stayed in the address bar: %s", page.URL)
		}
		page = c.Submit(page, "form[action='/reset-password']", map[string]string{"password": "short"})
		if page.Status != http.StatusUnprocessableEntity || page.Text("#password-error") == "" {
			t.Fatalf("short password: %d", page.Status)
		}
		page = c.Submit(page, "form[action='/reset-password']", map[string]string{"password": "brand new password"})
		if page.URL.Path != "/login" || !strings.Contains(page.Text(".flash"), "password has been changed") {
			t.Fatalf("reset ended at %s %q", page.URL, page.Text(".flash"))
		}
		if page := other.Get("/settings/team"); page.URL.Path != "/login" {
			t.Fatal("a session from before the reset still works")
		}
		if _, page := logIn(t, app, "ada@example.com", "brand new password"); page.URL.Path != "/settings/api-keys" {
			t.Fatalf("new password: %s", page.URL)
		}

		again := app.NewClient(t)
		page = again.Get(strings.TrimPrefix(link, app.Server.URL))
		if page.Status != http.StatusGone || !strings.Contains(page.Text(".flash.error"), "already been used") {
			t.Fatalf("reused link: %d %q", page.Status, page.Text(".flash.error"))
		}
	})
}

func TestResetLinkExpiresAfterAnHour(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	signUp(t, app, "ada@example.com")
	c := app.NewClient(t)
	c.Submit(c.Get("/forgot-password"), "form", map[string]string{"email": "ada@example.com"})
	link := linkIn(t, app.Mails()[0].Text, "/reset-password?token=")
	app.Clock.Advance(accounts.ResetLinkLifetime + 1)
	if page := c.Get(strings.TrimPrefix(link, app.Server.URL)); page.Status != http.StatusGone {
		t.Fatalf("expired link: %d", page.Status)
	}
}

func linkIn(t *testing.T, text, marker string) string {
	t.Helper()
	for _, field := range strings.Fields(text) {
		if strings.Contains(field, marker) {
			return field
		}
	}
	t.Fatalf("no link with %q in:\n%s", marker, text)
	return ""
}

func TestSecretsNeverReachTheLogs(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	c := signUp(t, app, "ada@example.com")
	token := sessionCookie(c, app)
	anon := app.NewClient(t)
	anon.Submit(anon.Get("/forgot-password"), "form", map[string]string{"email": "ada@example.com"})
	link := linkIn(t, app.Mails()[0].Text, "/reset-password?token=")
	resetToken := link[strings.Index(link, "token=")+len("token="):]
	anon.Submit(anon.Get(strings.TrimPrefix(link, app.Server.URL)), "form[action='/reset-password']", map[string]string{"password": "brand new password"})
	logIn(t, app, "ada@example.com", "brand new password")

	logs := app.Logs.String()
	if !strings.Contains(logs, "path=/reset-password") {
		t.Fatalf("request log missing; got:\n%s", logs)
	}
	for name, secret := range map[string]string{"password": password, "new password": "brand new password", "session token": token, "reset token": resetToken} {
		if strings.Contains(logs, secret) {
			t.Errorf("the %s appears in the logs", name)
		}
	}
	_ = context.Background()
}

// held is a mail transport that holds every message until released.
type held struct {
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	sent    []mailer.Message
}

func (h *held) Release() { h.once.Do(func() { close(h.release) }) }

func (h *held) Send(ctx context.Context, m mailer.Message) error {
	select {
	case <-h.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sent = append(h.sent, m)
	return nil
}

// The reset answer must not wait for the mail: its timing would tell a
// registered email from an unknown one.
func TestForgotPasswordDoesNotWaitForTheMail(t *testing.T) {
	transport := &held{release: make(chan struct{})}
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"), testutil.WithTransport(transport))
	t.Cleanup(transport.Release) // runs before the server closes, so a held send cannot hang it
	if _, err := app.Accounts.SignUp(t.Context(), accounts.SignUpInput{Email: "ada@example.com", Password: password}); err != nil {
		t.Fatal(err)
	}
	c := app.NewClient(t)
	c.HTTP.Timeout = 10 * time.Second // a synchronous send would hold the answer until then
	page := c.Submit(c.Get("/forgot-password"), "form", map[string]string{"email": "ada@example.com"})
	if page.Status != http.StatusOK || !strings.Contains(page.Text(".flash"), "If an account exists") {
		t.Fatalf("answer while the mail is held: %d %q", page.Status, page.Text(".flash"))
	}
	transport.Release()
	app.Outbox.Wait()
	if len(transport.sent) != 1 || transport.sent[0].Subject != "Reset your Keysmith password" {
		t.Fatalf("sent %+v", transport.sent)
	}
}
