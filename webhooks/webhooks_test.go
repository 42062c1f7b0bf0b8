package webhooks_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"keysmith/accounts"
	"keysmith/config"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/outbox"
	"keysmith/testutil"
	"keysmith/validate"
	"keysmith/webhooks"
)

// receiver is a webhook endpoint: it records every call and answers with
// the next status of its script (200 once the script runs out).
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	calls  []received
	script []int
}

type received struct {
	header http.Header
	body   []byte
	event  webhooks.Event
}

func newReceiver(t *testing.T, script ...int) *receiver {
	r := &receiver{script: script}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var ev webhooks.Event
		_ = json.Unmarshal(body, &ev)
		r.mu.Lock()
		r.calls = append(r.calls, received{req.Header.Clone(), body, ev})
		status := 200
		if len(r.script) > 0 {
			status, r.script = r.script[0], r.script[1:]
		}
		r.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) got() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.calls...)
}

// verify checks a call's signature the way the Standard Webhooks spec
// says, with no code of Keysmith's.
func verify(t *testing.T, secret string, c received) {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(c.header.Get("webhook-id") + "." + c.header.Get("webhook-timestamp") + "."))
	mac.Write(c.body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if c.header.Get("webhook-signature") != want {
		t.Fatalf("signature %q, want %q", c.header.Get("webhook-signature"), want)
	}
	if c.header.Get("webhook-id") != c.event.ID || !strings.HasPrefix(c.event.ID, "msg_") {
		t.Fatalf("webhook-id %q, body id %q", c.header.Get("webhook-id"), c.event.ID)
	}
}

type fixture struct {
	app   *testutil.App
	ws    int64
	owner keys.Actor
}

func newFixture(t *testing.T, dbURL string, allowPrivate bool) *fixture {
	t.Helper()
	app := testutil.StartApp(t, dbURL, testutil.WithConfig(func(c *config.Config) { c.WebhookAllowPrivate = allowPrivate }))
	u, err := app.Accounts.SignUp(t.Context(), accounts.SignUpInput{Email: "owner@example.com", Name: "Owner", Password: "long enough pw"})
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := app.Accounts.Memberships(t.Context(), u.ID)
	return &fixture{app: app, ws: ms[0].WorkspaceID, owner: app.Keys.UserActor(u, models.RoleOwner, "192.0.2.1", "test")}
}

