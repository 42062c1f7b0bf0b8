package keys_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
)

// A flush writes every buffered key with one statement per 8,000 keys,
// on both engines: never backwards, never touching updated_at, and nothing
// lost when the database refuses (the uses wait for the next flush).
func TestFlushWritesEveryKeyInFewStatements(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := setup(t, dbURL, 0)
		const n = 8001 // one more than a statement holds
		rows := make([]models.APIKey, n)
		for i := range rows {
			s := keys.Generate("ks", keys.Secret, keys.Live)
			rows[i] = models.APIKey{WorkspaceID: f.ws, Name: fmt.Sprint(i), Kind: "sk", Environment: "live", Permission: "read",
				Scopes: "files:read", SecretHash: keys.Hash(s), Hint: keys.Hint(s)}
		}
		if err := f.db.CreateInBatches(rows, 500).Error; err != nil {
			t.Fatal(err)
		}
		var statements atomic.Int64
		if err := f.db.Callback().Raw().After("gorm:raw").Register("count_statements", func(*gorm.DB) { statements.Add(1) }); err != nil {
			t.Fatal(err)
		}
		usage := keys.NewUsage(f.db, nil)
		now := f.clk.Now()
		// The first key already has a later use, written by another replica.
		later := now.Add(time.Minute)
		f.db.Model(&models.APIKey{}).Where("id = ?", rows[0].ID).UpdateColumn("last_used_at", later)
		for i, r := range rows {
			usage.Record(r.ID, now, fmt.Sprintf("192.0.2.%d", i%250), "agent/"+fmt.Sprint(i))
		}
		if err := usage.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := statements.Load(); got != 2 {
			t.Errorf("%d statements for %d keys, want 2", got, n)
		}
		var written int64
		f.db.Model(&models.APIKey{}).Where("last_used_at = ? AND last_used_user_agent LIKE 'agent/%'", now).Count(&written)
		if written != n-1 {
			t.Errorf("%d keys written, want %d", written, n-1)
		}
		var first models.APIKey
		f.db.Take(&first, rows[0].ID)
		if first.LastUsedAt == nil || !first.LastUsedAt.Equal(later) || first.LastUsedUserAgent != "" {
			t.Errorf("a later use was overwritten: %v %q", first.LastUsedAt, first.LastUsedUserAgent)
		}
		var k models.APIKey
		f.db.Take(&k, rows[7].ID)
		if k.LastUsedIP != "192.0.2.7" || k.LastUsedUserAgent != "agent/7" || !k.UpdatedAt.Equal(rows[7].UpdatedAt) {
			t.Errorf("key 7: %q %q, updated_at %v → %v", k.LastUsedIP, k.LastUsedUserAgent, rows[7].UpdatedAt, k.UpdatedAt)
		}

		// A refused flush keeps its uses for the next one.
		usage.Record(rows[1].ID, now.Add(time.Hour), "198.51.100.1", "retry/1")
		cancelled, cancel := context.WithCancel(t.Context())
		cancel()
		if err := usage.Flush(cancelled); err == nil {
			t.Fatal("a flush with a cancelled context succeeded")
		}
		if err := usage.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		var retried models.APIKey
		f.db.Take(&retried, rows[1].ID)
		if retried.LastUsedUserAgent != "retry/1" {
			t.Errorf("the use kept after a failed flush was not written: %q", retried.LastUsedUserAgent)
		}
	})
}
