package handlers_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"keysmith/accounts"
	"keysmith/mailer"
	"keysmith/models"
	"keysmith/testutil"
)

// codeAt is what an authenticator app shows at t.
func codeAt(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	code, err := totp.GenerateCode(secret, at)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// enableTOTP sets up an authenticator app from Settings → Security as a
// user would, reading the secret off the page, and returns the secret and
// the recovery codes shown once.
func enableTOTP(t *testing.T, app *testutil.App, c *testutil.Client) (string, []string) {
	t.Helper()
	page := c.Get("/settings/security")
	if page.Status != http.StatusOK || !strings.Contains(page.Text("#two-step"), "Off") {
		t.Fatalf("security page: %d %q", page.Status, page.Text("#two-step"))
	}
	page = c.Submit(page, "form[action='/settings/security/two-factor']", nil)
	secret := strings.ReplaceAll(page.Text("#totp-secret"), " ", "")
	qr, _ := page.Doc.Find("img.qr").Attr("src")
	if page.URL.Path != "/settings/security/two-factor" || len(secret) < 16 || !strings.HasPrefix(qr, "data:image/svg+xml;base64,") ||
		page.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("setup page %s: secret %q, qr %.40q", page.URL, secret, qr)
	}
	wrong := c.Submit(page, "form[action='/settings/security/two-factor/confirm']", map[string]string{"code": "000000"})
	if wrong.Status != http.StatusUnprocessableEntity || wrong.Text("#code-error") == "" {
		t.Fatalf("wrong code: %d %q", wrong.Status, wrong.Text("#code-error"))
	}
	page = c.Submit(wrong, "form[action='/settings/security/two-factor/confirm']", map[string]string{"code": codeAt(t, secret, app.Clock.Now())})
	codes := strings.Fields(page.Doc.Find("#recovery-codes").Text())
	if page.Status != http.StatusCreated || len(codes) != accounts.RecoveryCodeCount || page.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("confirm: %d, %d codes:\n%s", page.Status, len(codes), page.Text("main"))
	}
	if href, _ := page.Doc.Find("a[download]").Attr("href"); !strings.HasPrefix(href, "data:text/plain") || !strings.Contains(href, codes[0]) {
		t.Fatalf("download link %q", href)
	}
	return secret, codes
}

// logInWithCode signs in with the password, then the code.
func logInWithCode(t *testing.T, app *testutil.App, email, code string) (*testutil.Client, *testutil.Page) {
	t.Helper()
	c, page := logIn(t, app, email, password)
	if page.URL.Path != "/login/two-factor" {
		t.Fatalf("password led to %s, want the second step", page.URL)
	}
	return c, c.Submit(page, "form[action='/login/two-factor']", map[string]string{"code": code})
}