func (f *fixture) endpoint(t *testing.T, url string, events ...string) webhooks.Created {
	t.Helper()
	c, err := f.app.Webhooks.Create(t.Context(), f.ws, f.owner, webhooks.EndpointInput{URL: url, Events: events, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *fixture) pass(t *testing.T) {
	t.Helper()
	if err := f.app.Outbox.Send(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestKeyEventsAreSignedCallsWithoutSecrets(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newFixture(t, dbURL, true)
		rcv := newReceiver(t)
		ep := f.endpoint(t, rcv.URL, "key.created", "key.revoked")
		if !strings.HasPrefix(ep.Secret, "whsec_") || len(ep.Secret) < len("whsec_")+32 {
			t.Fatalf("secret %q", ep.Secret)
		}
		k, err := f.app.Keys.Create(t.Context(), f.ws, f.owner, keys.CreateInput{Name: "billing", Kind: keys.Secret, Env: keys.Live, Permission: keys.PermRead, ExpiresIn: "30"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.app.Keys.SetDisabled(t.Context(), f.ws, f.owner, k.Key.ID, true); err != nil && !errors.Is(err, keys.ErrAlreadyThat) {
			t.Fatal(err) // key.disabled: not wanted by this endpoint
		}
		if _, err := f.app.Keys.Revoke(t.Context(), f.ws, f.owner, k.Key.ID); err != nil {
			t.Fatal(err)
		}
		f.pass(t)
		f.pass(t)
		calls := rcv.got() // in any order: calls go out concurrently
		if len(calls) != 2 || calls[0].event.Type == calls[1].event.Type || !slices.Contains([]string{"key.created", "key.revoked"}, calls[0].event.Type) ||
			!slices.Contains([]string{"key.created", "key.revoked"}, calls[1].event.Type) {
			t.Fatalf("calls: %d %+v", len(calls), calls)
		}
		for _, c := range calls {
			verify(t, ep.Secret, c)
			if c.event.Data.Key == nil || c.event.Data.Key.ID != k.Key.ID || c.event.Data.Key.Hint != k.Key.Hint || c.event.Data.Actor != "owner@example.com" {
				t.Fatalf("data: %+v", c.event.Data)
			}
			for _, secret := range []string{k.Secret, k.Key.SecretHash, ep.Secret, strings.TrimPrefix(ep.Secret, "whsec_")} {
				if strings.Contains(string(c.body), secret) || strings.Contains(c.header.Get("webhook-signature"), secret) {
					t.Fatal("a call carries a secret")
				}
			}
		}
		var d models.Delivery
		f.app.DB.Where("kind = 'webhook'").Order("id").Take(&d)
		if d.Status != "sent" || d.ResponseCode == nil || *d.ResponseCode != 200 || strings.Contains(string(d.Payload), "key.created") {
			t.Fatalf("delivery: %s %v; the payload must be sealed", d.Status, d.ResponseCode)
		}
	})
}

func TestAFailedCallIsRetriedWithTheSameID(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newFixture(t, dbURL, true)
		rcv := newReceiver(t, 500)
		ep := f.endpoint(t, rcv.URL, "key.created")
		if _, err := f.app.Keys.Create(t.Context(), f.ws, f.owner, keys.CreateInput{Name: "x", Kind: keys.Secret, Env: keys.Live, Permission: keys.PermRead, ExpiresIn: "30"}); err != nil {
			t.Fatal(err)
		}
		f.pass(t)
		var d models.Delivery
		f.app.DB.Where("kind = 'webhook'").Take(&d)
		if d.Status != "pending" || d.Attempts != 1 || d.ResponseCode == nil || *d.ResponseCode != 500 {
			t.Fatalf("after a 500: %s, %d attempts, code %v", d.Status, d.Attempts, d.ResponseCode)
		}
		f.app.Clock.Advance(outbox.Backoff(1))
		f.pass(t)
		calls := rcv.got()
		if len(calls) != 2 || calls[0].event.ID != calls[1].event.ID {
			t.Fatalf("%d calls; a retry must keep its webhook-id", len(calls))
		}
		verify(t, ep.Secret, calls[1])
		if ts, _ := strconv.ParseInt(calls[1].header.Get("webhook-timestamp"), 10, 64); ts != f.app.Clock.Now().Unix() {
			t.Fatalf("the retry's timestamp %d is not its own time", ts)
		}
		f.app.DB.Take(&d, d.ID)
		if d.Status != "sent" || *d.ResponseCode != 200 {
			t.Fatalf("after the retry: %s %v", d.Status, *d.ResponseCode)
		}
	})
}

func TestAnEndpointFailingForThreeDaysIsSwitchedOff(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newFixture(t, dbURL, true)
		script := make([]int, 50)
		for i := range script {
			script[i] = 503
		}
		rcv := newReceiver(t, script...)
		ep := f.endpoint(t, rcv.URL, "key.created", "key.revoked")
		for day := 0; day <= 3; day++ {
			if _, err := f.app.Keys.Create(t.Context(), f.ws, f.owner, keys.CreateInput{Name: "k" + strconv.Itoa(day), Kind: keys.Secret, Env: keys.Live, Permission: keys.PermRead, ExpiresIn: "30"}); err != nil {
				t.Fatal(err)
			}
			f.pass(t)
			f.app.Clock.Advance(24 * time.Hour)
		}
		f.pass(t)
		e, err := f.app.Webhooks.Get(t.Context(), f.ws, ep.Endpoint.ID)
		if err != nil || e.Enabled || !strings.Contains(e.DisabledReason, "503") {
			t.Fatalf("after 3 days of 503s: enabled %v, reason %q (%v)", e.Enabled, e.DisabledReason, err)
		}
		f.app.Outbox.Wait()
		f.pass(t) // the mail to the admins
		found := false
		for _, m := range f.app.Mails() {
			found = found || m.To[0] == "owner@example.com" && m.Subject == "A webhook endpoint was switched off"
		}
		if !found {
			t.Fatal("the owner was not mailed")
		}
		var n int64
		f.app.DB.Model(&models.AuditEvent{}).Where("action = ?", webhooks.ActionAutoDisabled).Count(&n)
		if n != 1 {
			t.Fatalf("%d audit events for the switch-off", n)
		}
		// Switched off, it gets no new calls; switched on, it does again.
		before := len(rcv.got())
		if _, err := f.app.Keys.Create(t.Context(), f.ws, f.owner, keys.CreateInput{Name: "later", Kind: keys.Secret, Env: keys.Live, Permission: keys.PermRead, ExpiresIn: "30"}); err != nil {
			t.Fatal(err)
		}
		f.app.Clock.Advance(2 * time.Hour)
		f.pass(t)
		if len(rcv.got()) != before {
			t.Fatal("a switched-off endpoint was called")
		}
		if e, err = f.app.Webhooks.SetEnabled(t.Context(), f.ws, f.owner, e.ID, true); err != nil || e.DisabledReason != "" || e.FailingSince != nil {
			t.Fatalf("switched on again: %+v %v", e, err)
		}
	})
}

