package handlers_test

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"keysmith/models"
	"keysmith/testutil"
)

// seedAuditEvents gives the workspace of owner n events whose times repeat
// (ties broken by id) and do not follow the ids; each event's subject is
// its own label, e00042, so a page can be read back from the HTML.
func seedAuditEvents(t testing.TB, app *testutil.App, owner string, n int) int64 {
	t.Helper()
	var m models.Membership
	if err := app.DB.Joins("User").Where(`"User"."email" = ?`, owner).Take(&m).Error; err != nil {
		t.Fatal(err)
	}
	actions := []string{"key.created", "key.renamed", "key.revoked"}
	actors := []string{owner, "grace@example.com", "sk_live_…a1b2"}
	events := make([]models.AuditEvent, 0, n)
	for i := range n {
		at := testutil.Epoch.Add(-time.Duration((i*37)%1000/40) * time.Hour).Add(time.Duration(i%3) * time.Millisecond)
		events = append(events, models.AuditEvent{
			WorkspaceID: m.WorkspaceID, ActorLabel: actors[i%3], Action: actions[(i/2)%3],
			KeyLabel: fmt.Sprintf("e%05d", i), IP: "192.0.2.9", CreatedAt: at,
		})
	}
	if err := app.DB.CreateInBatches(events, 500).Error; err != nil {
		t.Fatal(err)
	}
	return m.WorkspaceID
}

// auditLabels lists the workspace's event subjects the way the log orders
// them, through an independent query: the reference pages are cut from it.
func auditLabels(t *testing.T, app *testutil.App, ws int64, action string) []string {
	t.Helper()
	q := app.DB.Model(&models.AuditEvent{}).Where("workspace_id = ?", ws)
	if action != "" {
		q = q.Where("action = ?", action)
	}
	var labels []string
	if err := q.Order("created_at DESC, id DESC").Pluck("key_label", &labels).Error; err != nil {
		t.Fatal(err)
	}
	return labels
}

func pageLabels(p *testutil.Page) []string {
	var out []string
	p.Doc.Find("table.audit tbody tr td:nth-child(4)").Each(func(_ int, s *goquery.Selection) {
		out = append(out, strings.TrimSpace(s.Text()))
	})
	return out
}

