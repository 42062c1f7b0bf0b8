package handlers_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"keysmith/config"
	"keysmith/models"
	"keysmith/testutil"
	"keysmith/webhooks"
)

// receiver is a webhook receiver: it records every call and answers with
// the status it is told.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	calls  []receivedCall
	status int
}

type receivedCall struct {
	Header http.Header
	Body   []byte
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	r := &receiver{status: http.StatusOK}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.calls = append(r.calls, receivedCall{Header: req.Header.Clone(), Body: body})
		status := r.status
		r.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) answer(status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status = status
}

func (r *receiver) received() []receivedCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]receivedCall(nil), r.calls...)
}

// allowPrivate lets endpoints be on this machine's httptest servers, as
// the embedded default does; PostgreSQL's default refuses them.
var allowPrivate = testutil.WithConfig(func(c *config.Config) { c.WebhookAllowPrivate = true })

// addWebhook opens the add form and submits it with fields; events are
// the boxes ticked.
func addWebhook(t *testing.T, c *testutil.Client, fields map[string]string, events ...string) *testutil.Page {
	t.Helper()
	form := c.Get("/settings/webhooks/new")
	if form.Status != http.StatusOK {
		t.Fatalf("add form: %d", form.Status)
	}
	return addWebhookFrom(t, c, form, fields, events...)
}

// addWebhookFrom submits the add form on page: enabled unless fields say
// "enabled": "", its events those given.
func addWebhookFrom(t *testing.T, c *testutil.Client, page *testutil.Page, fields map[string]string, events ...string) *testutil.Page {
	t.Helper()
	form := page.Doc.Find("form.webhook-form")
	if form.Length() == 0 {
		t.Fatalf("no endpoint form on %s:\n%s", page.URL, page.Body)
	}
	v := url.Values{"_csrf": {csrfOf(page)}, "nonce": {form.Find("input[name=nonce]").AttrOr("value", "")}, "enabled": {"on"}}
	for k, val := range fields {
		v.Set(k, val)
	}
	v["events"] = events
	return c.PostForm("/settings/webhooks", v)
}

func webhookByURL(t *testing.T, app *testutil.App, u string) models.WebhookEndpoint {
	t.Helper()
	var e models.WebhookEndpoint
	if err := app.DB.Where("url = ?", u).Order("id DESC").Take(&e).Error; err != nil {
		t.Fatalf("endpoint %q: %v", u, err)
	}
	return e
}

// checkSignature verifies a call's signature twice: with webhooks.Sign,
// and with the Standard Webhooks algorithm written out here.
func checkSignature(t *testing.T, call receivedCall, secret string) {
	t.Helper()
	id, ts, sig := call.Header.Get("webhook-id"), call.Header.Get("webhook-timestamp"), call.Header.Get("webhook-signature")
	if id == "" || ts == "" || !strings.HasPrefix(sig, "v1,") {
		t.Fatalf("headers: id %q, timestamp %q, signature %q", id, ts, sig)
	}
	stamp, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		t.Fatalf("timestamp %q: %v", ts, err)
	}
	want, err := webhooks.Sign(secret, id, stamp, call.Body)
	if err != nil || want != sig {
		t.Errorf("webhooks.Sign: %q (%v), the call carries %q", want, err, sig)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || len(key) < 24 {
		t.Fatalf("secret %q: %d bytes, %v", secret, len(key), err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + string(call.Body)))
	expected := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	got, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(sig, "v1,"))
	if !hmac.Equal(got, mac.Sum(nil)) {
		t.Errorf("the signature does not verify: v1,%s expected, %s sent", expected, sig)
	}
}

var allEvents = []string{"key.created", "key.rotated", "key.revoked", "key.disabled", "key.enabled",
	"key.expiring", "key.expired", "key.leaked", "member.joined", "member.removed"}

