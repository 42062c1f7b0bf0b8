package scheduler_test

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"keysmith/accounts"
	"keysmith/mailer"
	"keysmith/models"
	"keysmith/outbox"
	"keysmith/testutil"
)

// unsubscribePath is the path of a reminder mail's List-Unsubscribe link.
func unsubscribePath(t *testing.T, app *testutil.App, m mailer.Stored) string {
	t.Helper()
	link := strings.Trim(m.Headers["List-Unsubscribe"], "<>")
	path, ok := strings.CutPrefix(link, app.URL(""))
	if !ok || !strings.HasPrefix(path, "/unsubscribe/") || path == "/unsubscribe/" {
		t.Fatalf("List-Unsubscribe %q", m.Headers["List-Unsubscribe"])
	}
	return path
}

// Every reminder mail, a retried one too, carries its own unsubscribe
// token; the database holds only their SHA-256s, and every link a user was
// sent works, one-click included.
func TestUnsubscribeTokensAreStoredHashed(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		smtp := testutil.StartSMTP(t)
		app := testutil.StartApp(t, dbURL, testutil.WithSMTP(smtp))
		tm := newTeam(t, app)
		app.Accounts.SetReminders(t.Context(), tm.admin.ID, false)
		tm.key(t, tm.actor(tm.owner, models.RoleOwner), "flaky", "7")
		smtp.Refuse(1)
		app.Reminders.Run(t.Context()) // composed, refused
		app.Clock.Advance(outbox.Backoff(1))
		app.Reminders.Run(t.Context()) // the retry goes out
		app.Clock.Advance(6 * day)
		app.Reminders.Run(t.Context()) // the 1-day reminder

		var tokens []string
		for _, m := range smtp.Messages() {
			msg, _ := testutil.MIMEParts(t, m.Data)
			link := strings.Trim(msg.Header.Get("List-Unsubscribe"), "<>")
			token, ok := strings.CutPrefix(link, app.URL("/unsubscribe/"))
			if !ok || token == "" {
				t.Fatalf("List-Unsubscribe %q", link)
			}
			tokens = append(tokens, token)
		}
		if len(tokens) != 2 || tokens[0] == tokens[1] {
			t.Fatalf("unsubscribe tokens of the two mails sent: %q, want two different ones", tokens)
		}

		var rows []models.UnsubscribeToken
		app.DB.Order("id").Find(&rows)
		if len(rows) != 3 { // the refused mail's too
			t.Fatalf("%d unsubscribe tokens stored, want 3", len(rows))
		}
		var hashes []string
		for _, r := range rows {
			if r.UserID != tm.owner.ID || slices.Contains(tokens, r.TokenHash) {
				t.Fatalf("stored %+v", r)
			}
			hashes = append(hashes, r.TokenHash)
		}
		for _, token := range tokens {
			if !slices.Contains(hashes, accounts.HashToken(token)) {
				t.Errorf("no SHA-256 stored for a mailed token")
			}
		}
		if !strings.HasPrefix(dbURL, "postgres") {
			files, _ := filepath.Glob(dbURL + "*") // the database, its WAL and shared memory
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				for _, token := range tokens {
					if strings.Contains(string(b), token) {
						t.Fatalf("%s holds an unsubscribe token", filepath.Base(f))
					}
				}
			}
		}

		c := app.NewClient(t)
		for _, token := range tokens {
			if page := c.Get("/unsubscribe/" + token); page.Status != http.StatusOK || !strings.Contains(page.Text("main"), "owner@example.com") {
				t.Fatalf("unsubscribe page: %d\n%s", page.Status, page.Text("main"))
			}
		}
		res, err := app.Server.Client().Post(app.URL("/unsubscribe/"+tokens[0]), "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		var u models.User
		app.DB.Take(&u, tm.owner.ID)
		if res.StatusCode != http.StatusOK || !u.RemindersOptOut {
			t.Fatalf("one-click unsubscribe with the retried mail's link: %d, opted out %v", res.StatusCode, u.RemindersOptOut)
		}
	})
}
