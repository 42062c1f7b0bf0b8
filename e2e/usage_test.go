package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"keysmith/keys"
	"keysmith/testutil"
)

// TestPauseResumePinAndWatchUsage walks issue 12 as a new user would: a
// key paused from the list refuses calls, resumed it works, and its page's
// chart moves with the calls once they are flushed (as the flusher does
// every 15 s); pinned to another network it refuses this machine, pinned
// to this machine's address (the hint names it) it works again, and the
// list marks it. Screenshots at desktop width and at 390 px.
func TestPauseResumePinAndWatchUsage(t *testing.T) {
	b := newTab(t)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	o := newOwner(t, app, "uma@example.com", keys.CreateInput{Name: "billing", Kind: keys.Secret, Env: keys.Live, Permission: keys.PermRead, ExpiresIn: "30"})
	flush := func() {
		t.Helper()
		if err := app.Usage.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	page := app.URL("/settings/api-keys/" + fmt.Sprint(o.key.Key.ID))
	o.logIn(b)

	b.do("disable from the row", chromedp.Click(`summary[aria-label="Actions for billing"]`), chromedp.Click(`button[aria-label="Disable billing"]`), chromedp.WaitVisible(`.flash.success`))
	for range 2 {
		if got := apiStatus(t, app, o.key.Secret); got != 401 {
			t.Fatalf("the API with a disabled key: %d", got)
		}
	}
	b.do("open the key", chromedp.Navigate(page), chromedp.WaitVisible(`#usage`))
	if got := b.text(`#usage figure`); !strings.Contains(got, "No requests in this period") {
		t.Fatalf("before the flush the chart shows: %q", got)
	}
	flush()
	b.do("reload", chromedp.Navigate(page), chromedp.WaitVisible(`#usage .chart-plot g`))
	if got := b.text(`#usage .usage-stats`); strings.Join(strings.Fields(got), " ") != "Requests 2 Success 0 Rate limited 0 Forbidden 0 Other refusals 2" {
		t.Fatalf("totals after two refused calls: %q", got)
	}

	b.do("enable", chromedp.Click(`#pause button[type=submit]`), chromedp.WaitVisible(`.flash.success`))
	for range 5 {
		if got := apiStatus(t, app, o.key.Secret); got != 200 {
			t.Fatalf("the API with an enabled key: %d", got)
		}
	}
	flush()
	b.do("reload", chromedp.Navigate(page), chromedp.WaitVisible(`#usage .chart-plot g`))
	if got := b.text(`#usage .usage-stats`); strings.Join(strings.Fields(got), " ") != "Requests 7 Success 5 Rate limited 0 Forbidden 0 Other refusals 2" {
		t.Fatalf("totals after five calls: %q", got)
	}
	title, err := chromedp.Run(b.ctx, chromedp.TextContent(`#usage .chart-plot g title`))
	if err != nil || !strings.Contains(title, "7 requests (5 success, 2 other refusals)") {
		t.Fatalf("the hour's bar says %q (%v)", title, err)
	}
	if got := b.text(`.last-used`); !strings.Contains(got, "127.0.0.1") || !strings.Contains(got, "Go-http-client") {
		t.Fatalf("last used: %q", got)
	}
	b.shot("usage-01-key-page")
	b.do("30 days by day", chromedp.Click(`#usage .segmented a:last-child`), chromedp.WaitVisible(`#usage .segmented a:last-child[aria-current="true"]`))
	if got := b.text(`#usage figcaption`); !strings.Contains(got, "Requests per day, last 30 days") {
		t.Fatalf("after the toggle: %q", got)
	}

	// Pin the key: a wrong entry is refused and kept, another network
	// locks this machine out, its own address (the hint) lets it in.
	if got := b.text(`#allowed_ips-hint`); !strings.Contains(got, "Your current IP is 127.0.0.1") {
		t.Fatalf("hint: %q", got)
	}
	pin := func(list string) {
		t.Helper()
		b.do("pin to "+list, chromedp.SetValue(`#allowed_ips`, list), chromedp.Submit(`#allowed_ips`), chromedp.WaitVisible(`.flash, #allowed_ips-error`))
	}
	pin("10.0.0.1/8")
	if got := b.text(`#allowed_ips-error`); !strings.Contains(got, "10.0.0.0/8") || b.value(`#allowed_ips`) != "10.0.0.1/8" {
		t.Fatalf("refused list: %q, field %q", got, b.value(`#allowed_ips`))
	}
	b.shot("usage-02-refused-allowlist")
	pin("10.0.0.0/8")
	if got := apiStatus(t, app, o.key.Secret); got != 403 {
		t.Fatalf("from outside the allowlist: %d", got)
	}
	pin("10.0.0.0/8\n127.0.0.1")
	if got := apiStatus(t, app, o.key.Secret); got != 200 {
		t.Fatalf("from an allowed address: %d", got)
	}
	flush()
	b.do("the list", chromedp.Navigate(app.URL("/settings/api-keys")), chromedp.WaitVisible(`table.keys`))
	if got := b.text(`table.keys tbody tr:first-child .badge.ip-limited`); got != "IP-limited" {
		t.Fatalf("marker: %q", got)
	}
	label, err := chromedp.Run(b.ctx, chromedp.AttributeValue(`table.keys tbody tr:first-child svg.spark`, "aria-label"))
	if err != nil || label.Value != "9 requests in the last 14 days" {
		t.Fatalf("sparkline: %q %v", label.Value, err)
	}
	b.shot("usage-03-list")
	b.do("phone width", chromedp.EmulateViewport(390, 844), chromedp.Navigate(page), chromedp.WaitVisible(`#usage`))
	b.shot("usage-04-key-page-390")
	b.do("the list at phone width", chromedp.Navigate(app.URL("/settings/api-keys")), chromedp.WaitVisible(`table.keys`))
	b.shot("usage-05-list-390")
	b.do("the API reference", chromedp.EmulateViewport(1280, 860), chromedp.Navigate(app.URL("/settings/api-reference")), chromedp.WaitVisible(`section.endpoint`))
	if got := b.text(`main`); !strings.Contains(got, "/v1/keys/{id}/usage") || !strings.Contains(got, "allowed_ips") {
		t.Fatal("the reference page lacks the usage route or allowed_ips")
	}
	b.shot("usage-06-reference")
}