func TestRotatingTheSecretSignsWithTheNewOneOnly(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newFixture(t, dbURL, true)
		rcv := newReceiver(t)
		ep := f.endpoint(t, rcv.URL, "key.created")
		rotated, err := f.app.Webhooks.RotateSecret(t.Context(), f.ws, f.owner, ep.Endpoint.ID)
		if err != nil || rotated.Secret == ep.Secret || rotated.Endpoint.SecretHint == ep.Endpoint.SecretHint {
			t.Fatalf("rotate: %v", err)
		}
		if err := f.app.Webhooks.SendTest(t.Context(), f.ws, f.owner, ep.Endpoint.ID); err != nil {
			t.Fatal(err)
		}
		f.app.Outbox.Wait()
		calls := rcv.got()
		if len(calls) != 1 || calls[0].event.Type != webhooks.TestEvent {
			t.Fatalf("calls %d", len(calls))
		}
		verify(t, rotated.Secret, calls[0])
		if sig, _ := webhooks.Sign(ep.Secret, calls[0].event.ID, 0, nil); sig == calls[0].header.Get("webhook-signature") {
			t.Fatal("signed with the old secret")
		}
	})
}

func TestTheSSRFGuard(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newFixture(t, dbURL, false)
		rcv := newReceiver(t)
		for _, u := range []string{rcv.URL, "http://localhost:9/x", "http://10.0.0.1/x", "http://[::1]:9/x", "http://169.254.169.254/latest", "ftp://example.com/x"} {
			_, err := f.app.Webhooks.Create(t.Context(), f.ws, f.owner, webhooks.EndpointInput{URL: u, Events: []string{"key.created"}, Enabled: true})
			var ve validate.Errors
			if !errors.As(err, &ve) || ve["url"] == "" {
				t.Fatalf("%s was saved: %v", u, err)
			}
		}
		// A public name saved, which later resolves to a private address
		// (or an address saved before the guard was on): refused when the
		// call connects.
		ep := f.endpoint(t, "https://hooks.example.com/x", "key.created")
		f.app.DB.Model(&models.WebhookEndpoint{}).Where("id = ?", ep.Endpoint.ID).Update("url", rcv.URL)
		if _, err := f.app.Keys.Create(t.Context(), f.ws, f.owner, keys.CreateInput{Name: "x", Kind: keys.Secret, Env: keys.Live, Permission: keys.PermRead, ExpiresIn: "30"}); err != nil {
			t.Fatal(err)
		}
		f.pass(t)
		if len(rcv.got()) != 0 {
			t.Fatal("the guard let a call to a loopback address through")
		}
		var d models.Delivery
		f.app.DB.Where("kind = 'webhook'").Take(&d)
		if d.Status != "pending" || !strings.Contains(d.LastError, "private, loopback or link-local") {
			t.Fatalf("delivery %s, error %q", d.Status, d.LastError)
		}
	})
}

