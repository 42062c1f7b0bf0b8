package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"keysmith/keys"
	"keysmith/testutil"
	"keysmith/webhooks"
)

// TestAddAWebhookAndSendATestEvent is the webhook click path: an owner
// adds an endpoint pointing at a receiver (forgetting the events first),
// copies the signing secret, sends a test event, sees it arrive signed
// with that secret, and finds it in the endpoint's log as sent, HTTP 200.
func TestAddAWebhookAndSendATestEvent(t *testing.T) {
	b := newTab(t)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite")) // the embedded default allows private targets
	o := newOwner(t, app, "olivia@example.com",
		keys.CreateInput{Name: "ci", Kind: keys.Secret, Env: keys.Live, Permission: keys.PermRead, ExpiresIn: "30"})
	grantClipboard(t, b.ctx, app.Server.URL)

	type call struct {
		header http.Header
		body   []byte
	}
	arrived := make(chan call, 4)
	var status atomic.Int32
	status.Store(http.StatusOK)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		arrived <- call{r.Header.Clone(), body}
		w.WriteHeader(int(status.Load()))
	}))
	t.Cleanup(recv.Close)
	hook := recv.URL + "/hooks/keysmith"

	o.logIn(b)
	b.do("open Webhooks", chromedp.Click(`nav.sidenav a[href="/settings/webhooks"]`), chromedp.WaitVisible(`.empty`))
	if empty := b.text(`.empty`); !strings.Contains(empty, "webhook-signature") {
		t.Fatalf("empty state: %q", empty)
	}
	b.shot("webhooks-01-empty")
	b.narrow("webhooks-01-empty-390")

	b.do("open the form", chromedp.Click(`.empty a[href="/settings/webhooks/new"]`), chromedp.WaitVisible(`form.webhook-form`))
	b.do("forget the events",
		chromedp.SendKeys(`#url`, hook),
		chromedp.SendKeys(`#description`, "CI"),
		chromedp.Click(`form.webhook-form button[type=submit]`),
		chromedp.WaitVisible(`.event-choices .error`),
	)
	if !strings.Contains(b.text(`.event-choices .error`), "at least one event") || b.value(`#url`) != hook || b.value(`#description`) != "CI" {
		t.Fatalf("refused form: %q, url %q", b.text(`.event-choices .error`), b.value(`#url`))
	}
	b.shot("webhooks-02-form-errors")
	b.narrow("webhooks-02-form-errors-390")

	// "All events" folds the list away; unticked, it comes back.
	b.do("tick All events", chromedp.Click(`input[name=all_events]`))
	if hidden, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`getComputedStyle(document.querySelector(".event-list")).display === "none"`)); err != nil || !hidden {
		t.Errorf("All events does not fold the list away (%v)", err)
	}
	b.do("untick All events", chromedp.Click(`input[name=all_events]`), chromedp.WaitVisible(`input[name=events][value="key.revoked"]`))
	b.do("add",
		chromedp.Click(`input[name=events][value="key.revoked"]`),
		chromedp.Click(`input[name=events][value="key.leaked"]`),
		chromedp.Click(`form.webhook-form button[type=submit]`),
		chromedp.WaitVisible(`#secret`),
	)
	secret := b.value(`#secret`)
	if !strings.HasPrefix(secret, "whsec_") || !strings.Contains(b.text(`.secret-card .flash.warning`), "You will not see it again") {
		t.Fatalf("secret page: %q\n%s", secret, b.text(`main`))
	}
	b.do("copy", chromedp.Click(`button[data-copy="#secret"]`), chromedp.WaitVisible(`//button[normalize-space()="Copied"]`))
	copied, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`navigator.clipboard.readText()`, chromedp.EvalAwaitPromise))
	if err != nil || copied != secret {
		t.Fatalf("clipboard holds %q (%v), want the secret", copied, err)
	}
	b.shot("webhooks-03-secret")
	b.narrow("webhooks-03-secret-390")

	b.do("send a test event", chromedp.Click(`//button[normalize-space()="Send a test event"]`), chromedp.WaitVisible(`.flash.success`), chromedp.WaitVisible(`#deliveries`))
	if got := b.text(`.flash.success`); got != "Test event sent; see the log below." {
		t.Fatalf("flash: %q", got)
	}
	var got call
	select {
	case got = <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the test event never arrived")
	}
	ts, _ := strconv.ParseInt(got.header.Get("webhook-timestamp"), 10, 64)
	want, err := webhooks.Sign(copied, got.header.Get("webhook-id"), ts, got.body)
	if err != nil || want != got.header.Get("webhook-signature") || !strings.Contains(string(got.body), `"type":"webhook.test"`) {
		t.Fatalf("the call: signature %q, want %q (%v); body %s", got.header.Get("webhook-signature"), want, err, got.body)
	}

	// The log says sent, HTTP 200, once the call is recorded.
	for i := 0; ; i++ {
		n, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll("table.webhook-deliveries .badge.delivery.sent").length`))
		if err == nil && n == 1 {
			break
		}
		if i == 20 {
			b.shot("failed-log")
			t.Fatalf("the log never showed the call as sent: %s", b.text(`#deliveries + .card`))
		}
		b.do("reload", chromedp.Reload(), chromedp.WaitVisible(`#deliveries`))
	}
	if row := b.text(`table.webhook-deliveries tbody tr`); !strings.Contains(row, "webhook.test") || !strings.Contains(row, "HTTP 200") {
		t.Fatalf("log row: %q", row)
	}
	b.shot("webhooks-04-endpoint")
	b.narrow("webhooks-04-endpoint-390")

	// A receiver that fails: the log says so, and when it tries again.
	status.Store(http.StatusServiceUnavailable)
	b.do("send a test event to a failing receiver", chromedp.Click(`form.send-test button[type=submit]`), chromedp.WaitVisible(`.flash.success`))
	<-arrived
	app.Outbox.Wait()
	b.do("reload", chromedp.Reload(), chromedp.WaitVisible(`table.webhook-deliveries .badge.delivery.retrying`))
	if row := b.text(`table.webhook-deliveries tbody tr`); !strings.Contains(row, "HTTP 503") || !strings.Contains(row, "next try") {
		t.Fatalf("failed call's row: %q", row)
	}
	if !strings.Contains(b.text(`.flash.warning`), "failed since") {
		t.Errorf("no failing warning: %q", b.text(`main`))
	}
	b.shot("webhooks-04b-failing")
	b.narrow("webhooks-04b-failing-390")

	b.do("ask to rotate and delete",
		chromedp.Click(`#rotate summary`), chromedp.WaitVisible(`//button[normalize-space()="Yes, rotate the secret"]`),
		chromedp.Click(`#delete summary`), chromedp.WaitVisible(`//button[normalize-space()="Yes, delete this endpoint"]`),
	)
	b.shot("webhooks-05-confirmations")
	b.narrow("webhooks-05-confirmations-390")

	b.do("list", chromedp.Click(`//a[normalize-space()="← Webhooks"]`), chromedp.WaitVisible(`table.webhooks`))
	if row := b.text(`table.webhooks tbody tr`); !strings.Contains(row, hook) || !strings.Contains(row, "key.leaked") || !strings.Contains(row, "On") || !strings.Contains(row, "just now") {
		t.Fatalf("list row: %q", row)
	}
	b.shot("webhooks-06-list")
	b.narrow("webhooks-06-list-390")
}
