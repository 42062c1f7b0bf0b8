package handlers_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"keysmith/accounts"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
)

func TestWebhookEndpointsAPI(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newAPIFixture(t, dbURL, allowPrivate)
		ops := openAPIOps(t)
		writer := f.key(t, func(in *keys.CreateInput) {
			in.Name, in.Permission, in.Scopes = "provisioner", keys.PermCustom, []string{"keys:*"}
		})
		reader := f.key(t, func(in *keys.CreateInput) { in.Permission = keys.PermWrite }) // keys:read, not keys:write
		files := f.key(t, func(in *keys.CreateInput) { in.Permission, in.Scopes = keys.PermCustom, []string{"files:read"} })
		testKey := f.key(t, func(in *keys.CreateInput) {
			in.Env, in.Permission, in.Scopes = keys.Test, keys.PermCustom, []string{"keys:*"}
		})

		// documented checks the answer against the OpenAPI document.
		documented := func(op string, r apiResp) {
			t.Helper()
			if _, ok := ops[op][fmt.Sprint(r.Status)]; !ok {
				t.Errorf("%s answered %d, which the OpenAPI document does not list: %s", op, r.Status, r.Raw)
			}
			if r.Status >= 400 {
				r.errorCode(t)
			}
		}

		list := call(t, f.app, "GET", "/v1/webhook-endpoints", reader.Secret, nil)
		documented("GET /v1/webhook-endpoints", list)
		if list.Status != 200 || list.Raw != `{"data":[]}`+"\n" {
			t.Fatalf("empty list: %d %q", list.Status, list.Raw)
		}

		recv := newReceiver(t)
		hook := recv.URL + "/ci"
		r := call(t, f.app, "POST", "/v1/webhook-endpoints", writer.Secret, map[string]any{
			"url": hook, "description": "CI", "events": []string{"key.created", "key.revoked, key.leaked"},
		})
		documented("POST /v1/webhook-endpoints", r)
		if r.Status != 201 || r.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("create: %d %s", r.Status, r.Raw)
		}
		secret, _ := r.Body["secret"].(string)
		if !strings.HasPrefix(secret, "whsec_") || r.Body["url"] != hook || r.Body["description"] != "CI" || r.Body["enabled"] != true ||
			fmt.Sprint(r.Body["events"]) != "[key.created key.revoked key.leaked]" || !strings.HasPrefix(secret, strings.TrimSuffix(r.Body["secret_hint"].(string), "…")) {
			t.Fatalf("created: %s", r.Raw)
		}
		for _, field := range []string{"id", "disabled_reason", "failing_since", "last_delivery_at", "created_at", "updated_at"} {
			if _, ok := r.Body[field]; !ok {
				t.Errorf("the endpoint lacks %q: %s", field, r.Raw)
			}
		}
		id := int64(r.Body["id"].(float64))
		var audited models.AuditEvent
		f.app.DB.Where("action = 'webhook.created'").Take(&audited)
		if audited.ActorKeyID == nil || *audited.ActorKeyID != writer.Key.ID {
			t.Errorf("the audit event does not name the key: %+v", audited)
		}

		// Listing never shows the secret, to any key.
		list = call(t, f.app, "GET", "/v1/webhook-endpoints", reader.Secret, nil)
		data, _ := list.Body["data"].([]any)
		if list.Status != 200 || len(data) != 1 || strings.Contains(list.Raw, secret) || strings.Contains(list.Raw, `"secret"`) {
			t.Fatalf("list: %d %s", list.Status, list.Raw)
		}
		if got := data[0].(map[string]any); got["url"] != hook || got["id"] != float64(id) {
			t.Fatalf("listed %v", got)
		}
		// Endpoints belong to the workspace, whatever the key's environment.
		if l := call(t, f.app, "GET", "/v1/webhook-endpoints", testKey.Secret, nil); !strings.Contains(l.Raw, hook) {
			t.Errorf("a test key's list: %s", l.Raw)
		}

		// Creating a key through the API tells the endpoint, signed.
		created := call(t, f.app, "POST", "/v1/keys", writer.Secret, map[string]any{"name": "uploader", "scopes": []string{"keys:read"}, "expires_in": "30"})
		if created.Status != 201 {
			t.Fatalf("create key: %d %s", created.Status, created.Raw)
		}
		if err := f.app.Outbox.Send(t.Context()); err != nil {
			t.Fatal(err)
		}
		calls := recv.received()
		if len(calls) != 1 {
			t.Fatalf("%d calls, want 1 key.created", len(calls))
		}
		checkSignature(t, calls[0], secret)
		var ev struct {
			Type string `json:"type"`
			Data struct {
				Key struct {
					ID   int64  `json:"id"`
					Name string `json:"name"`
					Hint string `json:"hint"`
				} `json:"key"`
				Actor string `json:"actor"`
			} `json:"data"`
		}
		if err := json.Unmarshal(calls[0].Body, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Type != "key.created" || ev.Data.Key.Name != "uploader" || ev.Data.Key.Hint == "" || ev.Data.Key.ID != int64(created.Body["id"].(float64)) {
			t.Errorf("event %s", calls[0].Body)
		}
		if strings.Contains(string(calls[0].Body), created.Body["secret"].(string)) {
			t.Fatal("the event carries the key's secret")
		}

		// Scopes: listing needs keys:read, adding and deleting keys:write.
		for _, tc := range []struct {
			op, method, path, key string
			body                  any
			status                int
			code                  string
		}{
			{"POST /v1/webhook-endpoints", "POST", "/v1/webhook-endpoints", reader.Secret, map[string]any{"url": hook, "events": []string{"key.revoked"}}, 403, "insufficient_scope"},
			{"DELETE /v1/webhook-endpoints/{id}", "DELETE", fmt.Sprintf("/v1/webhook-endpoints/%d", id), reader.Secret, nil, 403, "insufficient_scope"},
			{"GET /v1/webhook-endpoints", "GET", "/v1/webhook-endpoints", files.Secret, nil, 403, "insufficient_scope"},
			{"GET /v1/webhook-endpoints", "GET", "/v1/webhook-endpoints", "", nil, 401, "missing_api_key"},
			{"POST /v1/webhook-endpoints", "POST", "/v1/webhook-endpoints", writer.Secret, map[string]any{"url": "ftp://ci.example.com", "events": []string{"key.nope"}, "description": strings.Repeat("d", 201)}, 422, "validation_failed"},
			{"POST /v1/webhook-endpoints", "POST", "/v1/webhook-endpoints", writer.Secret, nil, 422, "validation_failed"},
			{"POST /v1/webhook-endpoints", "POST", "/v1/webhook-endpoints", writer.Secret, "not an object", 400, "invalid_body"},
			{"POST /v1/webhook-endpoints", "POST", "/v1/webhook-endpoints", writer.Secret, map[string]any{"url": hook, "events": "key.revoked"}, 400, "invalid_body"},
			{"DELETE /v1/webhook-endpoints/{id}", "DELETE", "/v1/webhook-endpoints/999999", writer.Secret, nil, 404, "resource_missing"},
			{"GET /v1/webhook-endpoints", "PUT", "/v1/webhook-endpoints", writer.Secret, nil, 405, ""},
		} {
			r := call(t, f.app, tc.method, tc.path, tc.key, tc.body)
			documented(tc.op, r)
			if r.Status != tc.status {
				t.Errorf("%s %s: %d, want %d: %s", tc.method, tc.path, r.Status, tc.status, r.Raw)
				continue
			}
			if tc.code != "" {
				if _, code := r.errorCode(t); code != tc.code {
					t.Errorf("%s %s: code %s, want %s", tc.method, tc.path, code, tc.code)
				}
			}
		}
		bad := call(t, f.app, "POST", "/v1/webhook-endpoints", writer.Secret, map[string]any{"url": "ftp://ci.example.com", "events": []string{"key.nope"}, "description": strings.Repeat("d", 201)})
		msg := bad.Body["error"].(map[string]any)["message"].(string)
		for _, want := range []string{"url: ", "description: ", "events: Unknown event key.nope"} {
			if !strings.Contains(msg, want) {
				t.Errorf("422 message lacks %q: %s", want, msg)
			}
		}

		// enabled: false adds it switched off.
		off := call(t, f.app, "POST", "/v1/webhook-endpoints", writer.Secret, map[string]any{"url": recv.URL + "/off", "events": []string{"member.joined"}, "enabled": false})
		if off.Status != 201 || off.Body["enabled"] != false {
			t.Fatalf("enabled false: %d %s", off.Status, off.Raw)
		}

		// Another workspace's endpoint is missing here.
		u, err := f.app.Accounts.SignUp(t.Context(), accounts.SignUpInput{Email: "other@example.com", Name: "Other", Password: "long enough pw"})
		if err != nil {
			t.Fatal(err)
		}
		ms, _ := f.app.Accounts.Memberships(t.Context(), u.ID)
		outsider, err := f.app.Keys.Create(t.Context(), ms[0].WorkspaceID, f.app.Keys.UserActor(u, models.RoleOwner, "", ""),
			keys.CreateInput{Name: "other", Kind: keys.Secret, Env: keys.Live, Permission: keys.PermAdmin, ExpiresIn: "30"})
		if err != nil {
			t.Fatal(err)
		}
		if r := call(t, f.app, "DELETE", fmt.Sprintf("/v1/webhook-endpoints/%d", id), outsider.Secret, nil); r.Status != 404 {
			t.Errorf("deleting another workspace's endpoint: %d %s", r.Status, r.Raw)
		}
		if r := call(t, f.app, "GET", "/v1/webhook-endpoints", outsider.Secret, nil); r.Raw != `{"data":[]}`+"\n" {
			t.Errorf("another workspace lists %s", r.Raw)
		}

		del := call(t, f.app, "DELETE", fmt.Sprintf("/v1/webhook-endpoints/%d", id), writer.Secret, nil)
		documented("DELETE /v1/webhook-endpoints/{id}", del)
		if del.Status != 200 || del.Body["id"] != float64(id) || del.Body["url"] != hook || strings.Contains(del.Raw, `"secret"`) {
			t.Fatalf("delete: %d %s", del.Status, del.Raw)
		}
		if r := call(t, f.app, "DELETE", fmt.Sprintf("/v1/webhook-endpoints/%d", id), writer.Secret, nil); r.Status != 404 {
			t.Errorf("deleting twice: %d", r.Status)
		}
		list = call(t, f.app, "GET", "/v1/webhook-endpoints", writer.Secret, nil)
		if data, _ := list.Body["data"].([]any); len(data) != 1 || strings.Contains(list.Raw, hook+`"`) {
			t.Errorf("after delete: %s", list.Raw)
		}

		// A deleted endpoint hears nothing more.
		call(t, f.app, "DELETE", fmt.Sprintf("/v1/keys/%d", int64(created.Body["id"].(float64))), writer.Secret, nil)
		if err := f.app.Outbox.Send(t.Context()); err != nil {
			t.Fatal(err)
		}
		if n := len(recv.received()); n != 1 {
			t.Errorf("%d calls after the delete, want still 1", n)
		}
	})
}