func TestWebhookAddShowsTheSecretOnce(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL, allowPrivate)
		c := signUp(t, app, "ada@example.com")

		list := c.Get("/settings/webhooks")
		if list.Status != http.StatusOK || list.Doc.Find(`nav.sidenav a[href="/settings/webhooks"][aria-current=page]`).Length() != 1 {
			t.Fatalf("list: %d, or no Webhooks in the settings navigation", list.Status)
		}
		empty := list.Text(".empty")
		for _, want := range []string{"No webhook endpoints yet", "webhook-id", "webhook-timestamp", "webhook-signature", "HMAC-SHA256"} {
			if !strings.Contains(empty, want) {
				t.Errorf("the empty state lacks %q: %s", want, empty)
			}
		}
		if href := list.Doc.Find(".empty a.btn").AttrOr("href", ""); href != "/settings/webhooks/new" {
			t.Fatalf("empty state button: %q", href)
		}

		// Invalid input: every message, and everything typed, comes back.
		form := c.Get("/settings/webhooks/new")
		if n := form.Doc.Find(`.event-list input[name=events]`).Length(); n != len(allEvents) || form.Doc.Find(`input[name=all_events]`).Length() != 1 {
			t.Fatalf("%d event boxes, want %d and All events", n, len(allEvents))
		}
		long := strings.Repeat("d", 201)
		bad := addWebhookFrom(t, c, form, map[string]string{"url": "ftp://ci.example.com/hook", "description": long})
		if bad.Status != http.StatusUnprocessableEntity {
			t.Fatalf("invalid form: %d", bad.Status)
		}
		for sel, want := range map[string]string{"#url-error": "http://", "#description-error": "200", ".event-choices .error": "at least one event"} {
			if !strings.Contains(bad.Text(sel), want) {
				t.Errorf("%s says %q, want %q", sel, bad.Text(sel), want)
			}
		}
		if valueOf(bad, "#url") != "ftp://ci.example.com/hook" || valueOf(bad, "#description") != long {
			t.Error("URL or description lost")
		}
		bad = addWebhookFrom(t, c, bad, map[string]string{"url": "https://user:pw@ci.example.com/hook", "description": "CI"}, "key.revoked", "key.leaked")
		if bad.Status != http.StatusUnprocessableEntity || !strings.Contains(bad.Text("#url-error"), "credentials") {
			t.Fatalf("credentials in the URL: %d %q", bad.Status, bad.Text("#url-error"))
		}
		if bad.Doc.Find(`input[name=events][checked]`).Length() != 2 || bad.Doc.Find(`input[name=events][value="key.leaked"][checked]`).Length() != 1 || valueOf(bad, "#description") != "CI" {
			t.Error("the ticked events or the description were lost")
		}
		if bad.Doc.Find(`input[name=enabled][checked]`).Length() != 1 {
			t.Error("enabled lost")
		}

		recv := newReceiver(t)
		hook := recv.URL + "/hooks/keysmith"
		page := addWebhookFrom(t, c, bad, map[string]string{"url": hook, "description": "CI"}, "key.revoked", "key.leaked")
		if page.Status != http.StatusCreated || page.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("secret page: %d, Cache-Control %q\n%s", page.Status, page.Header.Get("Cache-Control"), page.Text("main"))
		}
		secret := valueOf(page, "#secret")
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
		if !strings.HasPrefix(secret, "whsec_") || err != nil || len(key) < 24 || !strings.Contains(page.Text(".flash.warning"), "You will not see it again") {
			t.Fatalf("secret %q (%d bytes, %v), warning %q", secret, len(key), err, page.Text(".flash.warning"))
		}
		if page.Doc.Find(`button[data-copy="#secret"]`).Length() != 1 || page.Doc.Find(`.secret-card[hx-history="false"], [hx-history="false"] .secret-card`).Length() == 0 {
			t.Error("no copy button, or the secret may enter htmx's history cache")
		}
		if snippet := page.Text("pre.webhook-snippet"); !strings.Contains(snippet, "hmac.New(sha256.New, key)") || !strings.Contains(snippet, `"whsec_"`) {
			t.Errorf("no verification snippet: %q", snippet)
		}

		e := webhookByURL(t, app, hook)
		if e.Description != "CI" || e.Events != "key.revoked key.leaked" || !e.Enabled || !strings.HasPrefix(secret, strings.TrimSuffix(e.SecretHint, "…")) {
			t.Fatalf("stored %+v", e)
		}
		if strings.Contains(string(e.SecretEnc), strings.TrimPrefix(secret, "whsec_")) {
			t.Fatal("the secret is stored in the clear")
		}

		// Reloading the secret page re-posts its form: no second endpoint, no secret.
		again := addWebhookFrom(t, c, bad, map[string]string{"url": hook, "description": "CI"}, "key.revoked", "key.leaked")
		if again.URL.Path != "/settings/webhooks" || !strings.Contains(again.Text(".flash"), "already added") || again.Doc.Find("#secret").Length() != 0 {
			t.Fatalf("re-posting a used form: %s %q", again.URL, again.Text(".flash"))
		}
		var n int64
		app.DB.Model(&models.WebhookEndpoint{}).Count(&n)
		if n != 1 {
			t.Fatalf("%d endpoints, want 1", n)
		}

		list = c.Get("/settings/webhooks")
		row := strings.Join(strings.Fields(list.Text("table.webhooks tbody tr")), " ")
		for _, want := range []string{hook, "CI", "key.revoked", "key.leaked", "On", "Never"} {
			if !strings.Contains(row, want) {
				t.Errorf("row lacks %q: %s", want, row)
			}
		}
		details := c.Get(fmt.Sprintf("/settings/webhooks/%d", e.ID))
		if strings.Contains(list.Body, secret) || strings.Contains(details.Body, secret) || strings.Contains(details.Body, secret[:20]) {
			t.Fatal("the secret is shown again")
		}
		if !strings.Contains(details.Text("dl.facts"), e.SecretHint) || !strings.Contains(details.Text(".empty-log"), "No calls yet") {
			t.Errorf("endpoint page: %s", details.Text("main"))
		}

		// "All events" stands for every event, whatever is ticked; added switched off.
		all := addWebhook(t, c, map[string]string{"url": recv.URL + "/all", "all_events": "on", "enabled": ""}, "key.created")
		if all.Status != http.StatusCreated {
			t.Fatalf("all events: %d %s", all.Status, all.Text("main"))
		}
		if e := webhookByURL(t, app, recv.URL+"/all"); e.Events != strings.Join(allEvents, " ") || e.Enabled {
			t.Fatalf("all events, off: %+v", e)
		}
		row = strings.Join(strings.Fields(c.Get("/settings/webhooks").Text("#webhook-"+fmt.Sprint(webhookByURL(t, app, recv.URL+"/all").ID))), " ")
		if !strings.Contains(row, "All events") || !strings.Contains(row, "Off") {
			t.Errorf("row of an endpoint with all events, off: %s", row)
		}
		if p := c.Get(fmt.Sprintf("/settings/webhooks/%d", webhookByURL(t, app, recv.URL+"/all").ID)); p.Doc.Find(`#edit input[name=all_events][checked]`).Length() != 1 {
			t.Error("the edit form of an endpoint with every event does not tick All events")
		}
		if len(recv.received()) != 0 {
			t.Error("adding an endpoint called it")
		}
	})
}

