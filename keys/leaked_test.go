package keys_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"gorm.io/gorm"

	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
)

// statementsSent counts every statement the database is sent from now on,
// through gorm's callbacks (queries, rows, raw statements and writes): what
// usage_bench_test.go's countStatements does for a *testing.B.
func statementsSent(t *testing.T, db *gorm.DB) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	count := func(*gorm.DB) { n.Add(1) }
	cb := db.Callback()
	for _, err := range []error{
		cb.Query().Before("gorm:query").Register("test:count_query", count),
		cb.Row().Before("gorm:row").Register("test:count_row", count),
		cb.Raw().Before("gorm:raw").Register("test:count_raw", count),
		cb.Create().Before("gorm:create").Register("test:count_create", count),
		cb.Update().Before("gorm:update").Register("test:count_update", count),
		cb.Delete().Before("gorm:delete").Register("test:count_delete", count),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return &n
}

type leak struct {
	key    models.APIKey
	report keys.LeakReport
}

func TestRevokeLeaked(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := setup(t, dbURL, 0)
		var leaks []leak
		f.svc.OnLeak(func(ctx context.Context, k models.APIKey, r keys.LeakReport) {
			if ctx.Err() != nil {
				t.Error("OnLeak got a cancelled context")
			}
			leaks = append(leaks, leak{k, r})
		})
		var evicted []int64
		f.svc.OnChange(func(ids ...int64) { evicted = append(evicted, ids...) })

		active, err := f.svc.Create(ctx, f.ws, f.owner, valid())
		if err != nil {
			t.Fatal(err)
		}
		in := valid()
		in.Kind, in.Env, in.Permission = keys.Publishable, keys.Test, keys.PermRead
		disabled, err := f.svc.Create(ctx, f.ws, f.owner, in)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.SetDisabled(ctx, f.ws, f.owner, disabled.Key.ID, true); err != nil {
			t.Fatal(err)
		}
		revoked, err := f.svc.Create(ctx, f.ws, f.owner, valid())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Revoke(ctx, f.ws, f.owner, revoked.Key.ID); err != nil {
			t.Fatal(err)
		}
		evicted = nil
		unknown := keys.Generate("ks", keys.Secret, keys.Live)
		longURL := "https://github.com/octocat/Hello-World/blob/main/" + strings.Repeat("a", 600) + "\x00"

		reports := []keys.LeakReport{
			{Token: active.Secret, Type: "keysmith_api_key", URL: "https://github.com/octocat/Hello-World/blob/12345600b9cbe38a219f39a9941c9319b600c002/foo/bar.txt", Source: "content"},
			{Token: unknown, Type: "keysmith_api_key", URL: "https://example.com/a", Source: "commit"},
			{Token: badChecksum(active.Secret), Type: "keysmith_api_key", URL: "https://example.com/b", Source: "content"},
			{Token: revoked.Secret, Type: "keysmith_api_key", URL: "https://example.com/c", Source: "content"},
			{Token: active.Secret, Type: "keysmith_api_key", URL: "https://example.com/again", Source: "content"},
			{Token: disabled.Secret, Type: "keysmith_publishable_key", URL: longURL, Source: ""},
			{Token: "acme" + active.Secret[2:], Type: "other", URL: "https://example.com/d", Source: "content"},
			{Token: "", Type: "keysmith_api_key"},
		}
		got, err := f.svc.RevokeLeaked(ctx, reports)
		if err != nil {
			t.Fatal(err)
		}
		want := []struct {
			label   string
			key     int64
			revoked bool
		}{
			{keys.TruePositive, active.Key.ID, true},
			{keys.FalsePositive, 0, false},
			{keys.FalsePositive, 0, false}, // bad checksum
			{keys.TruePositive, revoked.Key.ID, false},
			{keys.TruePositive, active.Key.ID, false}, // revoked by the first report
			{keys.TruePositive, disabled.Key.ID, true},
			{keys.FalsePositive, 0, false}, // another prefix
			{keys.FalsePositive, 0, false},
		}
		if len(got) != len(want) {
			t.Fatalf("%d results for %d reports", len(got), len(reports))
		}
		for i, w := range want {
			r := got[i]
			if r.TokenRaw != reports[i].Token || r.TokenType != reports[i].Type || r.Label != w.label || r.Revoked != w.revoked {
				t.Errorf("report %d: %+v, want %+v", i, r, w)
			}
			if w.key == 0 {
				if r.Key != nil || r.WorkspaceID != 0 || r.CreatedByID != nil {
					t.Errorf("report %d: a false positive names a key: %+v", i, r)
				}
				continue
			}
			if r.Key == nil || r.Key.ID != w.key || r.Key.RevokedAt == nil || r.WorkspaceID != f.ws ||
				r.CreatedByID == nil || *r.CreatedByID != f.owner.UserID || r.Key.CreatedBy == nil || r.Key.CreatedBy.Email != "owner@example.com" {
				t.Errorf("report %d: key %+v, workspace %d, creator %v", i, r.Key, r.WorkspaceID, r.CreatedByID)
			}
		}

		// Each revocation: evicted, announced to the hook once, audited
		// with where the key leaked.
		if fmt.Sprint(evicted) != fmt.Sprint([]int64{active.Key.ID, disabled.Key.ID}) {
			t.Errorf("evicted %v", evicted)
		}
		if len(leaks) != 2 || leaks[0].key.ID != active.Key.ID || leaks[0].report != reports[0] || leaks[0].key.RevokedAt == nil ||
			leaks[1].key.ID != disabled.Key.ID {
			t.Errorf("OnLeak saw %+v", leaks)
		}
		var events []models.AuditEvent
		if err := f.db.Where("action = ?", keys.ActionLeaked).Order("id").Find(&events).Error; err != nil {
			t.Fatal(err)
		}
		if len(events) != 2 {
			t.Fatalf("%d key.leaked events, want 2: %+v", len(events), events)
		}
		first, second := events[0], events[1]
		if *first.KeyID != active.Key.ID || first.WorkspaceID != f.ws || first.ActorLabel != "secret scanning (content)" ||
			first.ActorUserID != nil || first.ActorKeyID != nil ||
			!strings.Contains(first.Detail, reports[0].URL) || !strings.Contains(first.Detail, "source: content") ||
			!strings.Contains(first.KeyLabel, active.Key.Hint) {
			t.Errorf("first event %+v", first)
		}
		if *second.KeyID != disabled.Key.ID || second.ActorLabel != "secret scanning" || strings.ContainsRune(second.Detail, 0) ||
			strings.Contains(second.Detail, strings.Repeat("a", 500)) || !strings.Contains(second.Detail, strings.Repeat("a", 400)) {
			t.Errorf("second event: actor %q, detail %d bytes: %q", second.ActorLabel, len(second.Detail), second.Detail)
		}
		for _, id := range []int64{active.Key.ID, disabled.Key.ID} {
			k, err := f.svc.Get(ctx, f.ws, id)
			if err != nil {
				t.Fatal(err)
			}
			if keys.StatusOf(k, f.clk.Now()) != keys.StatusRevoked || k.RevokedByID != nil || k.ReminderDueAt != nil {
				t.Errorf("key %d after the report: %+v", id, k)
			}
		}

		// The kept counts moved as a revocation moves them.
		before, _ := f.svc.Count(ctx, f.ws)
		if err := f.svc.Recount(ctx, f.ws); err != nil {
			t.Fatal(err)
		}
		if after, _ := f.svc.Count(ctx, f.ws); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("kept counts %v, recounted %v", before, after)
		}

		// Reported again: ours still, revoked already, nothing new.
		again, err := f.svc.RevokeLeaked(ctx, reports[:1])
		if err != nil {
			t.Fatal(err)
		}
		if again[0].Label != keys.TruePositive || again[0].Revoked || len(leaks) != 2 {
			t.Errorf("reported again: %+v, hook calls %d", again[0], len(leaks))
		}
	})
}

