package handlers_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"keysmith/config"
	"keysmith/keys"
	"keysmith/testutil"
)

func limitKey(t *testing.T, f *apiFixture, in keys.LimitSettings) keys.Created {
	t.Helper()
	k := f.key(t, nil)
	if _, err := f.app.Keys.SetRateLimits(t.Context(), f.ws, f.actor, k.Key.ID, in); err != nil {
		t.Fatal(err)
	}
	return k
}

func intp(v int) *int { return &v }

// rateHeaders is what an answer says of the key's limits.
func rateHeaders(r apiResp) string {
	return fmt.Sprintf("limit=%s remaining=%s reset=%s | policy=%s | ratelimit=%s",
		r.Header.Get("RateLimit-Limit"), r.Header.Get("RateLimit-Remaining"), r.Header.Get("RateLimit-Reset"),
		r.Header.Get("RateLimit-Policy"), r.Header.Get("RateLimit"))
}

// Two replicas on one database and one Redis spend from one budget.
func TestRateLimitIsSharedByReplicas(t *testing.T) {
	r := testutil.NewRedis(t)
	dbURL := testutil.DatabaseURL(t, "postgres")
	f := newAPIFixture(t, dbURL, testutil.WithRedis(r))
	other := testutil.StartApp(t, dbURL, testutil.WithRedis(r))
	k := limitKey(t, f, keys.LimitSettings{PerMinute: intp(5)})
	replicas := []*testutil.App{f.app, other}
	through := 0
	for i := range 12 {
		res := call(t, replicas[i%2], "GET", "/v1/auth/test", k.Secret, nil)
		switch res.Status {
		case http.StatusOK:
			through++
		case http.StatusTooManyRequests:
			if res.Header.Get("RateLimit-Limit") != "5" || res.Header.Get("RateLimit") == "" || res.Header.Get("Retry-After") == "" {
				t.Errorf("429 headers: %s", rateHeaders(res))
			}
		default:
			t.Fatalf("request %d: %d %s", i+1, res.Status, res.Raw)
		}
	}
	if through != 5 {
		t.Fatalf("%d of 12 requests alternating between two replicas got through; the shared limit is 5", through)
	}
	if len(r.Keys(t)) == 0 {
		t.Error("nothing was counted in Redis")
	}
	for _, app := range replicas {
		if res := call(t, app, "GET", "/readyz", "", nil); res.Status != 200 || res.Body["status"] != "ok" || res.Body["redis"] != "ok" {
			t.Errorf("/readyz with Redis: %d %s", res.Status, res.Raw)
		}
	}
}