// The SSRF guard: with private targets refused (PostgreSQL's default),
// the form says why, and keeps what was typed.
func TestWebhookRefusesPrivateTargets(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL, testutil.WithConfig(func(c *config.Config) { c.WebhookAllowPrivate = false }))
		c := signUp(t, app, "ada@example.com")
		for _, u := range []string{"http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.1.2.3/hook", "http://[::1]/hook", "http://169.254.169.254/latest"} {
			p := addWebhook(t, c, map[string]string{"url": u}, "key.revoked")
			if p.Status != http.StatusUnprocessableEntity || !strings.Contains(p.Text("#url-error"), "KEYSMITH_WEBHOOK_ALLOW_PRIVATE") || valueOf(p, "#url") != u {
				t.Errorf("%s: %d %q", u, p.Status, p.Text("#url-error"))
			}
		}
		if p := addWebhook(t, c, map[string]string{"url": "https://hooks.example.com/keysmith"}, "key.revoked"); p.Status != http.StatusCreated {
			t.Fatalf("a public URL: %d %s", p.Status, p.Text("main"))
		}
	})
}

func TestWebhookSendTestEventIsSignedAndLogged(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL, allowPrivate)
		c := signUp(t, app, "ada@example.com")
		recv := newReceiver(t)
		hook := recv.URL + "/hooks"
		added := addWebhook(t, c, map[string]string{"url": hook}, "key.revoked")
		secret := valueOf(added, "#secret")
		e := webhookByURL(t, app, hook)

		// Straight from the page that shows the secret.
		sent := c.Submit(added, "form.send-test", nil)
		if sent.URL.Path != fmt.Sprintf("/settings/webhooks/%d", e.ID) || !strings.Contains(sent.Text(".flash.success"), "Test event sent; see the log below") {
			t.Fatalf("send test: %s %q", sent.URL, sent.Text(".flash"))
		}
		app.Outbox.Wait()
		calls := recv.received()
		if len(calls) != 1 {
			t.Fatalf("%d calls arrived, want 1", len(calls))
		}
		call := calls[0]
		checkSignature(t, call, secret)
		if ct := call.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		var body struct {
			ID        string    `json:"id"`
			Type      string    `json:"type"`
			Timestamp time.Time `json:"timestamp"`
			Data      struct {
				WorkspaceID int64 `json:"workspace_id"`
			} `json:"data"`
		}
		if err := json.Unmarshal(call.Body, &body); err != nil {
			t.Fatalf("body %s: %v", call.Body, err)
		}
		if body.Type != "webhook.test" || body.ID != call.Header.Get("webhook-id") || body.Data.WorkspaceID != e.WorkspaceID || body.Timestamp.IsZero() {
			t.Errorf("body %s", call.Body)
		}
		if ts := call.Header.Get("webhook-timestamp"); ts != fmt.Sprint(app.Clock.Now().Unix()) {
			t.Errorf("webhook-timestamp %s, the clock says %d", ts, app.Clock.Now().Unix())
		}
		if strings.Contains(string(call.Body), strings.TrimPrefix(secret, "whsec_")) {
			t.Fatal("the payload carries the secret")
		}

		// The log: the event, sent, with the answer's status.
		page := c.Get(fmt.Sprintf("/settings/webhooks/%d", e.ID))
		row := strings.Join(strings.Fields(page.Text("table.webhook-deliveries tbody tr")), " ")
		for _, want := range []string{"webhook.test", "just now", "sent", "HTTP 200", "1"} {
			if !strings.Contains(row, want) {
				t.Errorf("log row lacks %q: %s", want, row)
			}
		}
		if !strings.Contains(page.Text("dl.facts"), "just now") {
			t.Errorf("last delivery: %s", page.Text("dl.facts"))
		}

		// A refusal: retrying, the status, the error, the next try; the list says failing.
		recv.answer(http.StatusInternalServerError)
		c.Submit(page, "form.send-test", nil)
		app.Outbox.Wait()
		if n := len(recv.received()); n != 2 {
			t.Fatalf("%d calls, want 2", n)
		}
		page = c.Get(fmt.Sprintf("/settings/webhooks/%d", e.ID))
		row = strings.Join(strings.Fields(page.Text("table.webhook-deliveries tbody tr:first-child")), " ")
		for _, want := range []string{"webhook.test", "retrying", "next try in 1 minute", "HTTP 500", "answered HTTP 500"} {
			if !strings.Contains(row, want) {
				t.Errorf("refused call's row lacks %q: %s", want, row)
			}
		}
		if !strings.Contains(page.Text(".flash.warning"), "failed since") {
			t.Errorf("no failing warning: %q", page.Text(".flash"))
		}
		if row := c.Get("/settings/webhooks").Text("table.webhooks tbody tr"); !strings.Contains(row, "Failing since") {
			t.Errorf("the list does not say it is failing: %s", row)
		}

		// After a rotation, calls verify with the new secret only.
		recv.answer(http.StatusNoContent)
		rotated := c.Submit(page, `form[action$="/rotate-secret"]`, nil)
		fresh := valueOf(rotated, "#secret")
		if rotated.Status != http.StatusCreated || fresh == secret || !strings.HasPrefix(fresh, "whsec_") || !strings.Contains(rotated.Text("main h1"), "Signing secret rotated") {
			t.Fatalf("rotate: %d %q", rotated.Status, rotated.Text("main"))
		}
		c.Submit(c.Get(fmt.Sprintf("/settings/webhooks/%d", e.ID)), "form.send-test", nil)
		app.Outbox.Wait()
		calls = recv.received()
		last := calls[len(calls)-1]
		checkSignature(t, last, fresh)
		if old, _ := webhooks.Sign(secret, last.Header.Get("webhook-id"), mustInt(t, last.Header.Get("webhook-timestamp")), last.Body); old == last.Header.Get("webhook-signature") {
			t.Error("a call after the rotation verifies with the old secret")
		}
		page = c.Get(fmt.Sprintf("/settings/webhooks/%d", e.ID))
		if row := page.Text("table.webhook-deliveries tbody tr:first-child"); !strings.Contains(row, "HTTP 204") || !strings.Contains(row, "sent") {
			t.Errorf("after rotation: %s", row)
		}
		if page.Doc.Find(".flash.warning").Length() != 0 {
			t.Error("still failing after a success")
		}
	})
}