func TestAuditLogKeysetPagesOverHTTP(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL)
		owner := signUp(t, app, "owner@example.com")
		ws := seedAuditEvents(t, app, "owner@example.com", 2345)

		for _, action := range []string{"", "key.renamed"} {
			want := auditLabels(t, app, ws, action)
			path := "/settings/audit-log"
			if action != "" {
				path += "?action=" + action
			}
			var pages []*testutil.Page
			for i := 0; path != ""; i++ {
				p := owner.Get(path)
				got := pageLabels(p)
				lo, hi := i*50, min((i+1)*50, len(want))
				if p.Status != 200 || !slices.Equal(got, want[lo:hi]) {
					t.Fatalf("action %q, page %d (%s): %d %v, want %v", action, i, path, p.Status, got, want[lo:hi])
				}
				if action != "" && p.Doc.Find(`.pager a`).FilterFunction(func(_ int, s *goquery.Selection) bool {
					return !strings.Contains(s.AttrOr("href", ""), "action="+action)
				}).Length() != 0 {
					t.Fatalf("a pager link drops the filter: %s", p.Body)
				}
				pages = append(pages, p)
				path = p.Doc.Find(`.pager a[rel=next]`).AttrOr("href", "")
			}
			if n := (len(want) + 49) / 50; len(pages) != n {
				t.Fatalf("action %q: %d pages, want %d", action, len(pages), n)
			}
			// And back up through the Newer links.
			p := pages[len(pages)-1]
			for i := len(pages) - 2; i >= 0; i-- {
				p = owner.Get(p.Doc.Find(`.pager a[rel=prev]`).AttrOr("href", ""))
				if got := pageLabels(p); !slices.Equal(got, want[i*50:(i+1)*50]) {
					t.Fatalf("action %q, page %d going newer: %v", action, i, got)
				}
			}
			if p.Doc.Find(`.pager a[rel=prev]`).Length() != 0 {
				t.Fatal("the first page, reached going newer, links to a newer one")
			}
		}

		// Events arriving between page views shift nothing below them.
		want := auditLabels(t, app, ws, "")
		first := owner.Get("/settings/audit-log")
		second := owner.Get(first.Doc.Find(`.pager a[rel=next]`).AttrOr("href", ""))
		app.Clock.Advance(time.Hour)
		for i := range 7 {
			app.DB.Create(&models.AuditEvent{WorkspaceID: ws, ActorLabel: "late@example.com", Action: "key.created", KeyLabel: fmt.Sprintf("late%d", i), CreatedAt: app.Clock.Now()})
		}
		third := owner.Get(second.Doc.Find(`.pager a[rel=next]`).AttrOr("href", ""))
		if got := pageLabels(third); !slices.Equal(got, want[100:150]) {
			t.Fatalf("page 3 after new events: %v, want %v", got, want[100:150])
		}
		if got := pageLabels(owner.Get(third.Doc.Find(`.pager a[rel=prev]`).AttrOr("href", ""))); !slices.Equal(got, pageLabels(second)) {
			t.Fatalf("page 2 again after new events: %v", got)
		}
		if got := pageLabels(owner.Get(third.Doc.Find(`.pager a[rel=first]`).AttrOr("href", ""))); got[0] != "late6" || got[7] != want[0] {
			t.Fatalf("the newest page starts %v", got[:8])
		}

		// A cursor that does not parse shows the first page.
		if got := pageLabels(owner.Get("/settings/audit-log?before=" + url.QueryEscape("1.x"))); got[0] != "late6" {
			t.Fatalf("bad cursor: %v", got[:3])
		}
	})
}

func TestAuditExportStreamsEveryMatchingEvent(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL)
		owner := signUp(t, app, "owner@example.com")
		ws := seedAuditEvents(t, app, "owner@example.com", 2345)

		all := auditLabels(t, app, ws, "")
		var renamedByGrace []string
		var events []models.AuditEvent
		app.DB.Where("workspace_id = ? AND action = ? AND actor_label = ?", ws, "key.renamed", "grace@example.com").Order("created_at DESC, id DESC").Find(&events)
		for _, e := range events {
			renamedByGrace = append(renamedByGrace, e.KeyLabel)
		}
		for _, tc := range []struct {
			query string
			want  []string
		}{
			{"", all},
			{"?action=key.renamed&actor=GRACE", renamedByGrace},
			{"?action=member.invited", nil},
		} {
			res, err := owner.HTTP.Get(app.URL("/settings/audit-log/export.csv" + tc.query))
			if err != nil {
				t.Fatal(err)
			}
			records, err := csv.NewReader(res.Body).ReadAll()
			res.Body.Close()
			if err != nil || len(records) != len(tc.want)+1 {
				t.Fatalf("csv%s: %d records, want %d (err %v)", tc.query, len(records), len(tc.want)+1, err)
			}
			for i, r := range records[1:] {
				if r[5] != tc.want[i] {
					t.Fatalf("csv%s row %d is %v, want %s", tc.query, i, r, tc.want[i])
				}
			}

			res, err = owner.HTTP.Get(app.URL("/settings/audit-log/export.json" + tc.query))
			if err != nil {
				t.Fatal(err)
			}
			var rows []struct {
				Target string `json:"target"`
				Action string `json:"action"`
			}
			err = json.NewDecoder(res.Body).Decode(&rows)
			res.Body.Close()
			if err != nil || len(rows) != len(tc.want) || res.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("json%s: %d rows, want %d (err %v, %s)", tc.query, len(rows), len(tc.want), err, res.Header.Get("Content-Type"))
			}
			for i, r := range rows {
				if r.Target != tc.want[i] {
					t.Fatalf("json%s row %d is %v, want %s", tc.query, i, r, tc.want[i])
				}
			}
		}
	})
}
