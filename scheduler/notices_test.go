package scheduler_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"keysmith/accounts"
	"keysmith/config"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
	"keysmith/webhooks"
)

// hooks is a webhook receiver that records the events it gets.
type hooks struct {
	mu     sync.Mutex
	events []webhooks.Event
}

func (h *hooks) got() []webhooks.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]webhooks.Event(nil), h.events...)
}

func receive(t *testing.T) (*hooks, string) {
	h := &hooks{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev webhooks.Event
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &ev)
		h.mu.Lock()
		h.events = append(h.events, ev)
		h.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return h, srv.URL
}

func TestALeakedKeysOwnersAreToldByMailAndWebhook(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL, testutil.WithConfig(func(c *config.Config) { c.WebhookAllowPrivate = true }))
		owner, err := app.Accounts.SignUp(t.Context(), accounts.SignUpInput{Email: "owner@example.com", Name: "Owner", Password: "long enough pw"})
		if err != nil {
			t.Fatal(err)
		}
		ms, _ := app.Accounts.Memberships(t.Context(), owner.ID)
		ws, actor := ms[0].WorkspaceID, app.Keys.UserActor(owner, models.RoleOwner, "192.0.2.1", "test")
		rcv, url := receive(t)
		if _, err := app.Webhooks.Create(t.Context(), ws, actor, webhooks.EndpointInput{URL: url, Events: []string{"key.leaked"}, Enabled: true}); err != nil {
			t.Fatal(err)
		}
		k, err := app.Keys.Create(t.Context(), ws, actor, keys.CreateInput{Name: "deploy bot", Kind: keys.Secret, Env: keys.Live, Permission: keys.PermRead, ExpiresIn: "30"})
		if err != nil {
			t.Fatal(err)
		}
		res, err := app.Keys.RevokeLeaked(t.Context(), []keys.LeakReport{{Token: k.Secret, Type: "keysmith_api_key", URL: "https://github.com/acme/app/blob/main/.env", Source: "commit"}})
		if err != nil || len(res) != 1 || res[0].Label != "true_positive" {
			t.Fatalf("report: %+v %v", res, err)
		}
		app.Outbox.Wait()
		if err := app.Outbox.Send(t.Context()); err != nil {
			t.Fatal(err)
		}
		var mail string
		for _, m := range app.Mails() {
			if m.To[0] == "owner@example.com" && strings.Contains(m.Subject, "was found in public and revoked") {
				mail = m.Text
			}
		}
		if !strings.Contains(mail, "https://github.com/acme/app/blob/main/.env") || strings.Contains(mail, k.Secret) {
			t.Fatalf("the owner's mail:\n%s", mail)
		}
		evs := rcv.got()
		if len(evs) != 1 || evs[0].Type != "key.leaked" || evs[0].Data.Key.ID != k.Key.ID || !strings.Contains(evs[0].Data.Detail, "github.com/acme/app") {
			t.Fatalf("webhooks: %+v", evs)
		}
	})
}

func TestTheInactivityWarningIsMailedAndSentAsAWebhook(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL, testutil.WithConfig(func(c *config.Config) { c.WebhookAllowPrivate = true }))
		owner, err := app.Accounts.SignUp(t.Context(), accounts.SignUpInput{Email: "owner@example.com", Name: "Owner", Password: "long enough pw"})
		if err != nil {
			t.Fatal(err)
		}
		ms, _ := app.Accounts.Memberships(t.Context(), owner.ID)
		ws, actor := ms[0].WorkspaceID, app.Keys.UserActor(owner, models.RoleOwner, "192.0.2.1", "test")
		rcv, url := receive(t)
		if _, err := app.Webhooks.Create(t.Context(), ws, actor, webhooks.EndpointInput{URL: url, Events: []string{"key.expiring", "key.disabled"}, Enabled: true}); err != nil {
			t.Fatal(err)
		}
		k, err := app.Keys.Create(t.Context(), ws, actor, keys.CreateInput{Name: "idle", Kind: keys.Secret, Env: keys.Live, Permission: keys.PermRead, ExpiresIn: "never"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := app.Keys.SetInactivityPolicy(t.Context(), ws, actor, keys.InactivityDisable, 30); err != nil {
			t.Fatal(err)
		}
		for range 40 { // a pass a day for 40 days
			app.Clock.Advance(24 * time.Hour)
			if err := app.Inactivity.Run(t.Context()); err != nil {
				t.Fatal(err)
			}
			app.Outbox.Wait()
			if err := app.Outbox.Send(t.Context()); err != nil { // the webhooks, queued
				t.Fatal(err)
			}
		}
		var subjects []string
		for _, m := range app.Mails() {
			subjects = append(subjects, m.Subject)
		}
		all := strings.Join(subjects, " | ")
		if !strings.Contains(all, "Your API key idle is unused and will be switched off") || !strings.Contains(all, "Your unused API key idle was disabled") {
			t.Fatalf("mails: %s", all)
		}
		var types []string
		for _, ev := range rcv.got() {
			types = append(types, ev.Type+" "+ev.Data.Stage)
		}
		if strings.Join(types, ", ") != "key.expiring inactive, key.disabled " {
			t.Fatalf("webhooks: %q", types)
		}
		if got, _ := app.Keys.Get(t.Context(), ws, k.Key.ID); got.DisabledAt == nil {
			t.Fatal("the key was not disabled")
		}
	})
}