func mustInt(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestWebhookEditSwitchRotateAndDelete(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL, allowPrivate)
		c := signUp(t, app, "ada@example.com")
		recv := newReceiver(t)
		hook := recv.URL + "/a"
		old := valueOf(addWebhook(t, c, map[string]string{"url": hook, "description": "CI"}, "key.revoked"), "#secret")
		e := webhookByURL(t, app, hook)
		path := fmt.Sprintf("/settings/webhooks/%d", e.ID)
		page := c.Get(path)
		if page.Doc.Find(`#edit input[name=events][value="key.revoked"][checked]`).Length() != 1 || valueOf(page, "#url") != hook || valueOf(page, "#description") != "CI" {
			t.Fatalf("the edit form does not hold the endpoint:\n%s", page.Text("#edit"))
		}

		// Edit: a refusal keeps what was typed, on the endpoint's page.
		bad := c.Submit(page, "form#edit", map[string]string{"url": "mailto:ci@example.com", "description": "CI, renamed"})
		if bad.Status != http.StatusUnprocessableEntity || !strings.Contains(bad.Text("#url-error"), "http") || valueOf(bad, "#url") != "mailto:ci@example.com" || valueOf(bad, "#description") != "CI, renamed" {
			t.Fatalf("invalid edit: %d %q", bad.Status, bad.Text("#url-error"))
		}
		if bad.Doc.Find("table.webhook-deliveries, .empty-log").Length() == 0 || bad.Text("main h1") != hook {
			t.Error("the refused edit does not show the endpoint's page")
		}
		saved := c.Submit(bad, "form#edit", map[string]string{"url": recv.URL + "/b", "description": "CI, renamed", "events": "key.created"})
		if saved.URL.Path != path || !strings.Contains(saved.Text(".flash.success"), "Saved") {
			t.Fatalf("edit: %s %q", saved.URL, saved.Text(".flash"))
		}
		// The form sends key.created (replacing the first box) and nothing else.
		if got := webhookByURL(t, app, recv.URL+"/b"); got.Events != "key.created" || got.Description != "CI, renamed" || !got.Enabled {
			t.Fatalf("after the edit: %+v", got)
		}

		// Switch off, and on.
		off := c.Submit(saved, `form[action$="/disable"]`, nil)
		if !strings.Contains(off.Text(".flash.success"), "Switched off") || off.Text(".page-head .badge") != "Off" || off.Doc.Find(`form[action$="/enable"]`).Length() != 1 {
			t.Fatalf("switch off: %q, badge %q", off.Text(".flash"), off.Text(".page-head .badge"))
		}
		if webhookByURL(t, app, recv.URL+"/b").Enabled {
			t.Fatal("still on")
		}
		// Editing an endpoint that is off leaves it off.
		c.Submit(off, "form#edit", map[string]string{"description": "CI, off"})
		if got := webhookByURL(t, app, recv.URL+"/b"); got.Enabled || got.Description != "CI, off" {
			t.Fatalf("edited while off: %+v", got)
		}
		on := c.Submit(c.Get(path), `form[action$="/enable"]`, nil)
		if !strings.Contains(on.Text(".flash.success"), "Switched on") || on.Text(".page-head .badge") != "On" || !webhookByURL(t, app, recv.URL+"/b").Enabled {
			t.Fatalf("switch on: %q", on.Text(".flash"))
		}

		// Rotate, behind a confirmation; a reload does not rotate again.
		if on.Doc.Find(`#rotate details.confirm form[action$="/rotate-secret"]`).Length() != 1 || on.Doc.Find(`#delete details.confirm form[action$="/delete"]`).Length() != 1 {
			t.Fatal("rotate or delete is not behind a confirmation")
		}
		rotated := c.Submit(on, `form[action$="/rotate-secret"]`, nil)
		fresh := valueOf(rotated, "#secret")
		if rotated.Status != http.StatusCreated || fresh == old || rotated.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("rotate: %d", rotated.Status)
		}
		hint := webhookByURL(t, app, recv.URL+"/b").SecretHint
		if !strings.HasPrefix(fresh, strings.TrimSuffix(hint, "…")) {
			t.Errorf("hint %q for the new secret", hint)
		}
		again := c.Submit(on, `form[action$="/rotate-secret"]`, nil)
		if again.Doc.Find("#secret").Length() != 0 || !strings.Contains(again.Text(".flash"), "already rotated") || webhookByURL(t, app, recv.URL+"/b").SecretHint != hint {
			t.Fatalf("re-posted rotation: %s %q", again.URL, again.Text(".flash"))
		}

		// Delete, behind a confirmation.
		deleted := c.Submit(c.Get(path), `form[action$="/delete"]`, nil)
		if deleted.URL.Path != "/settings/webhooks" || !strings.Contains(deleted.Text(".flash.success"), "Deleted the endpoint "+recv.URL+"/b") {
			t.Fatalf("delete: %s %q", deleted.URL, deleted.Text(".flash"))
		}
		if deleted.Doc.Find("table.webhooks").Length() != 0 || !strings.Contains(deleted.Text(".empty"), "No webhook endpoints yet") {
			t.Fatal("still listed")
		}
		if p := c.Get(path); p.Status != http.StatusNotFound {
			t.Errorf("a deleted endpoint's page: %d", p.Status)
		}
		twice := c.PostForm(path+"/delete", url.Values{"_csrf": {csrfOf(deleted)}})
		if !strings.Contains(twice.Text(".flash.info"), "already deleted") {
			t.Errorf("deleting twice: %d %q", twice.Status, twice.Text(".flash"))
		}
		var audit []string
		app.DB.Model(&models.AuditEvent{}).Where("action LIKE 'webhook.%'").Order("id").Pluck("action", &audit)
		if got := strings.Join(audit, " "); got != "webhook.created webhook.updated webhook.updated webhook.updated webhook.updated webhook.secret_rotated webhook.deleted" {
			t.Errorf("audit: %s", got)
		}
	})
}

