package handlers_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"gorm.io/gorm"

	"keysmith/accounts"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
)

// seedKeys gives a fresh user's workspace n keys of every status, straight
// through gorm in batches (the create path is measured elsewhere), and
// returns a logged-in client.
func seedKeys(b *testing.B, app *testutil.App, n int) *testutil.Client {
	b.Helper()
	user, err := app.Accounts.SignUp(b.Context(), accounts.SignUpInput{Email: "bench@example.com", Name: "Bench", Password: "long enough pw"})
	if err != nil {
		b.Fatal(err)
	}
	ms, _ := app.Accounts.Memberships(b.Context(), user.ID)
	now := app.Clock.Now()
	batch := make([]models.APIKey, 0, n)
	for i := range n {
		secret := keys.Generate("ks", keys.Secret, keys.Live)
		created := now.Add(-time.Duration(n-i) * time.Hour)
		k := models.APIKey{
			WorkspaceID: ms[0].WorkspaceID, Name: fmt.Sprintf("service %05d", i), Kind: "sk", Environment: "live",
			Permission: "read", Scopes: "files:read projects:read", SecretHash: keys.Hash(secret), Hint: keys.Hint(secret),
			CreatedAt: created, UpdatedAt: created, CreatedByID: &user.ID,
		}
		switch i % 5 {
		case 1:
			exp := now.Add(time.Duration(i%14+1) * 24 * time.Hour)
			k.ExpiresAt = &exp
		case 2:
			exp := now.Add(-time.Hour)
			k.ExpiresAt = &exp
		case 3:
			k.RevokedAt = &created
		case 4:
			used := now.Add(-time.Duration(i%60) * 24 * time.Hour)
			k.LastUsedAt = &used
		}
		batch = append(batch, k)
	}
	if err := app.DB.CreateInBatches(batch, 500).Error; err != nil {
		b.Fatal(err)
	}
	seedUsage(b, app, batch[max(0, len(batch)-busyKeys):])
	// Written around the service, as a bulk import would be: recount.
	if err := app.Keys.Recount(b.Context(), ms[0].WorkspaceID); err != nil {
		b.Fatal(err)
	}
	if models.IsPostgres(app.DB) {
		// What autovacuum would have done by the time a workspace is this big.
		for _, table := range []string{"api_keys", "key_usage"} {
			if err := app.DB.Exec("VACUUM ANALYZE " + table).Error; err != nil {
				b.Fatal(err)
			}
		}
	}
	c := app.NewClient(b)
	page := c.Submit(c.Get("/login"), "form[action='/login']", map[string]string{"email": "bench@example.com", "password": "long enough pw"})
	if page.URL.Path != "/settings/api-keys" {
		b.Fatalf("login ended at %s", page.URL)
	}
	return c
}

// busyKeys is how many of the newest seeded keys get a busy usage history
// (seedUsage): every key on the tabs' first pages at 5,000 keys.
const busyKeys = 5000

// seedUsage gives each key requests in every hour of the last 14 days, and
// so in each of its days (the buckets a list row's sparkline reads),
// written as the flush writes them, 500 keys a transaction.
func seedUsage(b *testing.B, app *testutil.App, ks []models.APIKey) {
	b.Helper()
	now := keys.HourOf(app.Clock.Now())
	for start := 0; start < len(ks); start += 500 {
		var rows []models.UsageCount
		for _, k := range ks[start:min(start+500, len(ks))] {
			for h := range int64(15 * 24) {
				rows = append(rows, models.UsageCount{KeyID: k.ID, Span: 1, Hour: now - h, Success: 1 + h%7, Forbidden: h % 3})
			}
			for d := range int64(15) {
				rows = append(rows, models.UsageCount{KeyID: k.ID, Span: 24, Hour: now - now%24 - 24*d, Success: 96, Forbidden: 24})
			}
		}
		if err := app.DB.Transaction(func(tx *gorm.DB) error { return models.AddUsageCounts(tx, rows) }); err != nil {
			b.Fatal(err)
		}
	}
	// What a database that grew its history over weeks looks like: the
	// bulk write's WAL checkpointed (SQLite; PostgreSQL's VACUUM ANALYZE
	// follows in seedKeys), and the seeding's garbage collected, so the
	// first tab measured does not pay for them.
	if models.IsPostgres(app.DB) {
		_ = app.DB.Exec("CHECKPOINT").Error // needs a superuser, as the tests' database has; else skipped
	} else {
		var res struct{ Busy, Log, Checkpointed int }
		if err := app.DB.Raw("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&res).Error; err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
}

// BenchmarkKeyList measures Settings → API Keys over HTTP (session,
// queries and templates included) with 5,000 keys and with 50,000, on
// both engines, for every tab and for a deep keyset page (the Older link
// from the middle of the list). The newest 5,000 keys have a request in
// every hour of their sparklines' 14 days. It reports the median as p50-ms.
// KEYSMITH_BENCH_KEYS=small uses 50 and 500 keys (CI runs it once).
//
//	go test -run '^$' -bench BenchmarkKeyList -benchtime 200x ./handlers/
func BenchmarkKeyList(b *testing.B) {
	sizes := []int{5000, 50000}
	if os.Getenv("KEYSMITH_BENCH_KEYS") == "small" {
		sizes = []int{50, 500}
	}
	for _, engine := range []string{"sqlite", "postgres"} {
		b.Run(engine, func(b *testing.B) {
			for _, n := range sizes {
				b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) { benchKeyTabs(b, engine, n) })
			}
		})
	}
}

// benchKeyTabs seeds one workspace of n keys on engine and times each tab.
func benchKeyTabs(b *testing.B, engine string, n int) {
	app := testutil.StartApp(b, testutil.DatabaseURL(b, engine), testutil.WithQuietLogs())
	c := seedKeys(b, app, n)
	var k models.APIKey
	if err := app.DB.Where("revoked_at IS NULL").Order("created_at DESC, id DESC").Offset(n / 3).Limit(1).Take(&k).Error; err != nil {
		b.Fatal(err)
	}
	deep := "/settings/api-keys?page=9&before=" + keys.Cursor{At: k.CreatedAt, ID: k.ID}.String()
	for _, tab := range []string{"all", "active", "expiring", "expired", "revoked", "unused", "deep"} {
		path := "/settings/api-keys?filter=" + tab
		switch tab {
		case "all":
			path = "/settings/api-keys"
		case "deep":
			path = deep
		}
		b.Run(tab, func(b *testing.B) {
			var times []time.Duration
			for b.Loop() {
				t0 := time.Now()
				req, _ := http.NewRequest(http.MethodGet, app.URL(path), nil)
				res, err := c.HTTP.Do(req)
				if err != nil || res.StatusCode != 200 {
					b.Fatalf("%s: %v %v", path, res.StatusCode, err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				times = append(times, time.Since(t0))
			}
			slices.Sort(times)
			b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
		})
	}
}
