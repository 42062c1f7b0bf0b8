package handlers_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"

	"keysmith/keys"
	"keysmith/testutil"
)

// The key list searches names and hints, narrows to one environment, and
// shows 25, 50 or 100 keys a page; its tabs and pages keep all three.
func TestKeyListSearchEnvironmentAndPageSize(t *testing.T) {
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	ctx := t.Context()
	var hint string
	for i := range 60 {
		in := keys.CreateInput{Name: fmt.Sprintf("worker-%02d", i), Kind: keys.Secret, Env: []keys.Env{keys.Live, keys.Test}[i%2], Permission: keys.PermRead, ExpiresIn: "90"}
		if i == 7 {
			in.Name = "Billing export"
		}
		k, err := f.app.Keys.Create(ctx, f.ws, f.actor, in)
		if err != nil {
			t.Fatal(err)
		}
		if i == 42 {
			hint = k.Key.Hint
		}
		if i == 3 {
			if _, err := f.app.Keys.Revoke(ctx, f.ws, f.actor, k.Key.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	c := f.app.NewClient(t)
	c.Submit(c.Get("/login"), "form[action='/login']", map[string]string{"email": "owner@example.com", "password": "long enough pw"})
	names := func(p *testutil.Page) []string {
		var out []string
		p.Doc.Find("table.keys tbody tr td.key-name > a strong").Each(func(_ int, s *goquery.Selection) { out = append(out, s.Text()) })
		return out
	}
	rows := func(path string) (*testutil.Page, []string) {
		t.Helper()
		p := c.Get(path)
		if p.Status != http.StatusOK {
			t.Fatalf("%s: %d", path, p.Status)
		}
		return p, names(p)
	}

	if p, got := rows("/settings/api-keys?q=BILLING"); len(got) != 1 || got[0] != "Billing export" || p.Doc.Find(`#key-search[value="BILLING"]`).Length() != 1 {
		t.Fatalf("search by name: %v", got)
	}
	if _, got := rows("/settings/api-keys?q=" + strings.SplitN(hint, "…", 2)[0][:14]); len(got) == 0 {
		t.Fatalf("search by the start of a hint found nothing")
	}
	if _, got := rows("/settings/api-keys?q=" + strings.ReplaceAll(hint, "…", "%E2%80%A6")); len(got) != 1 || got[0] != "worker-42" {
		t.Fatalf("search by hint %s: %v", hint, got)
	}
	p, got := rows("/settings/api-keys?env=test&per_page=100")
	if len(got) != 29 { // key 3, revoked, is a test key
		t.Fatalf("test keys: %d rows, want 29", len(got))
	}
	for _, b := range p.Doc.Find("table.keys tbody .badge.env-live").Nodes {
		t.Fatalf("a live key among the test keys: %v", b)
	}
	if tab := p.Doc.Find(`.tabs a[href*="filter=revoked"]`); !strings.Contains(tab.AttrOr("href", ""), "env=test") || !strings.Contains(tab.AttrOr("href", ""), "per_page=100") {
		t.Errorf("the Revoked tab loses the environment or page size: %s", tab.AttrOr("href", ""))
	}
	if all := strings.Join(strings.Fields(p.Doc.Find(`.tabs a`).First().Text()), " "); all != "All but revoked 29" {
		t.Errorf("first tab %q", all)
	}

	p, got = rows("/settings/api-keys?per_page=50")
	if len(got) != 50 {
		t.Fatalf("per_page=50: %d rows", len(got))
	}
	older := p.Doc.Find(`.pager a[rel="next"]`).AttrOr("href", "")
	if !strings.Contains(older, "per_page=50") {
		t.Fatalf("the next page forgets the page size: %q", older)
	}
	if _, got := rows(older); len(got) != 9 { // 59 kept, 50 on the first page
		t.Fatalf("second page of 50: %d rows", len(got))
	}
	if _, got := rows("/settings/api-keys?per_page=7"); len(got) != 25 {
		t.Fatalf("an unknown page size shows %d rows, want the default 25", len(got))
	}
	if p, got := rows("/settings/api-keys?q=nothing+like+it"); len(got) != 0 || !strings.Contains(p.Text("main"), "No keys match") {
		t.Fatalf("a search that matches nothing: %v %q", got, p.Text("main"))
	}
}