func TestWebhookPagesForOtherRoles(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL, allowPrivate)
		owner := signUp(t, app, "ada@example.com")
		recv := newReceiver(t)
		hook := recv.URL + "/hooks?token=s3cr3t"
		addWebhook(t, owner, map[string]string{"url": hook}, "key.revoked")
		e := webhookByURL(t, app, hook)
		path := fmt.Sprintf("/settings/webhooks/%d", e.ID)

		// An admin manages them as the owner does.
		admin := addMember(t, app, "ada@example.com", "admin@example.com", models.RoleAdmin)
		if p := admin.Get(path); p.Doc.Find(`form.send-test, form#edit, form[action$="/delete"]`).Length() != 3 || valueOf(p, "#url") != hook {
			t.Errorf("an admin cannot manage the endpoint:\n%s", p.Text("main"))
		}

		for _, role := range []models.Role{models.RoleEditor, models.RoleViewer} {
			c := addMember(t, app, "ada@example.com", string(role)+"@example.com", role)
			list := c.Get("/settings/webhooks")
			if list.Status != http.StatusOK || !strings.Contains(list.Text("table.webhooks"), recv.URL+"/hooks?…") {
				t.Fatalf("%s: list %d: %s", role, list.Status, list.Text("main"))
			}
			if strings.Contains(list.Body, "s3cr3t") {
				t.Errorf("%s sees the URL's query", role)
			}
			if list.Doc.Find(`a[href="/settings/webhooks/new"]`).Length() != 0 || !strings.Contains(list.Text(".flash.info"), "owners and admins") {
				t.Errorf("%s is offered to add an endpoint, or not told why not", role)
			}
			if p := c.Get("/settings/webhooks/new"); p.Status != http.StatusForbidden {
				t.Errorf("%s: add form %d", role, p.Status)
			}
			page := c.Get(path)
			if page.Status != http.StatusOK || page.Doc.Find("main form").Length() != 0 || strings.Contains(page.Body, "s3cr3t") {
				t.Errorf("%s: endpoint page %d offers forms or shows the query", role, page.Status)
			}
			if !strings.Contains(page.Text("main"), "Only workspace owners and admins") || page.Doc.Find("#deliveries").Length() != 1 {
				t.Errorf("%s: the read-only page does not say why, or lacks the log", role)
			}
			token := csrfOf(page)
			for p, fields := range map[string]url.Values{
				"/settings/webhooks":    {"url": {recv.URL + "/mine"}, "events": {"key.revoked"}},
				path:                    {"url": {recv.URL + "/mine"}, "events": {"key.revoked"}},
				path + "/disable":       {},
				path + "/enable":        {},
				path + "/rotate-secret": {},
				path + "/delete":        {},
				path + "/test":          {},
			} {
				fields.Set("_csrf", token)
				if r := c.PostForm(p, fields); r.Status != http.StatusForbidden || r.Doc.Find("#secret").Length() != 0 {
					t.Errorf("%s: POST %s answered %d", role, p, r.Status)
				}
			}
		}
		app.Outbox.Wait()
		after := webhookByURL(t, app, hook)
		var n int64
		app.DB.Model(&models.WebhookEndpoint{}).Count(&n)
		if n != 1 || after.SecretHint != e.SecretHint || !after.Enabled || after.URL != hook || len(recv.received()) != 0 {
			t.Fatalf("a member who cannot manage changed or called the endpoint: %d endpoints, %+v, %d calls", n, after, len(recv.received()))
		}

		// Another workspace's endpoint does not exist here.
		other := signUp(t, app, "bob@example.com")
		if p := other.Get(path); p.Status != http.StatusNotFound {
			t.Errorf("another workspace's endpoint: %d", p.Status)
		}
		if p := other.PostForm(path+"/test", url.Values{"_csrf": {csrfOf(other.Get("/settings/webhooks"))}}); p.Status != http.StatusNotFound {
			t.Errorf("testing another workspace's endpoint: %d", p.Status)
		}
	})
}