// Without Redis the API keeps answering, limited by each process, and
// /readyz says so while staying ready.
func TestAPIAnswersWhileRedisIsDown(t *testing.T) {
	down := testutil.UnreachableRedisURL(t)
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"), testutil.WithConfig(func(c *config.Config) { c.RedisURL = down }))
	k := limitKey(t, f, keys.LimitSettings{PerMinute: intp(2)})
	var statuses []int
	for range 3 {
		statuses = append(statuses, call(t, f.app, "GET", "/v1/auth/test", k.Secret, nil).Status)
	}
	if fmt.Sprint(statuses) != "[200 200 429]" {
		t.Fatalf("statuses %v; want the local limit of 2 to hold", statuses)
	}
	res := call(t, f.app, "GET", "/readyz", "", nil)
	if res.Status != 200 || res.Body["status"] != "degraded" || res.Body["redis"] != "unreachable" || res.Body["database"] != "ok" {
		t.Fatalf("/readyz with Redis down: %d %s", res.Status, res.Raw)
	}
	families, err := f.app.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counted := 0.0
	for _, fam := range families {
		if fam.GetName() == "keysmith_redis_fallbacks_total" {
			counted = fam.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if counted != 3 {
		t.Errorf("keysmith_redis_fallbacks_total = %v, want 3", counted)
	}
	if n := strings.Count(f.app.Logs.String(), "Redis does not answer"); n != 1 {
		t.Errorf("the outage logged %d times, want once", n)
	}
}

func TestReadyzWithoutRedis(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	if res := call(t, app, "GET", "/readyz", "", nil); res.Status != 200 || res.Body["status"] != "ok" || res.Body["redis"] != "off" {
		t.Fatalf("/readyz: %d %s", res.Status, res.Raw)
	}
}

// An hourly quota refuses once spent though the minute has room; the
// headers describe the tightest window, the 429 names it, and the refused
// requests spend nothing of the minute.
func TestQuotasRefuseAndNameTheirWindow(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newAPIFixture(t, dbURL)
		k := limitKey(t, f, keys.LimitSettings{PerMinute: intp(3), PerHour: intp(4)})
		const policy = `"minute";q=3;w=60, "hour";q=4;w=3600`
		var res apiResp
		for range 3 {
			res = call(t, f.app, "GET", "/v1/auth/test", k.Secret, nil)
		}
		if got, want := rateHeaders(res), `limit=3 remaining=0 reset=60 | policy=`+policy+` | ratelimit="minute";r=0;t=60`; res.Status != 200 || got != want {
			t.Fatalf("third request: %d\n got %s\nwant %s", res.Status, got, want)
		}

		// A minute later the minute is full again, the hour has one left
		// (one back every 15 minutes): the hour is the tightest.
		f.app.Clock.Advance(time.Minute)
		res = call(t, f.app, "GET", "/v1/auth/test", k.Secret, nil)
		if got, want := rateHeaders(res), `limit=4 remaining=0 reset=3540 | policy=`+policy+` | ratelimit="hour";r=0;t=3540`; res.Status != 200 || got != want {
			t.Fatalf("fourth request: %d\n got %s\nwant %s", res.Status, got, want)
		}
		res = call(t, f.app, "GET", "/v1/auth/test", k.Secret, nil)
		if typ, code := res.errorCode(t); res.Status != 429 || typ != "rate_limit_error" || code != "rate_limit_exceeded" {
			t.Fatalf("fifth request: %d %s", res.Status, res.Raw)
		}
		msg := res.Body["error"].(map[string]any)["message"]
		if msg != "Hourly quota of 4 requests exceeded. Retry after the time in the Retry-After header." || res.Header.Get("Retry-After") != "840" {
			t.Fatalf("429: %q, Retry-After %q", msg, res.Header.Get("Retry-After"))
		}
		if got, want := rateHeaders(res), `limit=4 remaining=0 reset=3540 | policy=`+policy+` | ratelimit="hour";r=0;t=3540`; got != want {
			t.Fatalf("429 headers:\n got %s\nwant %s", got, want)
		}
		v := call(t, f.app, "POST", "/v1/keys/verify", serviceToken, map[string]any{"key": k.Secret})
		if rl, _ := v.Body["ratelimit"].(map[string]any); v.Body["code"] != "RATE_LIMITED" || rl["limit"] != 4.0 || rl["remaining"] != 0.0 || rl["reset"] != 3540.0 {
			t.Fatalf("verify over the hourly quota: %s", v.Raw)
		}

		// Without the quota, the minute shows one request spent a minute
		// ago and this one: the two refused spent nothing.
		if _, err := f.app.Keys.SetRateLimits(t.Context(), f.ws, f.actor, k.Key.ID, keys.LimitSettings{PerMinute: intp(3)}); err != nil {
			t.Fatal(err)
		}
		res = call(t, f.app, "GET", "/v1/auth/test", k.Secret, nil)
		if got, want := rateHeaders(res), `limit=3 remaining=1 reset=40 | policy="minute";q=3;w=60 | ratelimit="minute";r=1;t=40`; res.Status != 200 || got != want {
			t.Fatalf("without the quota: %d\n got %s\nwant %s", res.Status, got, want)
		}

		day := limitKey(t, f, keys.LimitSettings{PerMinute: intp(2), PerDay: intp(2)})
		call(t, f.app, "GET", "/v1/auth/test", day.Secret, nil)
		call(t, f.app, "GET", "/v1/auth/test", day.Secret, nil)
		f.app.Clock.Advance(time.Minute)
		res = call(t, f.app, "GET", "/v1/auth/test", day.Secret, nil)
		msg = res.Body["error"].(map[string]any)["message"]
		if res.Status != 429 || msg != "Daily quota of 2 requests exceeded. Retry after the time in the Retry-After header." || res.Header.Get("RateLimit-Policy") != `"minute";q=2;w=60, "day";q=2;w=86400` {
			t.Fatalf("over the daily quota: %d %q %s", res.Status, msg, rateHeaders(res))
		}
	})
}

