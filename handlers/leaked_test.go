package handlers_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"gorm.io/gorm"

	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
)

// reportLeaks posts a body to POST /v1/keys/leaked as a scanner would and
// reads the answer: the verdicts on 200, the error otherwise.
func reportLeaks(t *testing.T, app *testutil.App, token, body string) (apiResp, []map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, app.URL("/v1/keys/leaked"), strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/test")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := apiResp{Status: res.StatusCode, Header: res.Header, Raw: string(raw)}
	if res.StatusCode != http.StatusOK {
		if err := json.Unmarshal(raw, &out.Body); err != nil {
			t.Fatalf("answered non-JSON (%d): %s", res.StatusCode, raw)
		}
		return out, nil
	}
	var verdicts []map[string]any
	if err := json.Unmarshal(raw, &verdicts); err != nil {
		t.Fatalf("answered 200 with no array of verdicts: %s", raw)
	}
	return out, verdicts
}

// githubPayload is the body GitHub's secret-scanning partner program sends:
// one object per match.
func githubPayload(tokens ...string) string {
	type match struct {
		Token  string `json:"token"`
		Type   string `json:"type"`
		URL    string `json:"url"`
		Source string `json:"source"`
	}
	var ms []match
	for i, tok := range tokens {
		ms = append(ms, match{Token: tok, Type: "keysmith_api_key",
			URL:    fmt.Sprintf("https://github.com/octocat/Hello-World/blob/12345600b9cbe38a219f39a9941c9319b600c002/foo/bar%d.txt", i),
			Source: "content"})
	}
	b, _ := json.Marshal(ms)
	return string(b)
}

// hashLookups counts the statements that look keys up by hash.
func hashLookups(t *testing.T, db *gorm.DB) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	count := func(tx *gorm.DB) {
		if strings.Contains(tx.Statement.SQL.String(), "secret_hash") {
			n.Add(1)
		}
	}
	cb := db.Callback()
	for _, err := range []error{
		cb.Query().After("gorm:query").Register("test:hash_lookups_query", count),
		cb.Row().After("gorm:row").Register("test:hash_lookups_row", count),
		cb.Raw().After("gorm:raw").Register("test:hash_lookups_raw", count),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return &n
}