func TestTOTPEnrollmentAndSignIn(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL)
		laptop := signUp(t, app, "ada@example.com")
		other, _ := logIn(t, app, "ada@example.com", password)
		secret, _ := enableTOTP(t, app, laptop)

		// The secret is sealed at rest.
		var row models.UserTOTP
		app.DB.Take(&row)
		if row.ConfirmedAt == nil || len(row.Secret) == 0 || strings.Contains(strings.ToUpper(string(row.Secret)), secret) {
			t.Fatalf("stored totp row %+v", row)
		}
		var plain int64
		app.DB.Raw("SELECT COUNT(*) FROM user_totp WHERE secret LIKE ?", "%"+secret+"%").Scan(&plain)
		if plain != 0 {
			t.Fatal("the TOTP secret is in the database as plaintext")
		}

		// Turning it on ended the other session, said so, and mailed.
		if page := other.Get("/settings/team"); page.URL.Path != "/login" {
			t.Fatalf("the other session still works after turning two-step on: %s", page.URL)
		}
		page := laptop.Get("/settings/security")
		if !strings.Contains(page.Text("#two-step"), "On") || page.Text("#recovery-left") != "10 of 10 recovery codes left." {
			t.Fatalf("security page after enabling: %q / %q", page.Text("#two-step"), page.Text("#recovery-left"))
		}
		mailWithSubject(t, app, "Two-step verification is on for your Keysmith account")

		// The password alone does not log in.
		c, page := logIn(t, app, "ada@example.com", password)
		pending := sessionCookie(c, app)
		if page.URL.Path != "/login/two-factor" {
			t.Fatalf("password led to %s", page.URL)
		}
		if page := c.Get("/settings/api-keys"); page.URL.Path != "/login" {
			t.Fatalf("before the second step, the dashboard answered %s", page.URL)
		}
		page = c.Get("/login/two-factor")
		// The code used to confirm enrollment was spent: a replay is refused.
		replay := c.Submit(page, "form[action='/login/two-factor']", map[string]string{"code": codeAt(t, secret, app.Clock.Now())})
		if replay.Status != http.StatusUnauthorized {
			t.Fatalf("replayed code: %d", replay.Status)
		}
		app.Clock.Advance(30 * time.Second)
		code := codeAt(t, secret, app.Clock.Now())
		page = c.Submit(replay, "form[action='/login/two-factor']", map[string]string{"code": code})
		if page.URL.Path != "/settings/api-keys" {
			t.Fatalf("password + code led to %d %s: %q", page.Status, page.URL, page.Text(".flash"))
		}
		if s := sessionCookie(c, app); s == "" || s == pending {
			t.Fatal("the session token was not renewed after the second step")
		}
		// Once used, the code does not work again, in another sign-in.
		if _, page := logInWithCode(t, app, "ada@example.com", code); page.Status != http.StatusUnauthorized {
			t.Fatalf("a code used once worked again: %d %s", page.Status, page.URL)
		}
	})
}

func TestTOTPSkew(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	c := signUp(t, app, "ada@example.com")
	secret, _ := enableTOTP(t, app, c)
	cases := []struct {
		offset time.Duration
		ok     bool
	}{
		{-60 * time.Second, false},
		{+60 * time.Second, false},
		{-30 * time.Second, true},
		{+30 * time.Second, true},
	}
	for _, tc := range cases {
		// Far enough from any step used before.
		app.Clock.Advance(10 * time.Minute)
		_, page := logInWithCode(t, app, "ada@example.com", codeAt(t, secret, app.Clock.Now().Add(tc.offset)))
		if got := page.URL.Path == "/settings/api-keys"; got != tc.ok {
			t.Errorf("code of %s: logged in %v, want %v (%d)", tc.offset, got, tc.ok, page.Status)
		}
	}
	// A code from before the last one accepted is refused too.
	app.Clock.Advance(10 * time.Minute)
	now := app.Clock.Now()
	if _, page := logInWithCode(t, app, "ada@example.com", codeAt(t, secret, now.Add(30*time.Second))); page.URL.Path != "/settings/api-keys" {
		t.Fatalf("next step's code refused: %d", page.Status)
	}
	if _, page := logInWithCode(t, app, "ada@example.com", codeAt(t, secret, now)); page.Status != http.StatusUnauthorized {
		t.Fatalf("an older step's code after a newer one: %d", page.Status)
	}
}

