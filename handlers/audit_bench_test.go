package handlers_test

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
)

// auditBenchEvents is how many events BenchmarkAuditLog seeds: a busy
// workspace's year, or KEYSMITH_BENCH_AUDIT_EVENTS (CI runs a small one).
func auditBenchEvents(b *testing.B) int {
	n := 1_000_000
	if s := os.Getenv("KEYSMITH_BENCH_AUDIT_EVENTS"); s != "" {
		v, err := strconv.Atoi(s)
		// The filtered deep page starts after 90 % of one action's fifth
		// and must still hold a full page of 50.
		if err != nil || v < 2500 {
			b.Fatalf("KEYSMITH_BENCH_AUDIT_EVENTS=%q: want a number of at least 2500", s)
		}
		n = v
	}
	return n
}

// seedAuditLog writes n events into ws with multi-row INSERTs in one
// transaction: one every 30 seconds back from now, pairs sharing an
// instant, the actions and actors of the filter form taking turns.
func seedAuditLog(b *testing.B, app *testutil.App, ws int64, n int) {
	b.Helper()
	const rows = 1000
	actions := []string{keys.ActionCreated, keys.ActionRenamed, keys.ActionRotated, keys.ActionRevoked, keys.ActionLimited}
	actors := []string{"bench@example.com", "grace@example.com", "ada@example.com", "sk_live_…a1b2"}
	now := app.Clock.Now()
	tx := app.DB.Begin()
	args := make([]any, 0, rows*7)
	for start := 0; start < n; start += rows {
		args = args[:0]
		count := min(rows, n-start)
		for i := start; i < start+count; i++ {
			at := now.Add(-time.Duration((n-i)/2) * 30 * time.Second)
			args = append(args, ws, actors[i%len(actors)], actions[i%len(actions)], fmt.Sprintf("service %07d (sk_live_…%04d)", i, i%10000), "", "192.0.2.1", at)
		}
		sql := "INSERT INTO audit_events (workspace_id, actor_label, action, key_label, detail, ip, created_at) VALUES " +
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?, ?),", count), ",")
		if err := tx.Exec(sql, args...).Error; err != nil {
			tx.Rollback()
			b.Fatal(err)
		}
	}
	if err := tx.Commit().Error; err != nil {
		b.Fatal(err)
	}
	if models.IsPostgres(app.DB) {
		// What autovacuum would have done by the time a log is this long.
		if err := app.DB.Exec("ANALYZE audit_events").Error; err != nil {
			b.Fatal(err)
		}
	}
}

// cursorAt is the Older-link cursor that leads to the page after offset
// events of the filtered log (read once, by offset, outside the timing).
func cursorAt(b *testing.B, app *testutil.App, ws int64, action string, offset int) string {
	b.Helper()
	q := app.DB.Model(&models.AuditEvent{}).Where("workspace_id = ?", ws)
	if action != "" {
		q = q.Where("action = ?", action)
	}
	var e models.AuditEvent
	if err := q.Order("created_at DESC, id DESC").Offset(offset - 1).Limit(1).Take(&e).Error; err != nil {
		b.Fatal(err)
	}
	return keys.Cursor{At: e.CreatedAt, ID: e.ID}.String()
}

// auditBench starts the app on engine with n events in the workspace of an
// admin, and returns it with that admin logged in.
func auditBench(b *testing.B, engine string, n int) (*testutil.App, *testutil.Client, int64) {
	b.Helper()
	app := testutil.StartApp(b, testutil.DatabaseURL(b, engine), testutil.WithQuietLogs())
	u, err := app.Accounts.SignUp(b.Context(), accountsInput("bench@example.com"))
	if err != nil {
		b.Fatal(err)
	}
	ms, _ := app.Accounts.Memberships(b.Context(), u.ID)
	began := time.Now()
	seedAuditLog(b, app, ms[0].WorkspaceID, n)
	b.Logf("%s: seeded %d events in %s", engine, n, time.Since(began).Round(time.Millisecond))
	c := app.NewClient(b)
	if p := c.Submit(c.Get("/login"), "form[action='/login']", map[string]string{"email": "bench@example.com", "password": "long enough pw"}); p.Status != http.StatusOK {
		b.Fatalf("login: %d", p.Status)
	}
	return app, c, ms[0].WorkspaceID
}

