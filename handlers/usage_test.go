package handlers_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"gorm.io/gorm"

	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
)

// Every request that names a key counts once, under its outcome, in the
// hour it arrived: what the flush writes (in one statement for the counts,
// beside the one for the last uses) and what a graceful shutdown writes
// add up, after a restart, to exactly the requests sent. GET
// /v1/keys/{id}/usage answers them by hour and by day.
func TestUsageCountsEqualTheRequestsSent(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newAPIFixture(t, dbURL)
		admin := f.key(t, func(in *keys.CreateInput) { in.Permission = keys.PermAdmin })
		k := f.key(t, func(in *keys.CreateInput) { in.Permission, in.Scopes = keys.PermCustom, []string{"keys:read"} })
		testKey := f.key(t, func(in *keys.CreateInput) { in.Env = keys.Test })
		three := 3
		if _, err := f.app.Keys.SetRateLimits(t.Context(), f.ws, f.actor, k.Key.ID, keys.LimitSettings{PerMinute: &three}); err != nil {
			t.Fatal(err)
		}
		start := f.app.Clock.Now()
		send := func(method, path string, body any, want int) {
			t.Helper()
			if r := call(t, f.app, method, path, k.Secret, body); r.Status != want {
				t.Fatalf("%s %s: %d %s, want %d", method, path, r.Status, r.Raw, want)
			}
		}
		// Hour 1: 2 successes, 1 refused for its scope, 1 rate limited;
		// then, a minute on, 1 for the other environment and 1 not found.
		send("GET", "/v1/auth/test", nil, 200)
		send("GET", "/v1/keys", nil, 200)
		send("POST", "/v1/keys", map[string]any{"name": "x", "permission": "read"}, 403)
		send("GET", "/v1/auth/test", nil, 429)
		f.app.Clock.Advance(time.Minute)
		send("GET", fmt.Sprintf("/v1/keys/%d", testKey.Key.ID), nil, 403)
		send("GET", "/v1/keys/999999", nil, 404)
		call(t, f.app, "GET", "/v1/auth/test", keys.Generate("ks", keys.Secret, keys.Live), nil) // names no key: counted nowhere

		var statements atomic.Int64
		if err := f.app.DB.Callback().Raw().After("gorm:raw").Register("count_usage_statements", func(*gorm.DB) { statements.Add(1) }); err != nil {
			t.Fatal(err)
		}
		if err := f.app.Flusher.RunOnce(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := statements.Load(); got != 2 {
			t.Errorf("the flush took %d statements for 7 requests of 2 keys, want 2 (last uses, counts)", got)
		}

		// Hour 2: refused while disabled, then 2 successes, left in the
		// buffer for the graceful shutdown to write.
		f.app.Clock.Advance(time.Hour)
		if _, err := f.app.Keys.SetDisabled(t.Context(), f.ws, f.actor, k.Key.ID, true); err != nil {
			t.Fatal(err)
		}
		send("GET", "/v1/auth/test", nil, 401)
		if _, err := f.app.Keys.SetDisabled(t.Context(), f.ws, f.actor, k.Key.ID, false); err != nil {
			t.Fatal(err)
		}
		send("GET", "/v1/auth/test", nil, 200)
		send("GET", "/v1/auth/test", nil, 200)
		if err := f.app.Close(); err != nil { // what SIGTERM does after draining
			t.Fatal(err)
		}

		again := testutil.StartApp(t, dbURL, testutil.WithClock(f.app.Clock))
		path := fmt.Sprintf("/v1/keys/%d/usage?from=%s", k.Key.ID, start.Format(time.RFC3339))
		r := call(t, again, "GET", path, admin.Secret, nil)
		if r.Status != 200 {
			t.Fatalf("usage: %d %s", r.Status, r.Raw)
		}
		data := r.Body["data"].([]any)
		if len(data) != 2 {
			t.Fatalf("%d hourly points from %s, want 2: %s", len(data), start, r.Raw)
		}
		want := []string{
			"start=" + start.Format(time.RFC3339) + " requests=6 success=2 rate_limited=1 forbidden=2 other=1",
			"start=" + start.Add(time.Hour).Format(time.RFC3339) + " requests=3 success=2 rate_limited=0 forbidden=0 other=1",
		}
		for i, p := range data {
			m := p.(map[string]any)
			got := fmt.Sprintf("start=%v requests=%v success=%v rate_limited=%v forbidden=%v other=%v", m["start"], m["requests"], m["success"], m["rate_limited"], m["forbidden"], m["other"])
			if got != want[i] {
				t.Errorf("hour %d: %s\nwant    %s", i, got, want[i])
			}
		}
		day := call(t, again, "GET", fmt.Sprintf("/v1/keys/%d/usage?granularity=day", k.Key.ID), admin.Secret, nil)
		days := day.Body["data"].([]any)
		today := days[len(days)-1].(map[string]any)
		if len(days) != 30 || today["requests"] != 9.0 || today["success"] != 4.0 || today["start"] != start.Truncate(24*time.Hour).Format(time.RFC3339) {
			t.Fatalf("by day: %d points, today %v", len(days), today)
		}
	})
}