func TestRecoveryCodes(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		smtp := testutil.StartSMTP(t)
		app := testutil.StartApp(t, dbURL, testutil.WithSMTP(smtp))
		laptop := signUp(t, app, "ada@example.com")
		_, codes := enableTOTP(t, app, laptop)

		var hashes []models.RecoveryCode
		app.DB.Find(&hashes)
		for _, h := range hashes {
			for _, code := range codes {
				if h.CodeHash == code || strings.Contains(h.CodeHash, code) {
					t.Fatal("a recovery code is stored in plaintext")
				}
			}
		}

		c, page := logInWithCode(t, app, "ada@example.com", strings.ToUpper(codes[0]))
		if page.URL.Path != "/settings/api-keys" || !strings.Contains(page.Text(".flash"), "recovery code") {
			t.Fatalf("recovery code sign-in: %d %s %q", page.Status, page.URL, page.Text(".flash"))
		}
		if m := mailWithSubject(t, app, "A recovery code was used to sign in to Keysmith"); !strings.Contains(m.Text, "Recovery codes left: 9.") {
			t.Fatalf("mail %q:\n%s", m.Subject, m.Text)
		}
		if page := c.Get("/settings/security"); page.Text("#recovery-left") != "9 of 10 recovery codes left." {
			t.Fatalf("count: %q", page.Text("#recovery-left"))
		}
		if _, page := logInWithCode(t, app, "ada@example.com", codes[0]); page.Status != http.StatusUnauthorized {
			t.Fatalf("a used recovery code worked again: %d", page.Status)
		}

		page = c.Submit(c.Get("/settings/security"), "form[action='/settings/security/recovery-codes']", nil)
		fresh := strings.Fields(page.Doc.Find("#recovery-codes").Text())
		if page.Status != http.StatusCreated || len(fresh) != 10 || fresh[0] == codes[0] {
			t.Fatalf("regenerate: %d %v", page.Status, fresh)
		}
		if _, page := logInWithCode(t, app, "ada@example.com", codes[1]); page.Status != http.StatusUnauthorized {
			t.Fatalf("an old recovery code worked after regeneration: %d", page.Status)
		}
		if _, page := logInWithCode(t, app, "ada@example.com", fresh[3]); page.URL.Path != "/settings/api-keys" {
			t.Fatalf("a new recovery code: %d %s", page.Status, page.URL)
		}
		if page := c.Get("/settings/security"); page.Text("#recovery-left") != "9 of 10 recovery codes left." {
			t.Fatalf("count after regeneration: %q", page.Text("#recovery-left"))
		}
		var events []models.AuditEvent
		app.DB.Where("action LIKE ?", "account.%").Order("id").Find(&events)
		var actions []string
		for _, e := range events {
			actions = append(actions, e.Action)
			for _, code := range append(codes, fresh...) {
				if strings.Contains(e.Detail+e.KeyLabel, code) {
					t.Fatalf("audit event %s carries a code", e.Action)
				}
			}
		}
		want := "account.two_factor_enabled account.recovery_code_used account.recovery_codes_regenerated account.recovery_code_used"
		if strings.Join(actions, " ") != want {
			t.Fatalf("audit events %v, want %s", actions, want)
		}
		page = c.Get("/settings/audit-log?action=account.recovery_code_used")
		if page.Status != http.StatusOK || strings.Count(page.Text("table"), "account.recovery_code_used") != 2 || strings.Contains(page.Text("table"), "account.two_factor_enabled") {
			t.Fatalf("audit log filtered by account.recovery_code_used:\n%s", page.Text("main"))
		}
	})
}

func TestSecondStepThrottled(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL)
		laptop := signUp(t, app, "ada@example.com")
		secret, _ := enableTOTP(t, app, laptop)
		app.Clock.Advance(time.Minute)
		c, page := logIn(t, app, "ada@example.com", password)
		for i := range accounts.MaxFailuresPerUser {
			page = c.Submit(page, "form[action='/login/two-factor']", map[string]string{"code": "12345" + string(rune('0'+i))})
			if page.Status != http.StatusUnauthorized {
				t.Fatalf("wrong code %d: %d", i, page.Status)
			}
		}
		page = c.Submit(page, "form[action='/login/two-factor']", map[string]string{"code": codeAt(t, secret, app.Clock.Now())})
		if page.Status != http.StatusTooManyRequests || page.Header.Get("Retry-After") == "" {
			t.Fatalf("right code after %d wrong ones: %d", accounts.MaxFailuresPerUser, page.Status)
		}
		// The right password again does not reset the count.
		if _, page := logIn(t, app, "ada@example.com", password); page.Status != http.StatusTooManyRequests {
			t.Fatalf("password after wrong codes: %d %s", page.Status, page.URL)
		}
		app.Clock.Advance(accounts.LoginWindow)
		if _, page := logInWithCode(t, app, "ada@example.com", codeAt(t, secret, app.Clock.Now())); page.URL.Path != "/settings/api-keys" {
			t.Fatalf("after the window: %d %s", page.Status, page.URL)
		}
	})
}

