package scheduler_test

import (
	"bytes"
	"context"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"keysmith/accounts"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/outbox"
	"keysmith/testutil"
)

const day = 24 * time.Hour

// team is a workspace with an owner, an admin, an editor and a viewer.
type team struct {
	app                          *testutil.App
	ws                           int64
	owner, admin, editor, viewer models.User
}

func newTeam(t *testing.T, app *testutil.App) *team {
	t.Helper()
	tm := &team{app: app}
	mk := func(email string) models.User {
		u, err := app.Accounts.SignUp(t.Context(), accounts.SignUpInput{Email: email, Name: strings.Split(email, "@")[0], Password: "long enough pw"})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	tm.owner = mk("owner@example.com")
	ms, _ := app.Accounts.Memberships(t.Context(), tm.owner.ID)
	tm.ws = ms[0].WorkspaceID
	for _, m := range []struct {
		u    *models.User
		role models.Role
	}{{&tm.admin, models.RoleAdmin}, {&tm.editor, models.RoleEditor}, {&tm.viewer, models.RoleViewer}} {
		*m.u = mk(string(m.role) + "@example.com")
		if err := app.DB.Create(&models.Membership{WorkspaceID: tm.ws, UserID: m.u.ID, Role: m.role}).Error; err != nil {
			t.Fatal(err)
		}
	}
	return tm
}

func (tm *team) actor(u models.User, role models.Role) keys.Actor {
	return tm.app.Keys.UserActor(u, role, "", "")
}

func (tm *team) key(t *testing.T, by keys.Actor, name, days string) keys.Created {
	t.Helper()
	c, err := tm.app.Keys.Create(t.Context(), tm.ws, by, keys.CreateInput{Name: name, Kind: keys.Secret, Env: keys.Live, Permission: keys.PermRead, ExpiresIn: days})
	if err != nil {
		t.Fatal(err)
	}
	if days == "7" {
		madeEarlier(t, tm.app, c.Key, 24*time.Hour)
	}
	return c
}

// madeEarlier makes k as if created ago earlier, its expiry unchanged,
// with its reminders planned from then: "7" above is a key whose 7-day
// reminder is due now, made 8 days before its expiry (one made with
// exactly 7 days left never gets that mail).
func madeEarlier(t *testing.T, app *testutil.App, k models.APIKey, ago time.Duration) {
	t.Helper()
	created := k.CreatedAt.Add(-ago)
	if err := app.DB.Model(&models.APIKey{}).Where("id = ?", k.ID).
		Updates(map[string]any{"created_at": created, "reminder_due_at": keys.FirstReminderAt(created, k.ExpiresAt)}).Error; err != nil {
		t.Fatal(err)
	}
}

// arrived lists the reminder mails in the dev mailbox as
// "day N: key → recipient (subject)" lines, oldest first.
func arrived(app *testutil.App, start time.Time) []string {
	var out []string
	for _, m := range app.Mails() {
		if !strings.HasPrefix(m.MessageID, "reminder-") {
			continue
		}
		d := int(m.ReceivedAt.Sub(start) / day)
		out = append(out, fmt.Sprintf("day %d: %s → %s", d, m.Subject, m.To[0]))
	}
	slices.Reverse(out)
	return out
}

// walk runs the scheduler every hour from the clock's time for n days.
func walk(t *testing.T, app *testutil.App, n int, each func(hour int)) {
	t.Helper()
	for h := 0; h <= n*24; h++ {
		if each != nil {
			each(h)
		}
		if err := app.Reminders.Run(t.Context()); err != nil {
			t.Fatalf("hour %d: %v", h, err)
		}
		app.Clock.Advance(time.Hour)
	}
}

func TestTwentyDaysOfReminders(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL)
		tm := newTeam(t, app)
		start := app.Clock.Now()
		if err := app.Accounts.SetReminders(t.Context(), tm.admin.ID, false); err != nil { // the admin opted out
			t.Fatal(err)
		}
		editor := tm.actor(tm.editor, models.RoleEditor)
		owner := tm.actor(tm.owner, models.RoleOwner)
		tm.key(t, editor, "twenty", "20") // every reminder
		tm.key(t, owner, "ten", "10")     // created inside the 14-day window
		revoked := tm.key(t, owner, "revoked", "20")
		rotated := tm.key(t, owner, "rotated", "20")
		tm.key(t, owner, "forever", "never")

		walk(t, app, 20, func(h int) {
			switch h {
			case 2 * 24:
				if _, err := app.Keys.Revoke(t.Context(), tm.ws, owner, revoked.Key.ID); err != nil {
					t.Fatal(err)
				}
			case 8 * 24:
				if _, err := app.Keys.Rotate(t.Context(), tm.ws, owner, rotated.Key.ID, 0); err != nil {
					t.Fatal(err)
				}
			}
		})
		got := arrived(app, start)
		want := []string{
			`day 3: Your API key "ten" expires in 7 days → owner@example.com`,
			`day 6: Your API key "rotated" expires in 14 days → owner@example.com`,
			`day 6: Your API key "twenty" expires in 14 days → owner@example.com`,
			`day 6: Your API key "twenty" expires in 14 days → editor@example.com`,
			`day 9: Your API key "ten" expires in 1 day → owner@example.com`,
			`day 10: Your API key "ten" has expired → owner@example.com`,
			`day 13: Your API key "twenty" expires in 7 days → owner@example.com`,
			`day 13: Your API key "twenty" expires in 7 days → editor@example.com`,
			// the rotated key's replacement was made on day 8 with a fresh 20 days
			`day 14: Your API key "rotated" expires in 14 days → owner@example.com`,
			`day 19: Your API key "twenty" expires in 1 day → owner@example.com`,
			`day 19: Your API key "twenty" expires in 1 day → editor@example.com`,
			`day 20: Your API key "twenty" has expired → owner@example.com`,
			`day 20: Your API key "twenty" has expired → editor@example.com`,
		}
		slices.Sort(got)
		slices.Sort(want)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("mails:\n%s\n\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}

func TestCatchUpSendsOnlyTheMostUrgentReminder(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	tm := newTeam(t, app)
	app.Accounts.SetReminders(t.Context(), tm.admin.ID, false)
	start := app.Clock.Now()
	tm.key(t, tm.actor(tm.owner, models.RoleOwner), "outage", "20")
	walk(t, app, 5, nil)
	app.Clock.Advance(13 * day) // Keysmith was down from day 5 to day 18: the 14- and 7-day moments passed
	walk(t, app, 3, nil)
	got := arrived(app, start)
	want := []string{
		`day 18: Your API key "outage" expires in 2 days → owner@example.com`, // the 7-day reminder, late
		`day 19: Your API key "outage" expires in 1 day → owner@example.com`,
		`day 20: Your API key "outage" has expired → owner@example.com`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("mails:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A disabled key gets no reminders; enabled again, it gets the one that
// fell due meanwhile, late (as after an outage), then the rest on time.
func TestNoRemindersWhileDisabled(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	tm := newTeam(t, app)
	app.Accounts.SetReminders(t.Context(), tm.admin.ID, false)
	start := app.Clock.Now()
	owner := tm.actor(tm.owner, models.RoleOwner)
	paused := tm.key(t, owner, "paused", "20")
	if _, err := app.Keys.SetDisabled(t.Context(), tm.ws, owner, paused.Key.ID, true); err != nil {
		t.Fatal(err)
	}
	walk(t, app, 10, nil) // the 14-day moment (day 6) passes while disabled
	if _, err := app.Keys.SetDisabled(t.Context(), tm.ws, owner, paused.Key.ID, false); err != nil {
		t.Fatal(err)
	}
	walk(t, app, 4, nil)
	got := arrived(app, start)
	want := []string{`day 10: Your API key "paused" expires in 10 days → owner@example.com`, `day 13: Your API key "paused" expires in 7 days → owner@example.com`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("mails:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestReminderMailOverSMTP(t *testing.T) {
	smtp := testutil.StartSMTP(t)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"), testutil.WithSMTP(smtp))
	tm := newTeam(t, app)
	app.Accounts.SetReminders(t.Context(), tm.admin.ID, false)
	k := tm.key(t, tm.actor(tm.owner, models.RoleOwner), "billing-worker", "7")
	if err := app.Reminders.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := smtp.Messages()
	if len(got) != 1 || got[0].To[0] != "owner@example.com" {
		t.Fatalf("SMTP received %d messages", len(got))
	}
	msg, bodies := testutil.MIMEParts(t, got[0].Data)
	if s := msg.Header.Get("Subject"); s != `Your API key "billing-worker" expires in 7 days` {
		t.Errorf("Subject %q", s)
	}
	var d models.Delivery
	app.DB.Take(&d)
	if id := msg.Header.Get("Message-Id"); !strings.HasPrefix(id, fmt.Sprintf("<reminder-%d@", d.ID)) {
		t.Errorf("Message-ID %q, want the stable reminder-%d@…", id, d.ID)
	}
	unsub := strings.Trim(msg.Header.Get("List-Unsubscribe"), "<>")
	if !strings.HasPrefix(unsub, app.URL("/unsubscribe/")) || unsub == app.URL("/unsubscribe/") || msg.Header.Get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click" {
		t.Errorf("unsubscribe headers %q %q", msg.Header.Get("List-Unsubscribe"), msg.Header.Get("List-Unsubscribe-Post"))
	}
	link := fmt.Sprintf("%s/settings/api-keys/%d?workspace=%d", app.Server.URL, k.Key.ID, tm.ws)
	for _, ct := range []string{"text/plain", "text/html"} {
		b := bodies[ct]
		for _, want := range []string{"billing-worker", k.Key.Hint, "owner's workspace", "Mon 9 Mar 2026 09:00 UTC", "in 7 days", "never", link, unsub} {
			if ct == "text/html" {
				want = strings.ReplaceAll(want, "'", "&#39;")
			}
			if !strings.Contains(b, want) {
				t.Errorf("%s part lacks %q:\n%s", ct, want, b)
			}
		}
	}
	if d.Status != "sent" || d.SentAt == nil || d.Attempts != 1 {
		t.Fatalf("delivery %+v", d)
	}
}

func TestRefusedMailIsRetriedAndSentOnce(t *testing.T) {
	smtp := testutil.StartSMTP(t)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"), testutil.WithSMTP(smtp))
	tm := newTeam(t, app)
	app.Accounts.SetReminders(t.Context(), tm.admin.ID, false)
	tm.key(t, tm.actor(tm.owner, models.RoleOwner), "flaky", "7")
	smtp.Refuse(3)
	var d models.Delivery
	for i := 1; i <= 3; i++ {
		if err := app.Reminders.Run(t.Context()); err != nil {
			t.Fatal(err)
		}
		app.DB.Take(&d)
		if d.Status != "pending" || d.Attempts != i || !d.NextAttemptAt.Equal(app.Clock.Now().Add(outbox.Backoff(i))) || d.LastError == "" {
			t.Fatalf("after refusal %d: %+v", i, d)
		}
		if err := app.Reminders.Run(t.Context()); err != nil { // not due yet: nothing happens
			t.Fatal(err)
		}
		app.Clock.Advance(outbox.Backoff(i))
	}
	if err := app.Reminders.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	app.DB.Take(&d)
	if n := len(smtp.Messages()); n != 1 || d.Status != "sent" || d.Attempts != 4 {
		t.Fatalf("after the server recovered: %d messages, %+v", n, d)
	}
	for range 5 {
		app.Clock.Advance(time.Hour)
		app.Reminders.Run(t.Context())
	}
	if n := len(smtp.Messages()); n != 1 {
		t.Fatalf("%d messages, want exactly 1", n)
	}
}

func TestUnreachableSMTPFailsVisiblyAndAdminRetries(t *testing.T) {
	smtp := testutil.StartSMTP(t)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"), testutil.WithSMTP(smtp))
	tm := newTeam(t, app)
	app.Accounts.SetReminders(t.Context(), tm.admin.ID, false)
	tm.key(t, tm.actor(tm.owner, models.RoleOwner), "doomed", "7")
	smtp.Refuse(app.Outbox.MaxAttempts)
	for i := 1; i <= app.Outbox.MaxAttempts; i++ {
		app.Reminders.Run(t.Context())
		app.Clock.Advance(outbox.Backoff(i))
	}
	var d models.Delivery
	app.DB.Take(&d)
	if d.Status != "failed" || d.Attempts != app.Outbox.MaxAttempts {
		t.Fatalf("after %d refusals: %+v", app.Outbox.MaxAttempts, d)
	}
	if !strings.Contains(app.Logs.String(), "delivery failed for good") {
		t.Error("the failure was not logged")
	}

	// The owner sees it in the delivery log and retries it.
	c := app.NewClient(t)
	if p := c.Submit(c.Get("/login"), "form[action='/login']", map[string]string{"email": "owner@example.com", "password": "long enough pw"}); p.URL.Path != "/settings/api-keys" {
		t.Fatalf("login: %s", p.URL)
	}
	page := c.Get("/settings/notifications")
	row := page.Text("table.deliveries tbody tr")
	if !strings.Contains(row, "failed") || !strings.Contains(row, "451") || !strings.Contains(row, "doomed") {
		t.Fatalf("delivery log row: %s", row)
	}
	page = c.Submit(page, "table.deliveries form", nil)
	if !strings.Contains(page.Text(".flash"), "will be retried") {
		t.Fatalf("retry flash %q", page.Text(".flash"))
	}
	app.Reminders.Run(t.Context())
	app.DB.Take(&d)
	if d.Status != "sent" || len(smtp.Messages()) != 1 {
		t.Fatalf("after the admin's retry: %+v, %d messages", d, len(smtp.Messages()))
	}
	if !strings.Contains(c.Get("/settings/notifications").Text("table.deliveries"), "sent") {
		t.Error("the log does not show the retried delivery as sent")
	}
}

func TestUnsubscribeLink(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	tm := newTeam(t, app)
	app.Accounts.SetReminders(t.Context(), tm.admin.ID, false)
	owner := tm.actor(tm.owner, models.RoleOwner)
	tm.key(t, owner, "first", "7")
	app.Reminders.Run(t.Context())
	path := unsubscribePath(t, app, app.Mails()[0])

	c := app.NewClient(t)
	page := c.Get(path)
	if !strings.Contains(page.Text("main"), "owner@example.com") || page.Doc.Find("form button").Length() != 1 {
		t.Fatalf("unsubscribe page:\n%s", page.Text("main"))
	}
	var u models.User
	app.DB.Take(&u, tm.owner.ID)
	if u.RemindersOptOut {
		t.Fatal("opening the link (as a mail scanner would) unsubscribed")
	}
	// One-click, as a mail client posts it: no cookies, no CSRF token.
	res, err := app.Server.Client().Post(app.URL(path), "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	app.DB.Take(&u, tm.owner.ID)
	if res.StatusCode != 200 || !u.RemindersOptOut {
		t.Fatalf("one-click unsubscribe: %d, opted out %v", res.StatusCode, u.RemindersOptOut)
	}
	before := len(app.Mails())
	tm.key(t, owner, "second", "7")
	app.Reminders.Run(t.Context())
	if len(app.Mails()) != before {
		t.Fatal("an unsubscribed owner still gets reminders")
	}
	if page := c.Get("/unsubscribe/not-a-token"); page.Status != 404 {
		t.Fatalf("bad token: %d", page.Status)
	}
	if strings.Contains(app.Logs.String(), strings.TrimPrefix(path, "/unsubscribe/")) || !strings.Contains(app.Logs.String(), "path=/unsubscribe/:token") {
		t.Fatal("the unsubscribe token reached the logs")
	}
}

func TestConcurrentSchedulersSendEachReminderOnce(t *testing.T) {
	dbURL := testutil.DatabaseURL(t, "postgres")
	smtp := testutil.StartSMTP(t)
	first := testutil.StartApp(t, dbURL, testutil.WithSMTP(smtp))
	tm := newTeam(t, first)
	owner := tm.actor(tm.owner, models.RoleOwner)
	for i := range 30 {
		tm.key(t, owner, fmt.Sprintf("key-%02d", i), "7")
	}
	// Two more replicas on the same database, clock and SMTP server.
	replicas := []*testutil.App{first,
		testutil.StartApp(t, dbURL, testutil.WithSMTP(smtp), testutil.WithClock(first.Clock)),
		testutil.StartApp(t, dbURL, testutil.WithSMTP(smtp), testutil.WithClock(first.Clock)),
	}
	for round := range 3 {
		var wg sync.WaitGroup
		for _, r := range replicas {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := r.Reminders.Run(context.Background()); err != nil {
					t.Errorf("round %d: %v", round, err)
				}
			}()
		}
		wg.Wait()
		first.Clock.Advance(time.Hour)
	}
	seen := map[string]int{}
	for _, m := range smtp.Messages() {
		msg, _ := mail.ReadMessage(bytes.NewReader(m.Data))
		seen[msg.Header.Get("Subject")+" → "+m.To[0]]++
	}
	// 30 keys × (owner, admin; the editor and viewer are not recipients of the owner's keys)
	if len(seen) != 60 {
		t.Fatalf("%d distinct reminders, want 60", len(seen))
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s sent %d times", k, n)
		}
	}
}

// A key created with exactly 7 days left does not get "expires in 7 days"
// within seconds: like one created with 10 days left, it gets only the
// stages it lives through (1 day before, and expired).
func TestAKeyMadeWithSevenDaysLeftGetsNoSevenDayMail(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	tm := newTeam(t, app)
	start := app.Clock.Now()
	if _, err := app.Keys.Create(t.Context(), tm.ws, tm.actor(tm.owner, models.RoleOwner), keys.CreateInput{Name: "weekly", Kind: keys.Secret, Env: keys.Live, Permission: keys.PermRead, ExpiresIn: "7"}); err != nil {
		t.Fatal(err)
	}
	for range 8 * 24 {
		if err := app.Reminders.Run(t.Context()); err != nil {
			t.Fatal(err)
		}
		app.Clock.Advance(time.Hour)
	}
	got := strings.Join(arrived(app, start), "\n")
	if strings.Contains(got, "expires in 7 days") || !strings.Contains(got, `day 6: Your API key "weekly" expires in 1 day`) {
		t.Fatalf("reminders of a key made with 7 days left:\n%s", got)
	}
}