// Tokens that fail the format or its checksum cost no database lookup;
// well-formed ones are looked up together, whatever their number.
func TestRevokeLeakedChecksBeforeLookingUp(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := setup(t, dbURL, 0)
		real := keys.Generate("ks", keys.Secret, keys.Live)
		var garbage []keys.LeakReport
		for i := range keys.MaxLeakReports {
			tok := badChecksum(keys.Generate("ks", keys.Secret, keys.Live))
			switch i % 4 {
			case 1:
				tok = real[:len(real)-1] // too short
			case 2:
				tok = strings.Replace(real, "_live_", "_prod_", 1)
			case 3:
				tok = "ghp_" + strings.Repeat("x", 36)
			}
			garbage = append(garbage, keys.LeakReport{Token: tok, Type: "keysmith_api_key", URL: "https://example.com", Source: "content"})
		}
		n := statementsSent(t, f.db)
		got, err := f.svc.RevokeLeaked(ctx, garbage)
		if err != nil {
			t.Fatal(err)
		}
		if n.Load() != 0 {
			t.Errorf("%d statements for %d malformed tokens, want none", n.Load(), len(garbage))
		}
		for i, r := range got {
			if r.Label != keys.FalsePositive {
				t.Fatalf("malformed token %d: %+v", i, r)
			}
		}

		var wellFormed []keys.LeakReport
		for range keys.MaxLeakReports {
			wellFormed = append(wellFormed, keys.LeakReport{Token: keys.Generate("ks", keys.Publishable, keys.Test)})
		}
		n.Store(0)
		if _, err := f.svc.RevokeLeaked(ctx, wellFormed); err != nil {
			t.Fatal(err)
		}
		if n.Load() != 2 { // two chunks of 500 hashes
			t.Errorf("%d statements for %d unknown well-formed tokens, want 2", n.Load(), len(wellFormed))
		}
	})
}

