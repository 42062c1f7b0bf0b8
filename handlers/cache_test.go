package handlers_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"keysmith/config"
	"keysmith/keys"
	"keysmith/testutil"
)

// A flood of random well-formed keys from one address costs at most a
// minute's worth of lookups: then the address is refused before any
// lookup, while its real (cached) key keeps working and other addresses
// are untouched. The negative cache stays bounded whatever arrives.
func TestUnknownKeyFloodIsThrottledPerIP(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	good := f.key(t, nil)
	if r := call(t, f.app, "GET", "/v1/auth/test", good.Secret, nil); r.Status != 200 {
		t.Fatalf("good key: %d", r.Status)
	}
	misses := func() float64 {
		return counterValue(t, f.app, "keysmith_key_cache_lookups_total", "miss")
	}
	before := misses()
	statuses := map[int]int{}
	for range 3 * keys.FailuresPerMinute {
		r := call(t, f.app, "GET", "/v1/auth/test", keys.Generate("ks", keys.Secret, keys.Live), nil)
		statuses[r.Status]++
		if r.Status == 429 && r.Header.Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
	}
	if statuses[401] != keys.FailuresPerMinute || statuses[429] != 2*keys.FailuresPerMinute {
		t.Fatalf("statuses %v: want %d × 401 then 429s", statuses, keys.FailuresPerMinute)
	}
	if got := misses() - before; got != keys.FailuresPerMinute {
		t.Errorf("%v database lookups for the flood, want %d", got, keys.FailuresPerMinute)
	}
	if r := call(t, f.app, "GET", "/v1/auth/test", good.Secret, nil); r.Status != 200 {
		t.Fatalf("the flooding address's real key: %d", r.Status)
	}
	// The verify endpoint is the operator's own: never throttled.
	if r := call(t, f.app, "POST", "/v1/keys/verify", serviceToken, map[string]any{"key": keys.Generate("ks", keys.Secret, keys.Live)}); r.Status != 200 || r.Body["code"] != "NOT_FOUND" {
		t.Fatalf("verify during the flood: %d %s", r.Status, r.Raw)
	}
	// A minute later the bucket is full again.
	f.app.Clock.Advance(keys.LongCacheTTL)
	if r := call(t, f.app, "GET", "/v1/auth/test", keys.Generate("ks", keys.Secret, keys.Live), nil); r.Status != 401 {
		t.Fatalf("a minute later: %d", r.Status)
	}
}

func TestNegativeCacheIsBounded(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	for range keys.NegativeCacheSize + 500 {
		// The verify endpoint is not throttled, so every key reaches the cache.
		call(t, f.app, "POST", "/v1/keys/verify", serviceToken, map[string]any{"key": keys.Generate("ks", keys.Secret, keys.Live)})
	}
	if n := f.app.Verifier.UnknownCached(); n != keys.NegativeCacheSize {
		t.Fatalf("negative cache holds %d, want its bound %d", n, keys.NegativeCacheSize)
	}
}

// The change feed survives losing its connection: while it is down the
// cache falls back to the short lifetime, and once it is back a
// revocation on one replica reaches the other again.
func TestChangeFeedReconnects(t *testing.T) {
	dbURL := testutil.DatabaseURL(t, "postgres")
	f := newAPIFixture(t, dbURL)
	other := testutil.StartApp(t, dbURL, testutil.WithClock(f.app.Clock))
	other.Feed.Backoff = 0
	waitFor(t, "the feed", other.Feed.Connected)
	connected := func() float64 {
		return counterValue(t, other, "keysmith_key_change_notifications_total", "connected")
	}
	before := connected()

	// Cut the listening connection from the server's side.
	var killed int64
	err := other.DB.Raw(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE query LIKE 'LISTEN "keysmith_keys_%' AND query LIKE '%' || current_schema() || '%'`).Scan(&killed).Error
	if err != nil || killed == 0 {
		t.Fatalf("terminate the listener: %d %v", killed, err)
	}
	waitFor(t, "the feed reconnecting", func() bool { return connected() > before && other.Feed.Connected() })

	k := f.key(t, nil)
	if r := call(t, other, "GET", "/v1/auth/test", k.Secret, nil); r.Status != 200 {
		t.Fatalf("before revoking: %d", r.Status)
	}
	if _, err := f.app.Keys.Revoke(t.Context(), f.ws, f.actor, k.Key.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the other replica refusing the revoked key", func() bool {
		return call(t, other, "GET", "/v1/auth/test", k.Secret, nil).Status == 401
	})
}

// counterValue reads one series of a counter from the app's registry: the
// one with a label of that value, or the unlabelled one for "".
func counterValue(t *testing.T, app *testutil.App, name, labelValue string) float64 {
	t.Helper()
	families, err := app.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelValue == "" && len(m.GetLabel()) == 0 || len(m.GetLabel()) > 0 && m.GetLabel()[0].GetValue() == labelValue {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// Prometheus scrapes /metrics with the operator's token; without it the
// endpoint refuses, and without KEYSMITH_METRICS_TOKEN there is none.
func TestMetricsEndpoint(t *testing.T) {
	const token = "metrics-token-0123456789abcdef0123456789"
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"), testutil.WithConfig(func(c *config.Config) { c.MetricsToken = token }))
	k := f.key(t, nil)
	call(t, f.app, "GET", "/v1/auth/test", k.Secret, nil)
	call(t, f.app, "GET", "/v1/auth/test", "", nil)
	if err := f.app.Usage.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	get := func(auth string) (int, string) {
		req, _ := http.NewRequest("GET", f.app.URL("/metrics"), nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body)
	}
	if status, _ := get(""); status != 401 {
		t.Fatalf("without the token: %d", status)
	}
	if status, _ := get("Bearer wrong"); status != 401 {
		t.Fatalf("with a wrong token: %d", status)
	}
	status, body := get("Bearer " + token)
	if status != 200 {
		t.Fatalf("with the token: %d", status)
	}
	for _, want := range []string{
		`keysmith_api_requests_total{code="ok"} 1`,
		`keysmith_api_requests_total{code="missing_api_key"} 1`,
		`keysmith_key_verification_seconds_count 1`,
		`keysmith_key_cache_lookups_total{result="miss"} 1`,
		`keysmith_last_used_flushes_total{result="ok"} 1`,
		`keysmith_last_used_flushed_keys_total 1`,
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Off unless configured.
	plain := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	if res, _ := http.Get(plain.URL("/metrics")); res.StatusCode != 404 {
		t.Errorf("/metrics without KEYSMITH_METRICS_TOKEN: %d", res.StatusCode)
	}
}