func TestResetStillAsksForSecondStep(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL)
		laptop := signUp(t, app, "ada@example.com")
		secret, _ := enableTOTP(t, app, laptop)
		c := app.NewClient(t)
		c.Submit(c.Get("/forgot-password"), "form", map[string]string{"email": "ada@example.com"})
		link := linkIn(t, mailWithSubject(t, app, "Reset your Keysmith password").Text, "/reset-password?token=")
		page := c.Get(strings.TrimPrefix(link, app.Server.URL))
		page = c.Submit(page, "form", map[string]string{"password": "a brand new password"})
		if page.URL.Path != "/login" {
			t.Fatalf("reset ended at %s", page.URL)
		}
		if page := c.Get("/settings/api-keys"); page.URL.Path != "/login" {
			t.Fatalf("the reset logged in: %s", page.URL)
		}
		if page := laptop.Get("/settings/api-keys"); page.URL.Path != "/login" {
			t.Fatalf("a session from before the reset still works: %s", page.URL)
		}
		mailWithSubject(t, app, "Your Keysmith password was changed")
		page = c.Submit(page, "form[action='/login']", map[string]string{"email": "ada@example.com", "password": "a brand new password"})
		if page.URL.Path != "/login/two-factor" {
			t.Fatalf("sign-in after a reset skipped the second step: %s", page.URL)
		}
		app.Clock.Advance(time.Minute)
		page = c.Submit(page, "form[action='/login/two-factor']", map[string]string{"code": codeAt(t, secret, app.Clock.Now())})
		if page.URL.Path != "/settings/api-keys" {
			t.Fatalf("second step after reset: %d %s", page.Status, page.URL)
		}
	})
}

func TestDisableTwoFactor(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL)
		laptop := signUp(t, app, "ada@example.com")
		secret, _ := enableTOTP(t, app, laptop)
		form := "form[action='/settings/security/two-factor/disable']"
		page := laptop.Submit(laptop.Get("/settings/security"), form, nil)
		if page.Status != http.StatusUnprocessableEntity || page.Text("#password-error") == "" {
			t.Fatalf("disable without proof: %d", page.Status)
		}
		page = laptop.Submit(page, form, map[string]string{"password": "wrong password"})
		if page.Status != http.StatusUnprocessableEntity || page.Text("#password-error") == "" {
			t.Fatalf("disable with a wrong password: %d", page.Status)
		}
		app.Clock.Advance(time.Minute)
		other, _ := logInWithCode(t, app, "ada@example.com", codeAt(t, secret, app.Clock.Now()))
		app.Clock.Advance(time.Minute)
		page = laptop.Submit(page, form, map[string]string{"code": codeAt(t, secret, app.Clock.Now())})
		if page.URL.Path != "/settings/security" || !strings.Contains(page.Text("#two-step"), "Off") || !strings.Contains(page.Text(".flash"), "other session") {
			t.Fatalf("disable with a code: %d %s %q", page.Status, page.URL, page.Text(".flash"))
		}
		if page := other.Get("/settings/team"); page.URL.Path != "/login" {
			t.Fatalf("the other session survived turning two-step off: %s", page.URL)
		}
		mailWithSubject(t, app, "Two-step verification is off for your Keysmith account")
		if _, page := logIn(t, app, "ada@example.com", password); page.URL.Path != "/settings/api-keys" {
			t.Fatalf("password alone after turning off: %s", page.URL)
		}
		var n int64
		app.DB.Model(&models.RecoveryCode{}).Count(&n)
		if n != 0 {
			t.Fatalf("%d recovery codes left after turning off", n)
		}
	})
}