// GitHub's sample payload, carrying one of our active keys, a well-formed
// key that is no one's, a key with a broken checksum and a key revoked
// before: the active key is revoked at once (the API refuses it next, even
// though it was cached), audited with where it leaked, and each report is
// labelled in the order sent.
func TestLeakedKeysFromGitHub(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newAPIFixture(t, dbURL)
		leaked := f.key(t, nil)
		revoked := f.key(t, nil)
		if _, err := f.app.Keys.Revoke(t.Context(), f.ws, f.actor, revoked.Key.ID); err != nil {
			t.Fatal(err)
		}
		if r := call(t, f.app, "GET", "/v1/auth/test", leaked.Secret, nil); r.Status != 200 {
			t.Fatalf("the key does not work before it leaks: %d %s", r.Status, r.Raw)
		}
		unknown := keys.Generate("ks", keys.Secret, keys.Live)
		malformed := otherLast(keys.Generate("ks", keys.Publishable, keys.Test))
		tokens := []string{leaked.Secret, unknown, malformed, revoked.Secret}

		r, verdicts := reportLeaks(t, f.app, serviceToken, githubPayload(tokens...))
		if r.Status != 200 || r.Header.Get("X-Request-Id") == "" {
			t.Fatalf("report: %d %s", r.Status, r.Raw)
		}
		labels := []string{"true_positive", "false_positive", "false_positive", "true_positive"}
		if len(verdicts) != len(tokens) {
			t.Fatalf("%d verdicts for %d reports: %s", len(verdicts), len(tokens), r.Raw)
		}
		for i, v := range verdicts {
			if v["token_raw"] != tokens[i] || v["token_type"] != "keysmith_api_key" || v["label"] != labels[i] || len(v) != 3 {
				t.Errorf("verdict %d: %v, want %s", i, v, labels[i])
			}
		}

		if r := call(t, f.app, "GET", "/v1/auth/test", leaked.Secret, nil); r.Status != 401 {
			t.Fatalf("the leaked key still works: %d %s", r.Status, r.Raw)
		} else if _, code := r.errorCode(t); code != "revoked_api_key" {
			t.Errorf("the leaked key is refused with %s", code)
		}
		if r := call(t, f.app, "POST", "/v1/keys/verify", serviceToken, map[string]any{"key": leaked.Secret}); r.Body["code"] != "REVOKED" {
			t.Errorf("verify says %v", r.Body["code"])
		}

		page, err := f.app.Keys.Audit(t.Context(), f.ws, keys.AuditFilter{Action: keys.ActionLeaked}, keys.Position{}, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Events) != 1 {
			t.Fatalf("%d key.leaked events, want 1 (the revoked key is not audited again): %+v", len(page.Events), page.Events)
		}
		ev := page.Events[0]
		if *ev.KeyID != leaked.Key.ID || ev.ActorLabel != "secret scanning (content)" ||
			!strings.Contains(ev.Detail, "https://github.com/octocat/Hello-World/blob/12345600b9cbe38a219f39a9941c9319b600c002/foo/bar0.txt") {
			t.Errorf("audit event %+v", ev)
		}

		// The same report again, as a retrying scanner sends it: the same
		// verdicts, nothing revoked or audited twice.
		if _, again := reportLeaks(t, f.app, serviceToken, githubPayload(tokens...)); fmt.Sprint(again) != fmt.Sprint(verdicts) {
			t.Errorf("the same report answered %v, then %v", verdicts, again)
		}
		if page, _ := f.app.Keys.Audit(t.Context(), f.ws, keys.AuditFilter{Action: keys.ActionLeaked}, keys.Position{}, 10); len(page.Events) != 1 {
			t.Errorf("%d key.leaked events after the retry", len(page.Events))
		}

		// Tokens reach neither the logs nor the audit log.
		logs := f.app.Logs.String()
		if !strings.Contains(logs, "path=/v1/keys/leaked") {
			t.Fatalf("no request logs:\n%s", logs)
		}
		var audit []models.AuditEvent
		f.app.DB.Find(&audit)
		for _, tok := range tokens {
			body := tok[len("ks_sk_live_"):]
			if strings.Contains(logs, body) {
				t.Errorf("a reported token reached the logs")
			}
			for _, ev := range audit {
				if strings.Contains(ev.Detail+ev.KeyLabel+ev.ActorLabel, body) {
					t.Errorf("a reported token reached the audit log: %+v", ev)
				}
			}
		}
	})
}

// Tokens that fail the key format or its checksum are answered without a
// lookup: the only statements that read keys by hash are the well-formed
// tokens' one.
func TestLeakedKeysCheckChecksumsFirst(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newAPIFixture(t, dbURL)
		k := f.key(t, nil)
		var garbage []string
		for i := range 200 {
			tok := otherLast(keys.Generate("ks", keys.Secret, keys.Live))
			switch i % 4 {
			case 1:
				tok = k.Secret[:len(k.Secret)-1]
			case 2:
				tok = strings.Replace(k.Secret, "ks_", "acme_", 1)
			case 3:
				tok = "not a key at all"
			}
			garbage = append(garbage, tok)
		}
		lookups := hashLookups(t, f.app.DB)
		r, verdicts := reportLeaks(t, f.app, serviceToken, githubPayload(garbage...))
		if r.Status != 200 || len(verdicts) != len(garbage) {
			t.Fatalf("report: %d %s", r.Status, r.Raw)
		}
		for i, v := range verdicts {
			if v["label"] != "false_positive" {
				t.Fatalf("garbage %d: %v", i, v)
			}
		}
		if n := lookups.Load(); n != 0 {
			t.Errorf("%d lookups by hash for %d malformed tokens, want none", n, len(garbage))
		}
		_, verdicts = reportLeaks(t, f.app, serviceToken, githubPayload(append(garbage, k.Secret)...))
		if n := lookups.Load(); n != 1 || verdicts[len(garbage)]["label"] != "true_positive" {
			t.Errorf("%d lookups by hash with one well-formed token, want 1; verdict %v", n, verdicts[len(garbage)])
		}
	})
}

