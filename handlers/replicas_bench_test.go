package handlers_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
)

// BenchmarkManyKeys serves GET /v1/auth/test through the echo app (no
// network), from parallel clients, rotating through 1, 1,000 or 10,000
// distinct keys, on each engine. With the key cache and a sized connection
// pool, many keys should cost about what one does. Each key is used once
// before timing starts, as a server in rotation among them would have
// done in its first seconds; a miss costs one indexed read (and is what
// BenchmarkRevocationPropagation's eviction leads to). KEYSMITH_BENCH_KEYS=small
// makes that 1, 10 or 100 keys, for CI.
//
//	KEYSMITH_TEST_POSTGRES_URL=… go test -run '^$' -bench ManyKeys -benchtime 200000x ./handlers/
func BenchmarkManyKeys(b *testing.B) {
	sizes := []int{1, 1_000, 10_000}
	if os.Getenv("KEYSMITH_BENCH_KEYS") == "small" {
		sizes = []int{1, 10, 100}
	}
	for _, engine := range testutil.Engines {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/keys=%d", engine, n), func(b *testing.B) {
				app := testutil.StartApp(b, testutil.DatabaseURL(b, engine), testutil.WithQuietLogs())
				secrets := seedManyKeys(b, app, n)
				serve := func(key string) {
					req := httptest.NewRequest(http.MethodGet, "/v1/auth/test", nil)
					req.Header.Set("Authorization", "Bearer "+key)
					rec := httptest.NewRecorder()
					app.Echo.ServeHTTP(rec, req)
					if rec.Code != 200 {
						b.Fatalf("%d %s", rec.Code, rec.Body)
					}
				}
				// Steady state: a server in rotation among n keys has each
				// cached after its first use, for the cache's lifetime.
				for _, key := range secrets {
					serve(key)
				}
				var next atomic.Uint64
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						serve(secrets[next.Add(1)%uint64(len(secrets))])
					}
				})
			})
		}
	}
}

// seedManyKeys inserts n keys with no rate limit to speak of, in batches (the
// keys service would write an audit event for each), and returns their
// secrets.
func seedManyKeys(b *testing.B, app *testutil.App, n int) []string {
	b.Helper()
	u, err := app.Accounts.SignUp(b.Context(), accountsInput("bench@example.com"))
	if err != nil {
		b.Fatal(err)
	}
	ms, _ := app.Accounts.Memberships(b.Context(), u.ID)
	limit := keys.MaxRateLimit
	secrets := make([]string, n)
	rows := make([]models.APIKey, n)
	for i := range rows {
		secrets[i] = keys.Generate(app.Config.KeyPrefix, keys.Secret, keys.Live)
		rows[i] = models.APIKey{
			WorkspaceID: ms[0].WorkspaceID, Name: fmt.Sprintf("key %d", i), Kind: "sk", Environment: "live",
			Permission: "read", Scopes: "files:read", SecretHash: keys.Hash(secrets[i]), Hint: keys.Hint(secrets[i]),
			CreatedByID: &u.ID, RateLimit: &limit,
		}
	}
	if err := app.DB.CreateInBatches(rows, 500).Error; err != nil {
		b.Fatal(err)
	}
	return secrets
}

// BenchmarkRevocationPropagation measures, with three replicas on one
// PostgreSQL, the time from a revocation's commit on one replica until
// both others refuse the key (each polled over HTTP as fast as it
// answers). It reports the median and the 99th percentile.
//
//	KEYSMITH_TEST_POSTGRES_URL=… go test -run '^$' -bench RevocationPropagation -benchtime 300x ./handlers/
func BenchmarkRevocationPropagation(b *testing.B) {
	dbURL := testutil.DatabaseURL(b, "postgres")
	first := testutil.StartApp(b, dbURL, testutil.WithQuietLogs())
	replicas := []*testutil.App{first,
		testutil.StartApp(b, dbURL, testutil.WithQuietLogs(), testutil.WithClock(first.Clock)),
		testutil.StartApp(b, dbURL, testutil.WithQuietLogs(), testutil.WithClock(first.Clock))}
	for _, r := range replicas {
		for deadline := time.Now().Add(10 * time.Second); !r.Feed.Connected(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatal("change feed not connected")
			}
		}
	}
	u, err := first.Accounts.SignUp(b.Context(), accountsInput("bench@example.com"))
	if err != nil {
		b.Fatal(err)
	}
	ms, _ := first.Accounts.Memberships(b.Context(), u.ID)
	actor := first.Keys.UserActor(u, ms[0].Role, "", "")
	status := func(app *testutil.App, key string) int {
		req := httptest.NewRequest(http.MethodGet, "/v1/auth/test", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		rec := httptest.NewRecorder()
		app.Echo.ServeHTTP(rec, req)
		return rec.Code
	}
	var took []time.Duration
	for b.Loop() {
		c, err := first.Keys.Create(b.Context(), ms[0].WorkspaceID, actor, keys.CreateInput{Name: "r", Kind: keys.Secret, Env: keys.Live, Permission: keys.PermRead})
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range replicas {
			if s := status(r, c.Secret); s != 200 {
				b.Fatalf("before revoking: %d", s)
			}
		}
		if _, err := first.Keys.Revoke(b.Context(), ms[0].WorkspaceID, actor, c.Key.ID); err != nil {
			b.Fatal(err)
		}
		revoked := time.Now()
		for _, r := range replicas[1:] {
			for status(r, c.Secret) != 401 {
				if time.Since(revoked) > 10*time.Second {
					b.Fatal("a replica still accepts the key after 10 s")
				}
			}
		}
		took = append(took, time.Since(revoked))
	}
	slices.Sort(took)
	pct := func(p float64) float64 { return float64(took[int(p*float64(len(took)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(pct(1), "max-ms")
}