// BenchmarkAuditLog measures Settings → Audit log over HTTP (session,
// queries and templates included) at 1,000,000 events in one workspace: the
// first page and the page after 900,000 events (reached by its cursor),
// unfiltered and filtered by action, and the first page filtered by a
// common actor. It reports the median time of a page. PostgreSQL runs when
// KEYSMITH_TEST_POSTGRES_URL is set.
//
//	go test -run '^$' -bench 'AuditLog$' -benchtime 200x ./handlers/
//	KEYSMITH_BENCH_AUDIT_EVENTS=5000 go test -run '^$' -bench 'Audit(Log|Export)$' -benchtime 1x ./handlers/
func BenchmarkAuditLog(b *testing.B) {
	n := auditBenchEvents(b)
	for _, engine := range testutil.Engines {
		b.Run(engine, func(b *testing.B) {
			app, c, ws := auditBench(b, engine, n)
			deep := n * 9 / 10
			byAction := n / 5 * 9 / 10 // the same depth within one action's fifth
			for _, tc := range []struct{ name, path string }{
				{"first", "/settings/audit-log"},
				{fmt.Sprintf("after-%d", deep), "/settings/audit-log?before=" + cursorAt(b, app, ws, "", deep)},
				{"action/first", "/settings/audit-log?action=key.revoked"},
				{fmt.Sprintf("action/after-%d", byAction), "/settings/audit-log?action=key.revoked&before=" + cursorAt(b, app, ws, keys.ActionRevoked, byAction)},
				{"actor/first", "/settings/audit-log?actor=grace"},
			} {
				b.Run(tc.name, func(b *testing.B) {
					var took []time.Duration
					for b.Loop() {
						start := time.Now()
						res, err := c.HTTP.Get(app.URL(tc.path))
						if err != nil || res.StatusCode != http.StatusOK {
							b.Fatalf("%s: %v %v", tc.path, res, err)
						}
						rows := 0
						sc := bufio.NewScanner(res.Body)
						for sc.Scan() {
							rows += strings.Count(sc.Text(), "<tr>")
						}
						res.Body.Close()
						took = append(took, time.Since(start))
						if rows != 51 { // the header row and 50 events
							b.Fatalf("%s: %d rows", tc.path, rows)
						}
					}
					slices.Sort(took)
					b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
				})
			}
		})
	}
}

// BenchmarkAuditExport downloads all 1,000,000 events as CSV and as JSON
// and reports how far the heap grew above where it stood (peak-heap-MB):
// the export streams batches of keys.AuditExportBatch, so that figure must
// not follow the number of events (compare KEYSMITH_BENCH_AUDIT_EVENTS=100000).
//
//	go test -run '^$' -bench 'AuditExport$' -benchtime 1x ./handlers/
func BenchmarkAuditExport(b *testing.B) {
	n := auditBenchEvents(b)
	for _, engine := range testutil.Engines {
		b.Run(engine, func(b *testing.B) {
			app, c, _ := auditBench(b, engine, n)
			for _, format := range []string{"csv", "json"} {
				b.Run(format, func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						peak, stop := watchHeap()
						res, err := c.HTTP.Get(app.URL("/settings/audit-log/export." + format))
						if err != nil || res.StatusCode != http.StatusOK {
							b.Fatalf("export: %v %v", res, err)
						}
						lines := 0
						sc := bufio.NewScanner(res.Body)
						for sc.Scan() {
							lines++
						}
						res.Body.Close()
						stop()
						want := n + 1 // and a header line
						if format == "json" {
							want = n + 2 // and "[" and "]"
						}
						if lines != want {
							b.Fatalf("export.%s: %d lines, want %d", format, lines, want)
						}
						b.ReportMetric(float64(*peak)/(1<<20), "peak-heap-MB")
					}
				})
			}
		})
	}
}

// watchHeap samples the heap in use until stop is called and reports the
// most it grew above where it stood at the start.
func watchHeap() (peak *uint64, stop func()) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	peak = new(uint64)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > base && ms.HeapInuse-base > *peak {
				*peak = ms.HeapInuse - base
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	return peak, func() { close(done); wg.Wait() }
}