func TestSessionsListAndEnd(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL)
		laptop := signUp(t, app, "ada@example.com")
		phone, _ := logIn(t, app, "ada@example.com", password)
		tablet, _ := logIn(t, app, "ada@example.com", password)
		stranger := signUp(t, app, "bob@example.com")

		page := laptop.Get("/settings/security")
		rows := page.Doc.Find("tr.session")
		if rows.Length() != 3 || page.Doc.Find("tr.session .badge").Text() != "This session" ||
			!strings.Contains(rows.First().Text(), "127.0.0.1") || !strings.Contains(rows.First().Text(), "Go HTTP client") {
			t.Fatalf("sessions list (%d rows):\n%s", rows.Length(), page.Text("#sessions"))
		}
		for _, raw := range []string{sessionCookie(laptop, app), sessionCookie(phone, app)} {
			if strings.Contains(page.Raw, raw) {
				t.Fatal("a session token is on the page")
			}
			var n int64
			app.DB.Model(&models.UserSession{}).Where("token_hash = ?", raw).Count(&n)
			if n != 0 {
				t.Fatal("a raw session token is stored")
			}
		}

		// Someone else's session cannot be ended.
		var bobs models.UserSession
		app.DB.Joins("JOIN users ON users.id = user_sessions.user_id").Where("users.email = ?", "bob@example.com").Take(&bobs)
		if page := laptop.Submit(page, "form[action$='/end']", nil); page.Status != http.StatusOK {
			t.Fatalf("end: %d", page.Status)
		}
		page = laptop.PostForm("/settings/security/sessions/"+itoa(bobs.ID)+"/end", url.Values{"_csrf": {csrfOf(laptop.Get("/settings/security"))}})
		if page.Status != http.StatusNotFound {
			t.Fatalf("ending another user's session: %d", page.Status)
		}
		if page := stranger.Get("/settings/api-keys"); page.URL.Path != "/settings/api-keys" {
			t.Fatalf("bob was signed out: %s", page.URL)
		}
		// One of the two others was ended: its cookie opens nothing.
		ended := 0
		for _, c := range []*testutil.Client{phone, tablet} {
			if page := c.Get("/settings/api-keys"); page.URL.Path == "/login" {
				ended++
			}
		}
		if ended != 1 {
			t.Fatalf("%d sessions ended, want 1", ended)
		}
		if n := laptop.Get("/settings/security").Doc.Find("tr.session").Length(); n != 2 {
			t.Fatalf("%d sessions listed after ending one", n)
		}

		// A password change ends the others, and the page says so.
		phone, _ = logIn(t, app, "ada@example.com", password)
		page = laptop.Submit(laptop.Get("/settings/account"), "form[action='/settings/account/password']", map[string]string{
			"current_password": password, "new_password": "a new long password",
		})
		if !strings.Contains(page.Text(".flash"), "Every other session") {
			t.Fatalf("flash %q", page.Text(".flash"))
		}
		if page := phone.Get("/settings/api-keys"); page.URL.Path != "/login" {
			t.Fatalf("a session survived the password change: %s", page.URL)
		}
		if page := laptop.Get("/settings/security"); page.Doc.Find("tr.session").Length() != 1 || !strings.Contains(page.Text("#sessions"), "password change") {
			t.Fatalf("after the password change:\n%s", page.Text("#sessions"))
		}
		mailWithSubject(t, app, "Your Keysmith password was changed")

		// Sign out every other session.
		phone, _ = logIn(t, app, "ada@example.com", "a new long password")
		page = laptop.Submit(laptop.Get("/settings/security"), "form[action='/settings/security/sessions/end-others']", nil)
		if !strings.Contains(page.Text(".flash"), "Signed out 1 other session") {
			t.Fatalf("end others: %q", page.Text(".flash"))
		}
		if page := phone.Get("/settings/api-keys"); page.URL.Path != "/login" {
			t.Fatalf("end others left a session: %s", page.URL)
		}
		// Logging out takes the session off the list.
		laptop.Submit(laptop.Get("/settings/security"), "form[action='/logout']", nil)
		var live int64
		app.DB.Model(&models.UserSession{}).Joins("JOIN users ON users.id = user_sessions.user_id").
			Where("users.email = ? AND ended_at IS NULL", "ada@example.com").Count(&live)
		if live != 0 {
			t.Fatalf("%d sessions of ada still listed after logging out", live)
		}
	})
}

// mailWithSubject is the newest mail to ada@example.com with that subject.
func mailWithSubject(t *testing.T, app *testutil.App, subject string) mailer.Stored {
	t.Helper()
	for _, m := range app.Mails() {
		if m.To[0] == "ada@example.com" && m.Subject == subject {
			return m
		}
	}
	t.Fatalf("no mail %q to ada@example.com", subject)
	return mailer.Stored{}
}
