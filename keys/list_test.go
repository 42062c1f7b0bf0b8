package keys_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
)

// walk reads every keyset page of a filter, perPage at a time, and returns
// the ids in list order.
func (f *fixture) walk(t *testing.T, o keys.ListOptions) []int64 {
	t.Helper()
	var ids []int64
	for pages := 0; ; pages++ {
		p, err := f.svc.List(ctx, f.ws, o)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range p.Keys {
			ids = append(ids, k.ID)
		}
		if p.Older == nil || pages > 1000 {
			return ids
		}
		o.At = keys.Position{Before: p.Older}
	}
}

// offsetIDs reads the same list by offset pages.
func (f *fixture) offsetIDs(t *testing.T, o keys.ListOptions) []int64 {
	t.Helper()
	var ids []int64
	for page := 1; ; page++ {
		o.Page = page
		p, err := f.svc.List(ctx, f.ws, o)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range p.Keys {
			ids = append(ids, k.ID)
		}
		if !p.HasMore {
			return ids
		}
	}
}

// TestCountsAgreeWithARecount changes keys every way the service can (two
// environments, two creators, creates, rotations, revocations, uses, time
// passing) and checks after each step that every tab's count equals the
// length of its list read page by page, by keyset and by offset alike, and
// that key_counts equals a recount.
func TestCountsAgreeWithARecount(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := setup(t, dbURL, 0)
		eu, _ := f.member(t, "editor@example.com", f.ws, models.RoleEditor)
		editor := f.svc.UserActor(eu, models.RoleEditor, "", "")
		check := func(step string) {
			t.Helper()
			for _, o := range []keys.ListOptions{{}, {Env: keys.Test}, {Env: keys.Live}, {CreatorID: eu.ID},
				{Search: "KEY 1"}, {Search: "ks_sk_live"}, {Env: keys.Test, Search: "key"}, {Search: "%"}, {Search: "nothing like it"}} {
				counts, err := f.svc.List(ctx, f.ws, keys.ListOptions{Env: o.Env, CreatorID: o.CreatorID, Search: o.Search, PerPage: 1})
				if err != nil {
					t.Fatal(err)
				}
				for _, filter := range keys.Filters {
					o.Filter, o.PerPage = filter, 3
					byKeyset, byOffset := f.walk(t, o), f.offsetIDs(t, o)
					if !slices.Equal(byKeyset, byOffset) {
						t.Fatalf("%s, %+v: keyset pages %v, offset pages %v", step, o, byKeyset, byOffset)
					}
					if got := counts.Counts[filter]; got != (keys.Count{N: int64(len(byKeyset))}) {
						t.Fatalf("%s, %+v: tab counts %+v, list holds %d", step, o, got, len(byKeyset))
					}
				}
			}
			// A search lists exactly the keys whose name or hint holds it.
			var all []models.APIKey
			f.db.Where("workspace_id = ?", f.ws).Find(&all)
			for _, o := range []keys.ListOptions{{Search: "Key 1"}, {Search: "ks_sk_live"}, {Search: "%"}} {
				var want []int64
				for _, k := range all {
					if strings.Contains(strings.ToLower(k.Name+" "+k.Hint), strings.ToLower(o.Search)) {
						want = append(want, k.ID)
					}
				}
				o.PerPage = 2
				got := f.walk(t, o)
				o.Filter = keys.FilterRevoked
				got = append(got, f.walk(t, o)...)
				slices.Sort(want)
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Fatalf("%s: search %q lists %v, want %v", step, o.Search, got, want)
				}
			}
			before, _ := f.svc.Count(ctx, f.ws)
			if err := f.svc.Recount(ctx, f.ws); err != nil {
				t.Fatal(err)
			}
			if after, _ := f.svc.Count(ctx, f.ws); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatalf("%s: kept counts %v, recounted %v", step, before, after)
			}
		}
		check("empty workspace")
		var made []models.APIKey
		for i := range 8 {
			in := valid()
			in.Name = fmt.Sprintf("key %d", i)
			in.Env = []keys.Env{keys.Live, keys.Test}[i%2]
			in.ExpiresIn = []string{"never", "7", "30", "90"}[i%4]
			by := f.owner
			if i%3 == 0 {
				by = editor
			}
			c, err := f.svc.Create(ctx, f.ws, by, in)
			if err != nil {
				t.Fatal(err)
			}
			made = append(made, c.Key)
			f.clk.Advance(time.Minute)
		}
		check("created")
		if _, err := f.svc.Revoke(ctx, f.ws, f.owner, made[1].ID); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Revoke(ctx, f.ws, f.owner, made[6].ID); err != nil {
			t.Fatal(err)
		}
		check("revoked")
		if _, err := f.svc.Rotate(ctx, f.ws, f.owner, made[2].ID, time.Hour); err != nil {
			t.Fatal(err)
		}
		check("rotated")
		for _, k := range []models.APIKey{made[0], made[3], made[5]} {
			if _, err := f.svc.SetDisabled(ctx, f.ws, f.owner, k.ID, true); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := f.svc.SetDisabled(ctx, f.ws, f.owner, made[5].ID, false); err != nil {
			t.Fatal(err)
		}
		check("disabled two")
		f.db.Model(&models.APIKey{}).Where("id = ?", made[4].ID).Update("last_used_at", f.clk.Now())
		f.clk.Advance(8 * 24 * time.Hour) // the 7-day keys and the rotated one expire
		check("a week later")
		f.clk.Advance(25 * 24 * time.Hour) // unused for 30 days, 30-day keys expired
		check("a month later")
	})
}