// What Keysmith did to a failing endpoint shows, and the log pages.
func TestWebhookShowsHealthAndPagesTheLog(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	c := signUp(t, app, "ada@example.com")
	hook := "https://hooks.example.com/keysmith"
	addWebhook(t, c, map[string]string{"url": hook}, "key.revoked")
	e := webhookByURL(t, app, hook)
	since := app.Clock.Now().Add(-72 * time.Hour)
	reason := "Every call failed for 3 days; the last: the endpoint answered HTTP 503"
	app.DB.Model(&e).Updates(map[string]any{"enabled": false, "disabled_reason": reason, "failing_since": since})

	row := strings.Join(strings.Fields(c.Get("/settings/webhooks").Text("table.webhooks tbody tr")), " ")
	if !strings.Contains(row, "Switched off by Keysmith: "+reason) {
		t.Errorf("list row: %s", row)
	}
	path := fmt.Sprintf("/settings/webhooks/%d", e.ID)
	page := c.Get(path)
	if !strings.Contains(page.Text(".flash.error"), reason) || page.Text(".page-head .badge") != "Switched off by Keysmith" {
		t.Errorf("endpoint page: %q, badge %q", page.Text(".flash"), page.Text(".page-head .badge"))
	}
	on := c.Submit(page, `form[action$="/enable"]`, nil)
	if got := webhookByURL(t, app, hook); !got.Enabled || got.DisabledReason != "" || got.FailingSince != nil || on.Doc.Find(".flash.error").Length() != 0 {
		t.Errorf("switched on: %+v", got)
	}

	// 30 calls: two pages of 25, newest first.
	ws := e.WorkspaceID
	for i := range 30 {
		code := 200
		d := models.Delivery{Kind: "webhook", WorkspaceID: &ws, EndpointID: &e.ID, Recipient: hook, Subject: fmt.Sprintf("key.revoked-%02d", i),
			Status: "sent", Attempts: 1, ResponseCode: &code, NextAttemptAt: since, CreatedAt: since.Add(time.Duration(i) * time.Minute)}
		if err := app.DB.Create(&d).Error; err != nil {
			t.Fatal(err)
		}
	}
	page = c.Get(path)
	if n := page.Doc.Find("table.webhook-deliveries tbody tr").Length(); n != 25 || !strings.Contains(page.Text("table.webhook-deliveries tbody tr:first-child"), "key.revoked-29") {
		t.Fatalf("first page: %d rows, first %q", n, page.Text("table.webhook-deliveries tbody tr:first-child"))
	}
	older := page.Doc.Find(`.pager a[rel=next]`).AttrOr("href", "")
	if !strings.Contains(page.Text(".pager"), "Page 1 of 2") || older == "" {
		t.Fatalf("pager: %q", page.Text(".pager"))
	}
	page = c.Get(older)
	if n := page.Doc.Find("table.webhook-deliveries tbody tr").Length(); n != 5 || !strings.Contains(page.Text("table.webhook-deliveries tbody tr:last-child"), "key.revoked-00") || page.Doc.Find(`.pager a[rel=prev]`).Length() != 1 {
		t.Fatalf("second page: %d rows\n%s", n, page.Text("main"))
	}
	if p := c.Get(path + "?page=99"); !strings.Contains(p.Text(".pager"), "Page 2 of 2") {
		t.Errorf("a page past the end: %q", p.Text(".pager"))
	}
}
