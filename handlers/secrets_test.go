package handlers_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"keysmith/accounts"
	"keysmith/testutil"
)

// storedSessionToken is what the sessions table holds for a session
// cookie's token: its SHA-256, base64url, as scs's HashTokenInStore does.
func storedSessionToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

type sessionRow struct {
	Token string
	Data  []byte
}

func sessionRows(t *testing.T, app *testutil.App) []sessionRow {
	t.Helper()
	var rows []sessionRow
	if err := app.DB.Table("sessions").Select("token", "data").Scan(&rows).Error; err != nil {
		t.Fatal(err)
	}
	return rows
}

// notInSQLiteFiles fails if the database file or its WAL holds secret.
func notInSQLiteFiles(t *testing.T, dbPath, secret string) {
	t.Helper()
	files, _ := filepath.Glob(dbPath + "*")
	if len(files) == 0 {
		t.Fatal("no database files")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s holds the secret", filepath.Base(f))
		}
	}
}

// The sessions table holds the SHA-256 of a logged-in session's token, not
// the token, and that hash is no cookie: a copy of the database opens no
// session.
func TestSessionTokensAreStoredHashed(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL)
		if _, err := app.Accounts.SignUp(t.Context(), accounts.SignUpInput{Email: "ada@example.com", Password: password}); err != nil {
			t.Fatal(err)
		}
		c, page := logIn(t, app, "ada@example.com", password)
		if page.URL.Path != "/settings/api-keys" {
			t.Fatalf("login ended at %s", page.URL)
		}
		token := sessionCookie(c, app)
		hashed := storedSessionToken(token)

		found := false
		for _, row := range sessionRows(t, app) {
			if row.Token == token || bytes.Contains(row.Data, []byte(token)) {
				t.Fatal("the sessions table holds the cookie's token")
			}
			found = found || row.Token == hashed
		}
		if !found {
			t.Fatal("no session stored under the token's SHA-256")
		}
		if !strings.HasPrefix(dbURL, "postgres") {
			notInSQLiteFiles(t, dbURL, token)
		}

		thief := app.NewClient(t)
		u, _ := url.Parse(app.Server.URL)
		thief.HTTP.Jar.SetCookies(u, []*http.Cookie{{Name: "keysmith_session", Value: hashed}})
		if page := thief.Get("/settings/api-keys"); page.URL.Path != "/login" {
			t.Fatalf("the stored hash, used as a cookie, opened %s", page.URL)
		}
		if page := c.Get("/settings/api-keys"); page.URL.Path != "/settings/api-keys" {
			t.Fatalf("the session itself ended: %s", page.URL)
		}
	})
}

// Following a reset link keeps the link's token out of the address bar by
// parking it in the session; the session row then holds only its hash,
// which is not a reset link.
func TestResetTokenIsNotStoredInTheSession(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL)
		if _, err := app.Accounts.SignUp(t.Context(), accounts.SignUpInput{Email: "ada@example.com", Password: password}); err != nil {
			t.Fatal(err)
		}
		c := app.NewClient(t)
		c.Submit(c.Get("/forgot-password"), "form", map[string]string{"email": "ada@example.com"})
		link := linkIn(t, app.Mails()[0].Text, "/reset-password?token=")
		lu, err := url.Parse(link)
		if err != nil {
			t.Fatal(err)
		}
		token := lu.Query().Get("token")

		page := c.Get(lu.RequestURI())
		if page.Status != http.StatusOK || page.URL.RawQuery != "" {
			t.Fatalf("reset form: %d %s", page.Status, page.URL)
		}
		rows := sessionRows(t, app)
		if len(rows) == 0 {
			t.Fatal("no session rows")
		}
		for _, row := range rows {
			if bytes.Contains(row.Data, []byte(token)) {
				t.Fatal("a session row holds the reset token")
			}
		}
		if !strings.HasPrefix(dbURL, "postgres") {
			notInSQLiteFiles(t, dbURL, token)
		}

		page = c.Submit(page, "form[action='/reset-password']", map[string]string{"password": "brand new password"})
		if page.URL.Path != "/login" || !strings.Contains(page.Text(".flash"), "password has been changed") {
			t.Fatalf("reset ended at %s %q", page.URL, page.Text(".flash"))
		}
	})
}