// Who may read a key may read its usage, and no one else: keys:read, the
// same environment, the same workspace; a bad range is 400.
func TestUsageAPIRefusals(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	live := f.key(t, nil)
	testKey := f.key(t, func(in *keys.CreateInput) { in.Env = keys.Test })
	noKeys := f.key(t, func(in *keys.CreateInput) { in.Permission, in.Scopes = keys.PermCustom, []string{"files:read"} })
	path := fmt.Sprintf("/v1/keys/%d/usage", live.Key.ID)
	cases := []struct {
		key, path string
		status    int
		code      string
	}{
		{testKey.Secret, path, 403, "wrong_environment"},
		{noKeys.Secret, path, 403, "insufficient_scope"},
		{live.Secret, "/v1/keys/999999/usage", 404, "resource_missing"},
		{live.Secret, path + "?granularity=week", 400, "invalid_usage_range"},
		{live.Secret, path + "?from=yesterday", 400, "invalid_usage_range"},
		{live.Secret, path + "?from=2026-03-05&to=2026-03-01", 400, "invalid_usage_range"},
		{live.Secret, path + "?from=2026-01-01&to=2026-03-01", 400, "invalid_usage_range"},
		{"", path, 401, "missing_api_key"},
	}
	for _, c := range cases {
		r := call(t, f.app, "GET", c.path, c.key, nil)
		if _, code := r.errorCode(t); r.Status != c.status || code != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.path, r.Status, r.Raw, c.status, c.code)
		}
	}
	r := call(t, f.app, "GET", path+"?granularity=day&from=2026-02-01&to=2026-03-01", live.Secret, nil)
	if r.Status != 200 || len(r.Body["data"].([]any)) != 28 || r.Body["from"] != "2026-02-01T00:00:00Z" || r.Body["to"] != "2026-03-01T00:00:00Z" {
		t.Fatalf("February by day: %d %s", r.Status, r.Raw)
	}
}

// The scheduler prunes counts past 90 days, in whole UTC days, and keeps
// the rest.
func TestSchedulerPrunesOldUsage(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	k := f.key(t, nil)
	now := f.app.Clock.Now()                                                                     // 09:00
	f.app.Usage.Count(k.Key.ID, now.Add(-keys.UsageRetention-10*time.Hour), keys.OutcomeSuccess) // 23:00 the day before: gone
	f.app.Usage.Count(k.Key.ID, now.Add(-keys.UsageRetention-time.Hour), keys.OutcomeSuccess)    // 08:00 that day: kept
	f.app.Usage.Count(k.Key.ID, now, keys.OutcomeSuccess)
	if err := f.app.Flusher.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := f.app.Scheduler.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	var hours, days []int64
	f.app.DB.Model(&models.UsageCount{}).Where("span = 1").Order("hour").Pluck("hour", &hours)
	f.app.DB.Model(&models.UsageCount{}).Where("span = 24").Order("hour").Pluck("hour", &days)
	if len(hours) != 2 || hours[0] != keys.HourOf(now.Add(-keys.UsageRetention-time.Hour)) || len(days) != 2 {
		t.Fatalf("buckets left: hours %v, days %v", hours, days)
	}
}

