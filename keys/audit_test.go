package keys_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
)

// seedAudit adds n events to ws whose times repeat (every 40 events share
// 25 instants) and do not follow the ids, so only the (created_at, id) order
// is unambiguous. Times are whole microseconds, PostgreSQL's precision.
func seedAudit(t *testing.T, f *fixture, ws int64, n int) {
	t.Helper()
	actions := []string{keys.ActionCreated, keys.ActionRenamed, keys.ActionRevoked}
	actors := []string{"owner@example.com", "Grace@Example.com", "sk_live_…a1b2"}
	events := make([]models.AuditEvent, 0, n)
	for i := range n {
		at := testutil.Epoch.Add(time.Duration((i*37)%1000/40) * time.Hour).Add(time.Duration(i%3) * 1500 * time.Microsecond)
		events = append(events, models.AuditEvent{
			WorkspaceID: ws, ActorLabel: actors[i%len(actors)], Action: actions[(i/2)%len(actions)],
			KeyLabel: fmt.Sprintf("k%05d", i), CreatedAt: at,
		})
	}
	if err := f.db.CreateInBatches(events, 500).Error; err != nil {
		t.Fatal(err)
	}
}

func ids(events []models.AuditEvent) []int64 {
	out := make([]int64, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

// reference is the filtered log read the old way: everything, sorted.
func reference(t *testing.T, f *fixture, ws int64, flt keys.AuditFilter) []int64 {
	t.Helper()
	q := f.db.Model(&models.AuditEvent{}).Where("workspace_id = ?", ws)
	if flt.Action != "" {
		q = q.Where("action = ?", flt.Action)
	}
	if flt.From != nil {
		q = q.Where("created_at >= ?", *flt.From)
	}
	if flt.To != nil {
		q = q.Where("created_at < ?", *flt.To)
	}
	var events []models.AuditEvent
	if err := q.Order("created_at DESC, id DESC").Find(&events).Error; err != nil {
		t.Fatal(err)
	}
	var out []int64
	for _, e := range events {
		if flt.Actor == "" || strings.Contains(strings.ToLower(e.ActorLabel), strings.ToLower(flt.Actor)) {
			out = append(out, e.ID)
		}
	}
	return out
}

func chunks(all []int64, n int) [][]int64 {
	var out [][]int64
	for len(all) > 0 {
		k := min(n, len(all))
		out = append(out, all[:k])
		all = all[k:]
	}
	return out
}

func TestAuditKeysetPagesMatchOffsetPages(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := setup(t, dbURL, 0)
		seedAudit(t, f, f.ws, 2050)
		_, other := f.member(t, "other@example.com", 0, models.RoleOwner)
		seedAudit(t, f, other.WorkspaceID, 60)

		from, to := testutil.Epoch.Add(3*time.Hour), testutil.Epoch.Add(17*time.Hour)
		instant, future := from.Add(time.Millisecond), testutil.Epoch.Add(1000*time.Hour)
		filters := map[string]keys.AuditFilter{
			"none":          {},
			"action":        {Action: keys.ActionRenamed},
			"actor":         {Actor: "GRACE@"},
			"dates":         {From: &from, To: &to},
			"action+dates":  {Action: keys.ActionRevoked, From: &from, To: &to},
			"action+actor":  {Action: keys.ActionCreated, Actor: "sk_live"},
			"matches none":  {Action: "key.nothing"},
			"one instant":   {From: &from, To: &instant},
			"in the future": {From: &future},
		}
		for name, flt := range filters {
			want := reference(t, f, f.ws, flt)
			// 41 and 50 divide 2,050: the last page is full, the boundary case.
			for _, perPage := range []int{41, 50, 64, len(want), len(want) + 1} {
				pages := chunks(want, max(perPage, 1))
				// Older, from the first page to the last.
				var at keys.Position
				for i := 0; ; i++ {
					p, err := f.svc.Audit(ctx, f.ws, flt, at, perPage)
					if err != nil {
						t.Fatal(err)
					}
					if len(pages) == 0 {
						if len(p.Events) != 0 || p.Older != nil || p.Newer != nil {
							t.Fatalf("%s: empty log gave %v", name, ids(p.Events))
						}
						break
					}
					if !slices.Equal(ids(p.Events), pages[i]) {
						t.Fatalf("%s, %d per page: older page %d is %v, want %v", name, perPage, i, ids(p.Events), pages[i])
					}
					if (p.Newer != nil) != (i > 0) || (p.Older != nil) != (i < len(pages)-1) {
						t.Fatalf("%s, %d per page: page %d of %d has newer %v, older %v", name, perPage, i, len(pages), p.Newer, p.Older)
					}
					if p.Older == nil {
						break
					}
					at = keys.Position{Before: p.Older}
				}
				if len(pages) == 0 {
					continue
				}
				// Newer, from the last page back to the first.
				p, err := f.svc.Audit(ctx, f.ws, flt, at, perPage)
				if err != nil {
					t.Fatal(err)
				}
				for i := len(pages) - 2; i >= 0; i-- {
					p, err = f.svc.Audit(ctx, f.ws, flt, keys.Position{After: p.Newer}, perPage)
					if err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(ids(p.Events), pages[i]) {
						t.Fatalf("%s, %d per page: newer page %d is %v, want %v", name, perPage, i, ids(p.Events), pages[i])
					}
				}
				if p.Newer != nil {
					t.Fatalf("%s, %d per page: the first page, reached going newer, has a newer page", name, perPage)
				}
			}

			var got []int64
			batches := 0
			err := f.svc.AuditEach(ctx, f.ws, flt, func(events []models.AuditEvent) error {
				batches++
				if len(events) > keys.AuditExportBatch {
					t.Fatalf("a batch of %d", len(events))
				}
				got = append(got, ids(events)...)
				return nil
			})
			if err != nil || !slices.Equal(got, want) {
				t.Fatalf("%s: AuditEach gave %d events (err %v), want %d", name, len(got), err, len(want))
			}
			if name == "none" && batches != 3 {
				t.Fatalf("2,050 events in %d batches", batches)
			}
		}
	})
}