// TestKeysetPagesWhileKeysChange reads page 1, then changes keys on both
// sides of the cursor, then reads page 2: the page after the cursor holds
// exactly the keys below it that still match, none twice, none skipped.
func TestKeysetPagesWhileKeysChange(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := setup(t, dbURL, 0)
		var ids []int64 // newest first
		for i := range 7 {
			in := valid()
			in.Name, in.ExpiresIn = fmt.Sprintf("key %d", i), "never"
			c, err := f.svc.Create(ctx, f.ws, f.owner, in)
			if err != nil {
				t.Fatal(err)
			}
			ids = append([]int64{c.Key.ID}, ids...)
			f.clk.Advance(time.Second)
		}
		first, err := f.svc.List(ctx, f.ws, keys.ListOptions{PerPage: 3})
		if err != nil {
			t.Fatal(err)
		}
		if got := idsOf(first.Keys); !slices.Equal(got, ids[:3]) || first.Older == nil || first.Newer != nil || !first.HasMore {
			t.Fatalf("page 1: %v, want %v; older %v newer %v", got, ids[:3], first.Older, first.Newer)
		}
		// Above the cursor: a new key and a revoked one; below it: a revoked one.
		in := valid()
		in.Name, in.ExpiresIn = "newest", "never"
		if _, err := f.svc.Create(ctx, f.ws, f.owner, in); err != nil {
			t.Fatal(err)
		}
		for _, id := range []int64{ids[0], ids[4]} {
			if _, err := f.svc.Revoke(ctx, f.ws, f.owner, id); err != nil {
				t.Fatal(err)
			}
		}
		second, err := f.svc.List(ctx, f.ws, keys.ListOptions{PerPage: 3, Page: 2, At: keys.Position{Before: first.Older}})
		if err != nil {
			t.Fatal(err)
		}
		want := []int64{ids[3], ids[5], ids[6]}
		if got := idsOf(second.Keys); !slices.Equal(got, want) || second.Page != 2 || second.Older != nil || second.HasMore {
			t.Fatalf("page 2: %v (page %d, older %v), want %v", got, second.Page, second.Older, want)
		}
		// Newer from page 2: the three unrevoked keys just above it.
		back, err := f.svc.List(ctx, f.ws, keys.ListOptions{PerPage: 3, Page: 1, At: keys.Position{After: second.Newer}})
		if err != nil {
			t.Fatal(err)
		}
		if got := idsOf(back.Keys); len(got) != 3 || got[1] != ids[1] || got[2] != ids[2] {
			t.Fatalf("back to page 1: %v", got)
		}
		// The revoked tab shows both revoked keys, newest first.
		if got := f.walk(t, keys.ListOptions{Filter: keys.FilterRevoked, PerPage: 1}); !slices.Equal(got, []int64{ids[0], ids[4]}) {
			t.Fatalf("revoked tab %v", got)
		}
	})
}

// TestCountsStopAtTheCap gives a workspace more expired keys than
// CountCap, written around the service as a bulk import would, then
// recounted: All and Revoked stay exact, the time-dependent tabs say
// "more than CountCap".
func TestCountsStopAtTheCap(t *testing.T) {
	if testing.Short() {
		t.Skip("writes more keys than CountCap")
	}
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := setup(t, dbURL, 0)
		now := f.clk.Now()
		expired := now.Add(-time.Hour)
		batch := make([]models.APIKey, 0, keys.CountCap+5)
		for i := range keys.CountCap + 5 {
			batch = append(batch, models.APIKey{
				WorkspaceID: f.ws, Name: fmt.Sprint(i), Kind: "sk", Environment: "live", Permission: "read", Scopes: "files:read",
				SecretHash: fmt.Sprintf("hash-%d", i), Hint: "x", ExpiresAt: &expired, CreatedAt: now, UpdatedAt: now,
			})
		}
		if err := f.db.CreateInBatches(batch, 500).Error; err != nil {
			t.Fatal(err)
		}
		if err := f.svc.Recount(ctx, f.ws); err != nil {
			t.Fatal(err)
		}
		counts, err := f.svc.Count(ctx, f.ws)
		if err != nil {
			t.Fatal(err)
		}
		want := keys.Counts{keys.FilterAll: {N: keys.CountCap + 5}, keys.FilterExpired: {N: keys.CountCap, Capped: true},
			keys.FilterActive: {}, keys.FilterExpiring: {}, keys.FilterRevoked: {}, keys.FilterUnused: {}, keys.FilterDisabled: {}}
		if fmt.Sprint(counts) != fmt.Sprint(want) {
			t.Fatalf("counts %v, want %v", counts, want)
		}
		p, err := f.svc.List(ctx, f.ws, keys.ListOptions{Filter: keys.FilterExpired, PerPage: 25})
		if err != nil {
			t.Fatal(err)
		}
		if p.Total != (keys.Count{N: keys.CountCap, Capped: true}) || p.Pages() != 0 || len(p.Keys) != 25 || !p.HasMore {
			t.Fatalf("expired tab: total %+v, pages %d, %d keys, more %v", p.Total, p.Pages(), len(p.Keys), p.HasMore)
		}
	})
}

func idsOf(ks []models.APIKey) []int64 {
	out := make([]int64, 0, len(ks))
	for _, k := range ks {
		out = append(out, k.ID)
	}
	return out
}
