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

// Counts per key per hour by outcome go out with the last uses: per flush,
// one upsert per 4,000 buckets (each hour and its day) however many
// requests they hold, added to what is stored; a refused flush keeps them
// for the next, without counting any twice.
func TestUsageCountsAreWrittenInBatches(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := setup(t, dbURL, 0)
		const n = 2000 // an hour and a day each, and the busy key's second hour: 4,001 buckets, one more than an upsert holds
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
		sent := map[keys.Outcome]int64{}
		for i, r := range rows {
			usage.Count(r.ID, now, keys.OutcomeSuccess)
			sent[keys.OutcomeSuccess]++
			if i%10 == 0 {
				usage.Count(r.ID, now, keys.OutcomeForbidden)
				usage.Count(r.ID, now, keys.OutcomeRateLimited)
				usage.Count(r.ID, now, keys.OutcomeOther)
				sent[keys.OutcomeForbidden]++
				sent[keys.OutcomeRateLimited]++
				sent[keys.OutcomeOther]++
			}
		}
		// The busiest key: 1,000 requests over two hours are two buckets.
		for i := range 1000 {
			usage.Count(rows[0].ID, now.Add(time.Duration(i)*4*time.Second), keys.OutcomeSuccess)
			sent[keys.OutcomeSuccess]++
		}
		if err := usage.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := statements.Load(); got != 2 {
			t.Errorf("%d statements for %d keys' counts, want 2", got, n)
		}
		stored := func(span int) map[keys.Outcome]int64 {
			var sum struct{ Success, RateLimited, Forbidden, Other int64 }
			f.db.Model(&models.UsageCount{}).Where("span = ?", span).
				Select("SUM(success) AS success, SUM(rate_limited) AS rate_limited, SUM(forbidden) AS forbidden, SUM(other) AS other").Scan(&sum)
			return map[keys.Outcome]int64{keys.OutcomeSuccess: sum.Success, keys.OutcomeRateLimited: sum.RateLimited, keys.OutcomeForbidden: sum.Forbidden, keys.OutcomeOther: sum.Other}
		}
		for _, span := range []int{1, 24} {
			if got := stored(span); fmt.Sprint(got) != fmt.Sprint(sent) {
				t.Fatalf("stored by %d hours %v, sent %v", span, got, sent)
			}
		}
		var hours, days int64
		f.db.Model(&models.UsageCount{}).Where("key_id = ? AND span = 1", rows[0].ID).Count(&hours)
		f.db.Model(&models.UsageCount{}).Where("key_id = ? AND span = 24", rows[0].ID).Count(&days)
		if hours != 2 || days != 1 {
			t.Errorf("the busy key has %d hourly and %d daily buckets, want 2 and 1", hours, days)
		}

		// A second flush adds to the stored buckets; a refused one keeps
		// its counts for the next, once.
		statements.Store(0)
		usage.Count(rows[1].ID, now, keys.OutcomeSuccess)
		usage.Count(rows[1].ID, now, keys.OutcomeSuccess)
		cancelled, cancel := context.WithCancel(t.Context())
		cancel()
		if err := usage.Flush(cancelled); err == nil {
			t.Fatal("a flush with a cancelled context succeeded")
		}
		usage.Count(rows[1].ID, now, keys.OutcomeSuccess)
		if err := usage.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		sent[keys.OutcomeSuccess] += 3
		for _, span := range []int{1, 24} {
			if got := stored(span); fmt.Sprint(got) != fmt.Sprint(sent) {
				t.Fatalf("after a refused flush, by %d hours: stored %v, sent %v", span, got, sent)
			}
		}
		var one models.UsageCount
		f.db.Where("key_id = ? AND span = 1 AND hour = ?", rows[1].ID, keys.HourOf(now)).Take(&one)
		if one.Success != 4 || one.Forbidden != 0 {
			t.Errorf("key 1's hour: %+v", one)
		}
		if got := statements.Load(); got != 1 {
			t.Errorf("%d statements for one key's counts, want 1", got)
		}
	})
}

// Usage reads buckets densely, by hour or by day, for several keys in one
// query; PruneUsage drops the hours past 90 days and keeps the rest.
func TestUsageReportAndPruning(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := setup(t, dbURL, 0)
		a, _ := f.svc.Create(ctx, f.ws, f.owner, valid())
		b, _ := f.svc.Create(ctx, f.ws, f.owner, valid())
		usage := keys.NewUsage(f.db, nil)
		now := f.clk.Now() // 09:00 UTC
		usage.Count(a.Key.ID, now, keys.OutcomeSuccess)
		usage.Count(a.Key.ID, now.Add(-time.Hour), keys.OutcomeRateLimited)
		usage.Count(a.Key.ID, now.Add(-24*time.Hour), keys.OutcomeForbidden)
		usage.Count(b.Key.ID, now.Add(-2*time.Hour), keys.OutcomeOther)
		usage.Count(a.Key.ID, now.Add(-91*24*time.Hour), keys.OutcomeSuccess)
		if err := usage.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		hours, err := f.svc.Usage(ctx, keys.LastUsage(keys.ByHour, 48, now), a.Key.ID, b.Key.ID)
		if err != nil {
			t.Fatal(err)
		}
		ha, hb := hours[a.Key.ID], hours[b.Key.ID]
		if len(ha) != 48 || len(hb) != 48 || !ha[47].Start.Equal(now) {
			t.Fatalf("%d and %d points, last at %v", len(ha), len(hb), ha[len(ha)-1].Start)
		}
		if ha[47].Success != 1 || ha[46].RateLimited != 1 || ha[23].Forbidden != 1 || hb[45].Other != 1 || ha[47].Requests != 1 {
			t.Fatalf("hourly points: %+v %+v %+v %+v", ha[47], ha[46], ha[23], hb[45])
		}
		days, err := f.svc.Usage(ctx, keys.LastUsage(keys.ByDay, 100, now), a.Key.ID)
		if err != nil {
			t.Fatal(err)
		}
		da := days[a.Key.ID]
		today := da[99]
		if len(da) != 100 || today.Requests != 2 || today.Success != 1 || today.RateLimited != 1 || da[98].Forbidden != 1 || da[8].Success != 1 {
			t.Fatalf("daily points: today %+v, yesterday %+v, 91 days ago %+v", today, da[98], da[8])
		}
		if err := f.svc.PruneUsage(ctx); err != nil {
			t.Fatal(err)
		}
		var left int64
		f.db.Model(&models.UsageCount{}).Where("span = 1").Count(&left)
		if left != 4 {
			t.Fatalf("%d hourly buckets after pruning, want 4", left)
		}
		days, _ = f.svc.Usage(ctx, keys.LastUsage(keys.ByDay, 100, now), a.Key.ID)
		if days[a.Key.ID][8].Success != 0 || days[a.Key.ID][99].Requests != 2 {
			t.Fatal("pruning dropped the wrong buckets")
		}
	})
}