// Only the operator's scanner may report, with a body in the partner
// program's shape; every refusal is a SPEC §6 error the OpenAPI document
// lists, and revokes nothing.
func TestLeakedKeysRefusals(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := newAPIFixture(t, dbURL)
		k := f.key(t, nil)
		good := githubPayload(k.Secret)
		tooMany := githubPayload(make([]string, keys.MaxLeakReports+1)...)
		tooMany = strings.ReplaceAll(tooMany, `"token":""`, `"token":"x"`)
		ops := openAPIOps(t)["POST /v1/keys/leaked"]
		cases := []struct {
			name, token, contentType, body string
			status                         int
			code                           string
		}{
			{"no token", "", "application/json", good, 401, "invalid_service_token"},
			{"wrong token", strings.Repeat("x", len(serviceToken)), "application/json", good, 401, "invalid_service_token"},
			{"an API key", k.Secret, "application/json", good, 401, "invalid_service_token"},
			{"not JSON", serviceToken, "application/json", "[{token:", 400, "invalid_body"},
			{"a form", serviceToken, "application/x-www-form-urlencoded", "token=" + k.Secret, 400, "invalid_body"},
			{"an object", serviceToken, "application/json", `{"token":"` + k.Secret + `"}`, 400, "invalid_body"},
			{"empty", serviceToken, "application/json", "", 400, "invalid_body"},
			{"null", serviceToken, "application/json", "null", 400, "invalid_body"},
			{"no token field", serviceToken, "application/json", `[{"key":"` + k.Secret + `"}]`, 400, "invalid_body"},
			{"token not a string", serviceToken, "application/json", `[{"token":42}]`, 400, "invalid_body"},
			{"too many", serviceToken, "application/json", tooMany, 413, "too_many_reports"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				req, _ := http.NewRequest(http.MethodPost, f.app.URL("/v1/keys/leaked"), strings.NewReader(tc.body))
				if tc.token != "" {
					req.Header.Set("Authorization", "Bearer "+tc.token)
				}
				req.Header.Set("Content-Type", tc.contentType)
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := io.ReadAll(res.Body)
				res.Body.Close()
				r := apiResp{Status: res.StatusCode, Header: res.Header, Raw: string(raw)}
				if err := json.Unmarshal(raw, &r.Body); err != nil {
					t.Fatalf("answered non-JSON (%d): %s", r.Status, raw)
				}
				if r.Status != tc.status {
					t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Raw)
				}
				if _, code := r.errorCode(t); code != tc.code {
					t.Errorf("code %s, want %s", code, tc.code)
				}
				if _, documented := ops[fmt.Sprint(r.Status)]; !documented {
					t.Errorf("%d is not documented for POST /v1/keys/leaked", r.Status)
				}
			})
		}
		if r := call(t, f.app, "GET", "/v1/auth/test", k.Secret, nil); r.Status != 200 {
			t.Errorf("a refused report revoked the key: %d %s", r.Status, r.Raw)
		}
		if r, verdicts := reportLeaks(t, f.app, serviceToken, "[]"); r.Status != 200 || len(verdicts) != 0 {
			t.Errorf("an empty report answered %d %s", r.Status, r.Raw)
		}
		if _, documented := ops["200"]; !documented {
			t.Error("200 is not documented")
		}
	})
}