// docs/gitleaks.toml catches every key Keysmith makes (both kinds, both
// environments), with entropy to spare, and none of the near misses.
func TestGitleaksRuleCatchesEveryKey(t *testing.T) {
	raw, err := os.ReadFile("../docs/gitleaks.toml")
	if err != nil {
		t.Fatal(err)
	}
	field := func(name, pattern string) string {
		m := regexp.MustCompile(`(?m)^` + name + ` = ` + pattern + `$`).FindStringSubmatch(string(raw))
		if m == nil {
			t.Fatalf("docs/gitleaks.toml has no %s", name)
		}
		return m[1]
	}
	rule := regexp.MustCompile(field("regex", `'''(.+)'''`))
	floor, err := strconv.ParseFloat(field("entropy", `([0-9.]+)`), 64)
	if err != nil {
		t.Fatal(err)
	}
	keywords := field("keywords", `\[(.+)\]`)
	secret := func(text string) (string, bool) {
		m := rule.FindStringSubmatch(text)
		if m == nil || entropy(m[1]) <= floor {
			return "", false
		}
		return m[1], true
	}
	lowest := 8.0
	for i := range 20000 {
		kind, env := []keys.Kind{keys.Secret, keys.Publishable}[i%2], []keys.Env{keys.Live, keys.Test}[i/2%2]
		k := keys.Generate("ks", kind, env)
		lowest = min(lowest, entropy(k))
		for _, text := range []string{k, `KEY="` + k + `"`, "Bearer " + k + "\n", `{"log":"\n` + k + `\n"}`, "k=%22" + k + "%22"} {
			if got, ok := secret(text); !ok || got != k {
				t.Fatalf("the rule misses %s in %q (entropy %.2f)", k, text, entropy(k))
			}
		}
		if !strings.Contains(keywords, `"ks_`+string(kind)+"_"+string(env)+`_"`) {
			t.Fatalf("no keyword for %s %s keys: %s", kind, env, keywords)
		}
	}
	if lowest-floor < 0.5 {
		t.Errorf("a key's entropy came within %.2f of the floor %.1f", lowest-floor, floor)
	}
	k := keys.Generate("ks", keys.Secret, keys.Live)
	for _, miss := range []string{
		"ks_sk_live_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
		"ks_sk_test_EXAMPLEEXAMPLEEXAMPLEEXAMPLEEXAMPLE000",
		k[:len(k)-1],
		k + "Z",
		strings.Replace(k, "_sk_", "_rk_", 1),
		strings.Replace(k, "_live_", "_prod_", 1),
		strings.ReplaceAll(k, "_", "-"),
	} {
		if got, ok := secret(miss); ok {
			t.Errorf("the rule matches the near miss %q as %q", miss, got)
		}
	}
}

// entropy is the Shannon entropy gitleaks computes, in bits per character.
func entropy(s string) float64 {
	counts := map[rune]float64{}
	for _, c := range s {
		counts[c]++
	}
	var e float64
	for _, n := range counts {
		p := n / float64(len(s))
		e -= p * math.Log2(p)
	}
	return e
}

// badChecksum changes a key's last character: its checksum no longer
// matches.
func badChecksum(secret string) string {
	last := "x"
	if strings.HasSuffix(secret, last) {
		last = "y"
	}
	return secret[:len(secret)-1] + last
}