// The key page's chart: nothing for an unused key, a bar for one request,
// bars and a full table for a busy key, and both keys of a rotation in its
// grace period on one chart.
func TestKeyPageUsageChart(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	c := newDashboardClient(t, f.app)
	idle := f.key(t, nil)
	page := c.Get(fmt.Sprintf("/settings/api-keys/%d", idle.Key.ID))
	if got := page.Text("#usage .chart-empty"); got != "No requests in this period." || page.Doc.Find("#usage .chart-plot rect").Length() != 0 {
		t.Fatalf("an unused key's chart: %q, %d bars", got, page.Doc.Find("#usage .chart-plot rect").Length())
	}
	if page.Doc.Find("#usage svg[role=img] title").Length() == 0 {
		t.Fatal("the chart has no title")
	}

	one := f.key(t, nil)
	call(t, f.app, "GET", "/v1/auth/test", one.Secret, nil)
	f.app.Usage.Flush(t.Context())
	page = c.Get(fmt.Sprintf("/settings/api-keys/%d", one.Key.ID))
	bars := page.Doc.Find("#usage .chart-plot g")
	if bars.Length() != 1 || bars.Find("rect.success").Length() != 1 || !strings.Contains(bars.Find("title").Text(), "1 request (1 success)") {
		t.Fatalf("one request: %d bars, %q", bars.Length(), bars.Find("title").Text())
	}
	if got := page.Doc.Find("#usage details.chart-data tbody tr").Length(); got != 1 {
		t.Fatalf("Show data lists %d hours for one request", got)
	}

	busy := f.key(t, nil)
	for h := range 48 { // two days, a request more each hour, a refusal every 6th
		at := f.app.Clock.Now().Add(-time.Duration(h) * time.Hour)
		for range h + 1 {
			f.app.Usage.Count(busy.Key.ID, at, keys.OutcomeSuccess)
		}
		if h%6 == 0 {
			f.app.Usage.Count(busy.Key.ID, at, keys.OutcomeForbidden)
		}
	}
	f.app.Usage.Flush(t.Context())
	page = c.Get(fmt.Sprintf("/settings/api-keys/%d", busy.Key.ID))
	if n := page.Doc.Find("#usage .chart-plot g").Length(); n != 48 {
		t.Fatalf("busy key: %d bars, want 48", n)
	}
	if n := page.Doc.Find("#usage .chart-plot rect.forbidden").Length(); n != 8 {
		t.Fatalf("busy key: %d forbidden segments, want 8", n)
	}
	var stats []string
	page.Doc.Find("#usage .usage-stats > div").Each(func(_ int, s *goquery.Selection) {
		stats = append(stats, s.Find("dt").Text()+" "+s.Find("dd").Text())
	})
	if got := strings.Join(stats, ", "); got != "Requests 1,184, Success 1,176, Rate limited 0, Forbidden 8, Other refusals 0" {
		t.Fatalf("busy key's totals: %q", got)
	}
	if got := page.Text("#usage .chart-scale"); got != "50 per hour" {
		t.Fatalf("scale %q", got)
	}
	daily := c.Get(fmt.Sprintf("/settings/api-keys/%d?usage=30d", busy.Key.ID))
	if n := daily.Doc.Find("#usage .chart-plot g").Length(); n != 3 { // 48 hours back from 09:00 touch 3 days
		t.Fatalf("busy key by day: %d bars", n)
	}

	// A rotation in its grace period: one chart, a layer per key.
	rotated, err := f.app.Keys.Rotate(t.Context(), f.ws, f.actor, one.Key.ID, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	call(t, f.app, "GET", "/v1/auth/test", rotated.Secret, nil)
	call(t, f.app, "GET", "/v1/auth/test", rotated.Secret, nil)
	f.app.Usage.Flush(t.Context())
	for _, id := range []int64{one.Key.ID, rotated.Key.ID} {
		page = c.Get(fmt.Sprintf("/settings/api-keys/%d", id))
		rows := page.Doc.Find("#usage table.usage-totals tbody tr")
		if rows.Length() != 2 || !strings.HasPrefix(rows.Eq(0).Text(), "Old key "+one.Key.Hint) || !strings.HasPrefix(rows.Eq(1).Text(), "New key "+rotated.Key.Hint) {
			t.Fatalf("key %d's pair: %q", id, rows.Text())
		}
		var cells []string
		rows.Find("th, td").Each(func(_ int, s *goquery.Selection) { cells = append(cells, s.Text()) })
		if got := strings.Join(cells, " "); got != "Old key "+one.Key.Hint+" 1 1 0 0 0 New key "+rotated.Key.Hint+" 2 2 0 0 0" {
			t.Fatalf("pair totals: %q", got)
		}
		bar := page.Doc.Find("#usage .chart-plot g")
		if bar.Length() != 1 || bar.Find("rect.old-key").Length() != 1 || bar.Find("rect.new-key").Length() != 1 {
			t.Fatalf("pair bars: %d", bar.Length())
		}
	}
	if r := c.Get("/settings/api-keys"); r.Status != http.StatusOK {
		t.Fatalf("list: %d", r.Status)
	}
}