// fact is the value the key page's facts list gives for a term.
func fact(p *testutil.Page, term string) string {
	dd := p.Doc.Find("dl.facts dt").FilterFunction(func(_ int, s *goquery.Selection) bool {
		return strings.TrimSpace(s.Text()) == term
	}).Next()
	return strings.Join(strings.Fields(dd.Text()), " ")
}

func TestAdminsSetQuotasOnTheKeyPage(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	owner := signUp(t, app, "owner@example.com")
	secretOf(t, createKey(t, owner, map[string]string{"name": "Metered"}))
	id := keyIDByName(t, app, "Metered")
	detail := owner.Get(fmt.Sprintf("/settings/api-keys/%d", id))
	if fact(detail, "Quotas") != "None" {
		t.Fatalf("quotas of a new key: %q", fact(detail, "Quotas"))
	}
	form := `form[action$="/rate-limit"]`
	value := func(p *testutil.Page, id string) string { v, _ := p.Doc.Find("#" + id).Attr("value"); return v }

	page := owner.Submit(detail, form, map[string]string{"rate_limit": "100", "hourly_quota": "50", "daily_quota": "lots"})
	if page.Status != http.StatusUnprocessableEntity ||
		!strings.Contains(page.Text("#hourly_quota-error"), "at least 100") ||
		!strings.Contains(page.Text("#daily_quota-error"), "requests per day from 1") {
		t.Fatalf("invalid quotas: %d %q %q", page.Status, page.Text("#hourly_quota-error"), page.Text("#daily_quota-error"))
	}
	if value(page, "rate_limit") != "100" || value(page, "hourly_quota") != "50" || value(page, "daily_quota") != "lots" {
		t.Errorf("input not kept: %q %q %q", value(page, "rate_limit"), value(page, "hourly_quota"), value(page, "daily_quota"))
	}
	if fact(page, "Quotas") != "None" {
		t.Errorf("an invalid form changed the facts: %q", fact(page, "Quotas"))
	}

	page = owner.Submit(detail, form, map[string]string{"rate_limit": "100", "hourly_quota": "6000", "daily_quota": "5000"})
	if page.Status != http.StatusUnprocessableEntity || !strings.Contains(page.Text("#daily_quota-error"), "at least 6000") {
		t.Fatalf("a day below the hour: %d %q", page.Status, page.Text("#daily_quota-error"))
	}

	page = owner.Submit(detail, form, map[string]string{"rate_limit": "100", "hourly_quota": "6000", "daily_quota": "100000"})
	if !strings.Contains(page.Text(".flash"), "Metered may now make 100 requests per minute, 6000 per hour, 100000 per day.") {
		t.Fatalf("flash: %q", page.Text(".flash"))
	}
	if fact(page, "Rate limit") != "100 requests per minute" || fact(page, "Quotas") != "6000 requests per hour, 100000 per day" {
		t.Fatalf("facts: %q / %q", fact(page, "Rate limit"), fact(page, "Quotas"))
	}
	if value(page, "hourly_quota") != "6000" || value(page, "daily_quota") != "100000" {
		t.Errorf("form after saving: %q %q", value(page, "hourly_quota"), value(page, "daily_quota"))
	}

	page = owner.Submit(page, form, map[string]string{"rate_limit": "", "hourly_quota": "", "daily_quota": ""})
	if fact(page, "Quotas") != "None" || !strings.HasPrefix(fact(page, "Rate limit"), "1000 requests per minute (default") {
		t.Fatalf("cleared: %q / %q", fact(page, "Rate limit"), fact(page, "Quotas"))
	}
}