func TestExpiryEventsComeOncePerStage(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newFixture(t, dbURL, true)
		rcv := newReceiver(t)
		f.endpoint(t, rcv.URL, "key.expiring", "key.expired")
		k, err := f.app.Keys.Create(t.Context(), f.ws, f.owner, keys.CreateInput{Name: "soon", Kind: keys.Secret, Env: keys.Live, Permission: keys.PermRead, ExpiresIn: "10"})
		if err != nil {
			t.Fatal(err)
		}
		f.app.Clock.Advance(3 * 24 * time.Hour) // created 10 days before expiry: the 7-day reminder comes first
		for range 3 {
			if err := f.app.Reminders.Run(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		f.app.DB.Model(&models.APIKey{}).Where("id = ?", k.Key.ID).Update("reminder_due_at", f.app.Clock.Now()) // a pass that stopped halfway plans again
		if err := f.app.Reminders.Run(t.Context()); err != nil {
			t.Fatal(err)
		}
		calls := rcv.got()
		if len(calls) != 1 || calls[0].event.Type != "key.expiring" || calls[0].event.Data.Stage != "7d" || calls[0].event.Data.Key.ID != k.Key.ID {
			t.Fatalf("calls: %+v", calls)
		}
		f.app.Clock.Advance(6 * 24 * time.Hour) // the 1-day reminder
		for range 2 {
			if err := f.app.Reminders.Run(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		f.app.Clock.Advance(2 * 24 * time.Hour) // expired
		for range 2 {
			if err := f.app.Reminders.Run(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		var got []string
		for _, c := range rcv.got() {
			got = append(got, c.event.Type+" "+c.event.Data.Stage)
		}
		if strings.Join(got, ", ") != "key.expiring 7d, key.expiring 1d, key.expired " {
			t.Fatalf("calls: %q", got)
		}
	})
}

func TestOnlyAdminsAndKeysWithKeysWriteManageEndpoints(t *testing.T) {
	f := newFixture(t, testutil.DatabaseURL(t, "sqlite"), true)
	in := webhooks.EndpointInput{URL: "https://hooks.example.com/k", Events: []string{"key.created"}, Enabled: true}
	for name, a := range map[string]keys.Actor{
		"a viewer":                   {UserID: 9, Label: "v@example.com"},
		"a key without keys:write":   {KeyID: 9, Held: []string{"keys:read"}},
		"a temporary token of a key": {KeyID: 9, Held: []string{"*"}, Token: "jti"},
		"an app without keys:write":  {ClientID: "ksapp_x", UserID: 9, Held: []string{"files:read"}},
	} {
		if _, err := f.app.Webhooks.Create(t.Context(), f.ws, a, in); !errors.Is(err, webhooks.ErrForbidden) {
			t.Errorf("%s created an endpoint: %v", name, err)
		}
	}
	k, err := f.app.Keys.Create(t.Context(), f.ws, f.owner, keys.CreateInput{Name: "ci", Kind: keys.Secret, Env: keys.Live, Permission: keys.PermCustom, Scopes: []string{"keys:write"}, ExpiresIn: "30"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.app.Webhooks.Create(t.Context(), f.ws, keys.Actor{KeyID: k.Key.ID, Held: []string{"keys:write"}}, in); err != nil {
		t.Errorf("a key with keys:write: %v", err)
	}
}

// One planner batch holds keys of several workspaces: each workspace's
// endpoints hear of its own keys only, and an endpoint that did not ask
// for expiry events hears nothing.
func TestExpiryEventsOfOneBatchGoToEachWorkspacesOwnEndpoints(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newFixture(t, dbURL, true)
		other := &fixture{app: f.app}
		u, err := f.app.Accounts.SignUp(t.Context(), accounts.SignUpInput{Email: "other@example.com", Name: "Other", Password: "long enough pw"})
		if err != nil {
			t.Fatal(err)
		}
		ms, _ := f.app.Accounts.Memberships(t.Context(), u.ID)
		other.ws, other.owner = ms[0].WorkspaceID, f.app.Keys.UserActor(u, models.RoleOwner, "192.0.2.2", "test")

		mine, theirs, deaf := newReceiver(t), newReceiver(t), newReceiver(t)
		f.endpoint(t, mine.URL, "key.expiring")
		f.endpoint(t, deaf.URL, "key.created")
		other.endpoint(t, theirs.URL, "key.expiring", "key.expired")
		made := map[int64][]int64{}
		for _, fx := range []*fixture{f, other, f} {
			k, err := f.app.Keys.Create(t.Context(), fx.ws, fx.owner, keys.CreateInput{Name: "soon", Kind: keys.Secret, Env: keys.Live, Permission: keys.PermRead, ExpiresIn: "30"})
			if err != nil {
				t.Fatal(err)
			}
			made[fx.ws] = append(made[fx.ws], k.Key.ID)
		}
		f.pass(t) // the deaf endpoint's key.created calls
		f.app.Clock.Advance(16 * 24 * time.Hour)
		if err := f.app.Reminders.Run(t.Context()); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			r    *receiver
			want []int64
		}{{mine, made[f.ws]}, {theirs, made[other.ws]}} {
			var got []int64
			for _, call := range c.r.got() {
				if call.event.Type != "key.expiring" || call.event.Data.Stage != "14d" {
					t.Fatalf("call %+v", call.event)
				}
				got = append(got, call.event.Data.Key.ID)
			}
			slices.Sort(got)
			if !slices.Equal(got, c.want) {
				t.Fatalf("keys %v, want %v", got, c.want)
			}
		}
		for _, call := range deaf.got() {
			if call.event.Type != "key.created" {
				t.Fatalf("an endpoint without expiry events got %s", call.event.Type)
			}
		}
	})
}
