package handlers_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"

	"keysmith/testutil"
)

func TestFaviconIsServed(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	p := app.NewClient(t).Get("/favicon.ico")
	if p.Status != http.StatusOK || p.Header.Get("Content-Type") != "image/x-icon" || !bytes.HasPrefix([]byte(p.Raw), []byte{0, 0, 1, 0}) {
		t.Fatalf("/favicon.ico: %d %q, %d bytes", p.Status, p.Header.Get("Content-Type"), len(p.Raw))
	}
}

// An audit filter from a later day to an earlier one says so, rather than
// "no events".
func TestAuditFilterFromAfterTo(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	c := signUp(t, app, "ada@example.com")
	secretOf(t, createKey(t, c, nil))
	p := c.Get("/settings/audit-log?from=2026-03-05&to=2026-03-01")
	if p.Status != http.StatusUnprocessableEntity || !strings.Contains(p.Text(".flash.error"), "after the To date") ||
		p.Doc.Find(`#to[aria-invalid="true"]`).Length() != 1 || p.Doc.Find("table.audit").Length() != 0 || strings.Contains(p.Text("main"), "No events match") {
		t.Fatalf("from after to: %d %q", p.Status, p.Text("main"))
	}
	if v, _ := p.Doc.Find("#from").Attr("value"); v != "2026-03-05" {
		t.Errorf("the From date is lost: %q", v)
	}
	if p := c.Get("/settings/audit-log/export.csv?from=2026-03-05&to=2026-03-01"); p.Status != http.StatusUnprocessableEntity {
		t.Errorf("export from after to: %d", p.Status)
	}
	if p := c.Get("/settings/audit-log?from=2026-03-02&to=2026-03-02"); p.Status != http.StatusOK || p.Doc.Find("table.audit tbody tr").Length() == 0 {
		t.Errorf("one day, from = to: %d, %d events", p.Status, p.Doc.Find("table.audit tbody tr").Length())
	}
}

// A revoked key has stopped: its page shows no expiry still to come.
func TestRevokedKeyShowsNoFutureExpiry(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	c := signUp(t, app, "ada@example.com")
	secretOf(t, createKey(t, c, map[string]string{"expires_in": "30"}))
	id := keyIDByName(t, app, "Billing worker")
	page := fmt.Sprintf("/settings/api-keys/%d", id)
	if got := factOf(c.Get(page), "Expires"); !strings.Contains(got, "2026") {
		t.Fatalf("live key's expiry: %q", got)
	}
	c.Submit(c.Get(page), `form[action$="/revoke"]`, nil)
	if got := factOf(c.Get(page), "Expires"); strings.Contains(got, "2026") || got != "—" {
		t.Fatalf("revoked key's expiry: %q", got)
	}
	if row := c.Get("/settings/api-keys?filter=revoked").Text(`table.keys td[data-label="Expires"]`); strings.Contains(row, "2026") {
		t.Fatalf("revoked row's expiry: %q", row)
	}
}

// factOf is the value of a key page's fact named dt.
func factOf(p *testutil.Page, dt string) string {
	return strings.TrimSpace(p.Doc.Find("dl.facts dt").FilterFunction(func(_ int, s *goquery.Selection) bool {
		return strings.TrimSpace(s.Text()) == dt
	}).First().Next().Text())
}
