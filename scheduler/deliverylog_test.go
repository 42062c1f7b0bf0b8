package scheduler_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"keysmith/models"
	"keysmith/outbox"
	"keysmith/testutil"
)

// logIn logs a team member in and switches to the team's workspace.
func (tm *team) logIn(t *testing.T, email string) *testutil.Client {
	t.Helper()
	c := tm.app.NewClient(t)
	if p := c.Submit(c.Get("/login"), "form[action='/login']", map[string]string{"email": email, "password": "long enough pw"}); p.URL.Path != "/settings/api-keys" {
		t.Fatalf("login %s: %s", email, p.URL)
	}
	if account := c.Get("/settings/account"); account.Doc.Find("form.switcher").Length() > 0 { // a member of two workspaces
		c.Submit(account, "form.switcher", map[string]string{"workspace_id": fmt.Sprint(tm.ws)})
	}
	return c
}

// failFor makes n reminders fail for good: refused MaxAttempts times.
func failFor(t *testing.T, tm *team, smtp *testutil.SMTPServer, names ...string) {
	t.Helper()
	app := tm.app
	for _, name := range names {
		tm.key(t, tm.actor(tm.owner, models.RoleOwner), name, "7")
	}
	smtp.Refuse(len(names) * app.Outbox.MaxAttempts)
	for i := 1; i <= app.Outbox.MaxAttempts; i++ {
		if err := app.Reminders.Run(t.Context()); err != nil {
			t.Fatal(err)
		}
		app.Clock.Advance(outbox.Backoff(i))
	}
}

// Five deliveries failed long ago and 55 were sent since: the failed ones
// are past the newest 50, yet the Failed filter and the second page show
// them, Retry works from there and comes back to the same filter.
func TestDeliveryLogFiltersPagesAndRetries(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		smtp := testutil.StartSMTP(t)
		app := testutil.StartApp(t, dbURL, testutil.WithSMTP(smtp))
		tm := newTeam(t, app)
		app.Accounts.SetReminders(t.Context(), tm.admin.ID, false) // one recipient per key: the owner
		failFor(t, tm, smtp, "doomed-0", "doomed-1", "doomed-2", "doomed-3", "doomed-4")
		for i := range 55 {
			tm.key(t, tm.actor(tm.owner, models.RoleOwner), fmt.Sprintf("fine-%02d", i), "7")
		}
		if err := app.Reminders.Run(t.Context()); err != nil {
			t.Fatal(err)
		}

		c := tm.logIn(t, "owner@example.com")
		all := c.Get("/settings/notifications")
		if n := all.Doc.Find("table.deliveries tbody tr").Length(); n != 50 || strings.Contains(all.Text("table.deliveries"), "failed") {
			t.Fatalf("first page: %d rows:\n%s", n, all.Text("table.deliveries"))
		}
		if got := all.Text(".pager"); !strings.Contains(got, "Page 1 of 2 · 60 deliveries") {
			t.Errorf("pager %q", got)
		}
		var tabs []string
		all.Doc.Find("nav.delivery-filter a").Each(func(_ int, a *goquery.Selection) {
			tabs = append(tabs, strings.Join(strings.Fields(a.Text()), " "))
		})
		if strings.Join(tabs, ", ") != "All 60, Pending 0, Failed 5, Sent 55" {
			t.Errorf("filter tabs %q", tabs)
		}
		older := c.Get(all.Doc.Find(".pager a[rel=next]").AttrOr("href", ""))
		if n := older.Doc.Find("table.deliveries form button").Length(); n != 5 || !strings.Contains(older.Text("table.deliveries"), "doomed-4") {
			t.Fatalf("second page: %d Retry buttons:\n%s", n, older.Text("table.deliveries"))
		}

		failed := c.Get(all.Doc.Find(`nav.delivery-filter a:contains("Failed")`).AttrOr("href", ""))
		if failed.URL.RawQuery != "status=failed" || failed.Doc.Find("table.deliveries tbody tr").Length() != 5 {
			t.Fatalf("failed filter %s:\n%s", failed.URL, failed.Text("table.deliveries"))
		}
		if got := failed.Text("table.deliveries tbody tr:first-child .attempts"); got != "8 attempts" {
			t.Errorf("attempts %q", got)
		}
		if current := failed.Text(`nav.delivery-filter a[aria-current=page]`); !strings.HasPrefix(current, "Failed") {
			t.Errorf("current tab %q", current)
		}
		retried := c.Submit(failed, "table.deliveries form", nil)
		if retried.URL.RawQuery != "status=failed" || !strings.Contains(retried.Text(".flash"), "will be retried") {
			t.Fatalf("after Retry: %s, flash %q", retried.URL, retried.Text(".flash"))
		}
		if n := retried.Doc.Find("table.deliveries tbody tr").Length(); n != 4 {
			t.Fatalf("%d failed deliveries after one retry, want 4", n)
		}
		pending := c.Get("/settings/notifications?status=pending")
		if n := pending.Doc.Find("table.deliveries tbody tr").Length(); n != 1 || !strings.Contains(pending.Text("table.deliveries"), "pending") {
			t.Fatalf("pending filter:\n%s", pending.Text("table.deliveries"))
		}
		if got := c.Get("/settings/notifications?status=sent&page=2"); got.Doc.Find("table.deliveries tbody tr").Length() != 5 ||
			!strings.Contains(got.Doc.Find(".pager a[rel=prev]").AttrOr("href", ""), "status=sent") {
			t.Errorf("sent, page 2: %d rows, pager %q", got.Doc.Find("table.deliveries tbody tr").Length(), got.Text(".pager"))
		}
		if got := c.Get("/settings/notifications?status=nonsense&page=99"); got.Status != 200 || !strings.Contains(got.Text(".pager"), "Page 2 of 2") {
			t.Errorf("unknown filter and page: %d, pager %q", got.Status, got.Text(".pager"))
		}
	})
}

