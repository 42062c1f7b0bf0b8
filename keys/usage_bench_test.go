package keys_test

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

	"keysmith/clock"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
)

// BenchmarkLastUsedFlush flushes the last uses of 1,000 and 10,000 buffered
// keys (50 and 500 with KEYSMITH_BENCH_KEYS=small) on each engine, and
// reports the statements each flush sent to the database (statements/flush,
// counted by gorm callbacks on every kind of statement): one per thousand
// keys, never one per key.
//
//	go test -run '^$' -bench LastUsedFlush -benchtime 20x ./keys/
func BenchmarkLastUsedFlush(b *testing.B) {
	sizes := []int{1_000, 10_000}
	if os.Getenv("KEYSMITH_BENCH_KEYS") == "small" {
		sizes = []int{50, 500}
	}
	for _, engine := range testutil.Engines {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/keys=%d", engine, n), func(b *testing.B) {
				clk := clock.NewFake(testutil.Epoch)
				db, err := models.Open(testutil.DatabaseURL(b, engine), clk)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { models.Close(db) })
				if _, err := models.Migrate(db); err != nil {
					b.Fatal(err)
				}
				f := &fixture{db: db, clk: clk}
				_, m := f.member(b, "bench@example.com", 0, models.RoleOwner)
				rows := make([]models.APIKey, n)
				for i := range rows {
					s := keys.Generate("ks", keys.Secret, keys.Live)
					rows[i] = models.APIKey{WorkspaceID: m.WorkspaceID, Name: fmt.Sprint(i), Kind: "sk", Environment: "live",
						Permission: "read", Scopes: "files:read", SecretHash: keys.Hash(s), Hint: keys.Hint(s)}
				}
				if err := db.CreateInBatches(rows, 500).Error; err != nil {
					b.Fatal(err)
				}
				statements := countStatements(b, db)
				usage := keys.NewUsage(db, nil)
				at := clk.Now()
				var flushes int64
				for b.Loop() {
					b.StopTimer()
					at = at.Add(time.Second) // a later use, so every row is written
					for i, r := range rows {
						usage.Record(r.ID, at, "192.0.2.1", fmt.Sprint("agent/", i%10))
					}
					b.StartTimer()
					if err := usage.Flush(b.Context()); err != nil {
						b.Fatal(err)
					}
					flushes++
				}
				sent := statements.Load()
				var written int64
				db.Model(&models.APIKey{}).Where("last_used_at = ?", at).Count(&written)
				if written != int64(n) {
					b.Fatalf("%d keys written by the last flush, want %d", written, n)
				}
				b.ReportMetric(float64(sent)/float64(flushes), "statements/flush")
			})
		}
	}
}

// countStatements counts every statement gorm sends through db from now
// on: queries, rows, raw statements, creates, updates and deletes.
func countStatements(b *testing.B, db *gorm.DB) *atomic.Int64 {
	b.Helper()
	var n atomic.Int64
	count := func(*gorm.DB) { n.Add(1) }
	cb := db.Callback()
	for name, err := range map[string]error{
		"create": cb.Create().After("gorm:create").Register("bench:count_create", count),
		"query":  cb.Query().After("gorm:query").Register("bench:count_query", count),
		"update": cb.Update().After("gorm:update").Register("bench:count_update", count),
		"delete": cb.Delete().After("gorm:delete").Register("bench:count_delete", count),
		"row":    cb.Row().After("gorm:row").Register("bench:count_row", count),
		"raw":    cb.Raw().After("gorm:raw").Register("bench:count_raw", count),
	} {
		if err != nil {
			b.Fatalf("count %s statements: %v", name, err)
		}
	}
	return &n
}

// BenchmarkHotPathAdditions measures what issue 12 added to every API
// request: counting its outcome in the buffer, and checking the client's
// address against an allowlist parsed when the key was cached (none, and
// four entries with the address matching the last).
func BenchmarkHotPathAdditions(b *testing.B) {
	b.Run("count", func(b *testing.B) {
		usage := keys.NewUsage(nil, nil)
		at := testutil.Epoch
		for b.Loop() {
			usage.Count(42, at, keys.OutcomeSuccess)
		}
	})
	b.Run("allowlist-empty", func(b *testing.B) {
		list := keys.ParseAllowlist("")
		for b.Loop() {
			if !list.Allows("203.0.113.7") {
				b.Fatal("refused")
			}
		}
	})
	b.Run("allowlist-4", func(b *testing.B) {
		list := keys.ParseAllowlist("10.0.0.0/8 192.168.0.0/16 2001:db8::/32 203.0.113.0/24")
		for b.Loop() {
			if !list.Allows("203.0.113.7") {
				b.Fatal("refused")
			}
		}
	})
}
