package handlers_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"keysmith/keys"
	"keysmith/testutil"
)

// openAPIOps reads the OpenAPI document: for each "METHOD /path", the
// statuses it documents and the headers of each.
func openAPIOps(t *testing.T) map[string]map[string][]string {
	t.Helper()
	raw, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Responses map[string]struct {
				Headers map[string]any `json:"headers"`
			} `json:"responses"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string][]string{}
	for path, ops := range doc.Paths {
		for method, rawOp := range ops {
			if method == "parameters" {
				continue
			}
			var op struct {
				Responses map[string]struct {
					Ref     string         `json:"$ref"`
					Headers map[string]any `json:"headers"`
				} `json:"responses"`
			}
			if err := json.Unmarshal(rawOp, &op); err != nil {
				t.Fatal(err)
			}
			statuses := map[string][]string{}
			for code, r := range op.Responses {
				headers := r.Headers
				if r.Ref != "" {
					headers = doc.Components.Responses[strings.TrimPrefix(r.Ref, "#/components/responses/")].Headers
				}
				for h := range headers {
					statuses[code] = append(statuses[code], h)
				}
				if statuses[code] == nil {
					statuses[code] = []string{}
				}
			}
			out[strings.ToUpper(method)+" "+path] = statuses
		}
	}
	return out
}

// Every answer the API gives, to good requests and bad, has a status its
// operation documents, and carries the headers documented for it.
func TestAnswersMatchTheOpenAPIDocument(t *testing.T) {
	ops := openAPIOps(t)
	f := newAPIFixture(t, testutil.DatabaseURL(t, "sqlite"))
	admin := f.key(t, func(in *keys.CreateInput) { in.Permission = keys.PermAdmin })
	reader := f.key(t, nil)
	victim := f.key(t, nil)
	pinned := f.key(t, func(in *keys.CreateInput) { in.AllowedIPs = []string{"192.0.2.1"} })
	id := fmt.Sprint(victim.Key.ID)
	cases := []struct {
		op, method, path, key string
		body                  any
	}{
		{"GET /v1/auth/test", "GET", "/v1/auth/test", admin.Secret, nil},
		{"GET /v1/auth/test", "GET", "/v1/auth/test", "", nil},
		{"GET /v1/auth/test", "GET", "/v1/auth/test?api_key=" + admin.Secret, "", nil},
		{"GET /v1/auth/test", "POST", "/v1/auth/test", admin.Secret, nil},
		{"GET /v1/keys", "GET", "/v1/keys?per_page=500", admin.Secret, nil},
		{"GET /v1/keys", "GET", "/v1/keys", keys.Generate("ks", keys.Secret, keys.Live), nil},
		{"POST /v1/keys", "POST", "/v1/keys", admin.Secret, map[string]any{"name": "new", "permission": "read"}},
		{"POST /v1/keys", "POST", "/v1/keys", admin.Secret, map[string]any{"name": ""}},
		{"POST /v1/keys", "POST", "/v1/keys", reader.Secret, map[string]any{"name": "new", "permission": "read"}},
		{"POST /v1/keys", "POST", "/v1/keys", admin.Secret, "not an object"},
		{"GET /v1/keys/{id}", "GET", "/v1/keys/" + id, admin.Secret, nil},
		{"GET /v1/keys/{id}", "GET", "/v1/keys/999999", admin.Secret, nil},
		{"GET /v1/keys/{id}/usage", "GET", "/v1/keys/" + id + "/usage", admin.Secret, nil},
		{"GET /v1/keys/{id}/usage", "GET", "/v1/keys/" + id + "/usage?granularity=day&from=2026-02-01&to=2026-03-01", admin.Secret, nil},
		{"GET /v1/keys/{id}/usage", "GET", "/v1/keys/" + id + "/usage?granularity=minute", admin.Secret, nil},
		{"GET /v1/keys/{id}/usage", "GET", "/v1/keys/" + id + "/usage?from=2025-01-01", admin.Secret, nil},
		{"GET /v1/keys/{id}/usage", "GET", "/v1/keys/999999/usage", admin.Secret, nil},
		{"GET /v1/keys/{id}/usage", "GET", "/v1/keys/" + id + "/usage", pinned.Secret, nil},
		{"GET /v1/keys/{id}/usage", "GET", "/v1/keys/" + id + "/usage", "", nil},
		{"PATCH /v1/keys/{id}", "PATCH", "/v1/keys/" + id, admin.Secret, map[string]any{"allowed_ips": []string{"10.0.0.0/8", "::1", "127.0.0.1"}}},
		{"PATCH /v1/keys/{id}", "PATCH", "/v1/keys/" + id, admin.Secret, map[string]any{"allowed_ips": []string{"10.1.2.3/8"}}},
		{"PATCH /v1/keys/{id}", "PATCH", "/v1/keys/" + id, admin.Secret, map[string]any{"name": "renamed"}},
		{"PATCH /v1/keys/{id}", "PATCH", "/v1/keys/" + id, admin.Secret, map[string]any{"nope": 1}},
		{"POST /v1/keys/{id}/rotate", "POST", "/v1/keys/" + id + "/rotate", admin.Secret, map[string]any{"grace_period": "1h"}},
		{"POST /v1/keys/{id}/rotate", "POST", "/v1/keys/" + id + "/rotate", admin.Secret, map[string]any{"grace_period": "1h"}},
		{"DELETE /v1/keys/{id}", "DELETE", "/v1/keys/" + id, admin.Secret, nil},
		{"POST /v1/keys/verify", "POST", "/v1/keys/verify", serviceToken, map[string]any{"key": admin.Secret}},
		{"POST /v1/keys/verify", "POST", "/v1/keys/verify", "", map[string]any{"key": admin.Secret}},
		{"POST /v1/keys/verify", "POST", "/v1/keys/verify", serviceToken, map[string]any{"key": pinned.Secret, "ip": "192.0.2.1"}},
		{"POST /v1/keys/verify", "POST", "/v1/keys/verify", serviceToken, map[string]any{"key": pinned.Secret, "ip": "not an address"}},
	}
	for _, tc := range cases {
		statuses, ok := ops[tc.op]
		if !ok {
			t.Fatalf("%s is not in the document", tc.op)
		}
		var r apiResp
		if tc.body == nil {
			r = call(t, f.app, tc.method, tc.path, tc.key, nil)
		} else {
			r = call(t, f.app, tc.method, tc.path, tc.key, tc.body)
		}
		headers, documented := statuses[fmt.Sprint(r.Status)]
		if !documented {
			t.Errorf("%s %s answered %d, which %s does not document: %s", tc.method, tc.path, r.Status, tc.op, r.Raw)
			continue
		}
		for _, h := range headers {
			if h != "WWW-Authenticate" && r.Header.Get(h) == "" {
				t.Errorf("%s %s (%d) lacks the documented header %s", tc.method, tc.path, r.Status, h)
			}
		}
		if r.Status >= 400 {
			r.errorCode(t) // the error shape, with the request id
		}
	}
	if r := call(t, f.app, "GET", "/v1/keys?per_page=500", admin.Secret, nil); r.Body["per_page"] != 100.0 {
		t.Errorf("per_page=500 answered per_page %v, documented as taken as 100", r.Body["per_page"])
	}
}