// Owners and admins see on Settings → API Keys that reminders failed, with
// a link to them; editors and viewers do not; the banner goes once nothing
// has failed.
func TestFailedDeliveriesBanner(t *testing.T) {
	smtp := testutil.StartSMTP(t)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"), testutil.WithSMTP(smtp))
	tm := newTeam(t, app)
	app.Accounts.SetReminders(t.Context(), tm.admin.ID, false)
	owner := tm.logIn(t, "owner@example.com")
	if n := owner.Get("/settings/api-keys").Doc.Find(".failed-deliveries").Length(); n != 0 {
		t.Fatal("banner with nothing failed")
	}
	failFor(t, tm, smtp, "doomed-0", "doomed-1")

	for email, shown := range map[string]bool{"owner@example.com": true, "admin@example.com": true, "editor@example.com": false, "viewer@example.com": false} {
		c := owner
		if email != "owner@example.com" {
			c = tm.logIn(t, email)
		}
		page := c.Get("/settings/api-keys")
		banner := page.Doc.Find(".failed-deliveries")
		if (banner.Length() == 1) != shown {
			t.Errorf("%s: banner shown %v, want %v", email, banner.Length() == 1, shown)
		}
		if shown {
			if got := strings.Join(strings.Fields(banner.Text()), " "); !strings.HasPrefix(got, "2 deliveries could not be made") {
				t.Errorf("banner %q", got)
			}
			if href := banner.Find("a").AttrOr("href", ""); href != "/settings/notifications?status=failed" {
				t.Errorf("banner links to %q", href)
			}
		}
	}

	failed := owner.Get("/settings/notifications?status=failed")
	for range 2 {
		failed = owner.Submit(failed, "table.deliveries form", nil)
	}
	if err := app.Reminders.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := owner.Get("/settings/api-keys").Doc.Find(".failed-deliveries").Length(); n != 0 {
		t.Fatal("banner still shown after the failed reminders were sent")
	}
}

// A refused reminder says how many attempts it took, in good English, and
// when it is tried again: in so many minutes, or now once that time came.
func TestDeliveryLogRetryTexts(t *testing.T) {
	smtp := testutil.StartSMTP(t)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"), testutil.WithSMTP(smtp))
	tm := newTeam(t, app)
	app.Accounts.SetReminders(t.Context(), tm.admin.ID, false)
	tm.key(t, tm.actor(tm.owner, models.RoleOwner), "flaky", "7")
	smtp.Refuse(2)
	app.Reminders.Run(t.Context())
	c := tm.logIn(t, "owner@example.com")

	row := func() (string, string, string) {
		page := c.Get("/settings/notifications")
		return page.Text("table.deliveries .badge"), page.Text("table.deliveries .attempts"), page.Text("table.deliveries .next-try")
	}
	if status, attempts, next := row(); status != "retrying" || attempts != "1 attempt" || next != "next try in 1 minute" {
		t.Fatalf("after one refusal: %q, %q, %q", status, attempts, next)
	}
	app.Clock.Advance(30 * time.Second)
	if _, _, next := row(); next != "next try in less than a minute" {
		t.Fatalf("30 s later: %q", next)
	}
	app.Clock.Advance(45 * time.Second)
	if _, _, next := row(); next != "retrying now" {
		t.Fatalf("once due: %q", next)
	}
	app.Reminders.Run(t.Context())
	if status, attempts, next := row(); status != "retrying" || attempts != "2 attempts" || next != "next try in 2 minutes" {
		t.Fatalf("after two refusals: %q, %q, %q", status, attempts, next)
	}
}

// metric reads one series of the app's registry: a counter by its status
// label, or the unlabelled gauge.
func metric(t *testing.T, app *testutil.App, name, status string) float64 {
	t.Helper()
	families, err := app.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			switch {
			case status == "" && m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == status:
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// Each attempt's outcome is counted, and the queue's depth is what the
// database holds at each scrape.
func TestDeliveryMetrics(t *testing.T) {
	smtp := testutil.StartSMTP(t)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"), testutil.WithSMTP(smtp))
	tm := newTeam(t, app)
	app.Accounts.SetReminders(t.Context(), tm.admin.ID, false)
	app.Outbox.MaxAttempts = 2
	tm.key(t, tm.actor(tm.owner, models.RoleOwner), "doomed", "7")
	if err := app.Reminders.Plan(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := metric(t, app, "keysmith_reminder_deliveries_pending", ""); n != 1 {
		t.Fatalf("pending %v, want 1", n)
	}
	smtp.Refuse(2)
	app.Reminders.Run(t.Context()) // refused: retried later
	app.Clock.Advance(outbox.Backoff(1))
	app.Reminders.Run(t.Context()) // refused again: failed
	tm.key(t, tm.actor(tm.owner, models.RoleOwner), "fine", "7")
	app.Reminders.Run(t.Context())
	got := fmt.Sprint(metric(t, app, "keysmith_reminder_deliveries_total", "sent"), metric(t, app, "keysmith_reminder_deliveries_total", "retry"),
		metric(t, app, "keysmith_reminder_deliveries_total", "failed"), metric(t, app, "keysmith_reminder_deliveries_pending", ""))
	if got != "1 1 1 0" {
		t.Fatalf("sent, retry, failed, pending = %s, want 1 1 1 0", got)
	}
}
