package handlers_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"keysmith/accounts"
	"keysmith/keys"
	"keysmith/testutil"
)

// BenchmarkAPIRequest serves requests straight through the echo app (no
// network): the authenticated GET /v1/auth/test, and a reverse proxy's
// question about GET /files/42 (/v1/authz), against GET /healthz, which
// shares every global middleware but authenticates nothing.
func BenchmarkAPIRequest(b *testing.B) {
	app := testutil.StartApp(b, testutil.DatabaseURL(b, "sqlite"), testutil.WithQuietLogs())
	u, err := app.Accounts.SignUp(b.Context(), accountsInput("bench@example.com"))
	if err != nil {
		b.Fatal(err)
	}
	ms, _ := app.Accounts.Memberships(b.Context(), u.ID)
	actor := app.Keys.UserActor(u, ms[0].Role, "", "")
	c, err := app.Keys.Create(b.Context(), ms[0].WorkspaceID, actor, keys.CreateInput{Name: "bench", Kind: keys.Secret, Env: keys.Live, Permission: keys.PermRead, ExpiresIn: "30"})
	if err != nil {
		b.Fatal(err)
	}
	limit := keys.MaxRateLimit
	app.Keys.SetRateLimits(b.Context(), ms[0].WorkspaceID, actor, c.Key.ID, keys.LimitSettings{PerMinute: &limit})
	for _, tc := range []struct{ name, path, key, uri string }{
		{"healthz", "/healthz", "", ""},
		{"auth-test", "/v1/auth/test", c.Secret, ""},
		{"authz", "/v1/authz", c.Secret, "/files/42"}, // a proxy's question (forward authentication)
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				// The clock is fake: move it a minute on now and then, or a
				// fast machine spends the key's per-minute limit across the
				// sub-benchmarks and the counts (a 429 fails the run).
				if n++; n%100_000 == 0 {
					app.Clock.Advance(time.Minute)
				}
				req := httptest.NewRequest(http.MethodGet, tc.path, nil)
				if tc.key != "" {
					req.Header.Set("Authorization", "Bearer "+tc.key)
				}
				if tc.uri != "" {
					req.Header.Set("X-Forwarded-Method", http.MethodGet)
					req.Header.Set("X-Forwarded-Uri", tc.uri)
				}
				rec := httptest.NewRecorder()
				app.Echo.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatalf("%s: %d %s", tc.path, rec.Code, rec.Body)
				}
			}
		})
	}
}

func accountsInput(email string) accounts.SignUpInput {
	return accounts.SignUpInput{Email: email, Name: "Bench", Password: "long enough pw"}
}