func TestAuditPagesStayPutWhileEventsArrive(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := setup(t, dbURL, 0)
		seedAudit(t, f, f.ws, 120)
		first, _ := f.svc.Audit(ctx, f.ws, keys.AuditFilter{}, keys.Position{}, 50)
		second, _ := f.svc.Audit(ctx, f.ws, keys.AuditFilter{}, keys.Position{Before: first.Older}, 50)

		// New events: later ones, and one sharing the newest instant (a
		// higher id, so newer).
		top := first.Events[0].CreatedAt
		arrivals := []models.AuditEvent{
			{WorkspaceID: f.ws, ActorLabel: "late@example.com", Action: keys.ActionCreated, CreatedAt: top},
			{WorkspaceID: f.ws, ActorLabel: "late@example.com", Action: keys.ActionCreated, CreatedAt: top.Add(time.Hour)},
			{WorkspaceID: f.ws, ActorLabel: "late@example.com", Action: keys.ActionCreated, CreatedAt: top.Add(2 * time.Hour)},
		}
		if err := f.db.Create(&arrivals).Error; err != nil {
			t.Fatal(err)
		}

		again, _ := f.svc.Audit(ctx, f.ws, keys.AuditFilter{}, keys.Position{Before: first.Older}, 50)
		if !slices.Equal(ids(again.Events), ids(second.Events)) {
			t.Fatalf("page 2 changed when events arrived: %v, was %v", ids(again.Events), ids(second.Events))
		}
		third, _ := f.svc.Audit(ctx, f.ws, keys.AuditFilter{}, keys.Position{Before: again.Older}, 50)
		if len(third.Events) != 20 || third.Older != nil {
			t.Fatalf("page 3 has %d events", len(third.Events))
		}
		back, _ := f.svc.Audit(ctx, f.ws, keys.AuditFilter{}, keys.Position{After: again.Newer}, 50)
		if !slices.Equal(ids(back.Events), ids(first.Events)[0:50]) || back.Newer == nil {
			t.Fatalf("page 1, reached going newer, is %v (newer %v), want %v", ids(back.Events), back.Newer, ids(first.Events))
		}
		fresh, _ := f.svc.Audit(ctx, f.ws, keys.AuditFilter{}, keys.Position{}, 50)
		if want := []int64{arrivals[2].ID, arrivals[1].ID, arrivals[0].ID}; !slices.Equal(ids(fresh.Events)[:3], want) {
			t.Fatalf("the first page starts %v, want the arrivals %v", ids(fresh.Events)[:3], want)
		}
	})
}

func TestCursorRoundTrips(t *testing.T) {
	c := keys.Cursor{At: time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC), ID: 4711}
	got, ok := keys.ParseCursor(c.String())
	if !ok || !got.At.Equal(c.At) || got.ID != c.ID {
		t.Fatalf("%q parsed as %v %v", c.String(), got, ok)
	}
	for _, bad := range []string{"", "1", "x.1", "1.x", "1.0", "1.-3", "1.2.3"} {
		if _, ok := keys.ParseCursor(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}
