package keys_test

import (
	"testing"

	"keysmith/clock"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/ratelimit"
	"keysmith/testutil"
)

// BenchmarkVerifyPath is the work of one authenticated API request once its
// key is cached: parse, hash, cache hit, scope check, rate limit and
// last-used record. The wall clock is used, so the cache really expires
// and reloads once a second, as in production.
func BenchmarkVerifyPath(b *testing.B) {
	clk := clock.Real{}
	db, err := models.Open(testutil.DatabaseURL(b, "sqlite"), clk)
	if err != nil {
		b.Fatal(err)
	}
	defer models.Close(db)
	if _, err := models.Migrate(db); err != nil {
		b.Fatal(err)
	}
	f := &fixture{db: db, clk: clock.NewFake(testutil.Epoch)}
	svc := keys.NewService(db, clk, keys.DemoCatalog(), "ks", 0)
	f.svc = svc
	u, m := f.member(b, "bench@example.com", 0, models.RoleOwner)
	c, err := svc.Create(b.Context(), m.WorkspaceID, svc.UserActor(u, models.RoleOwner, "", ""), valid())
	if err != nil {
		b.Fatal(err)
	}
	limit := keys.MaxRateLimit
	if _, err := svc.SetRateLimits(b.Context(), m.WorkspaceID, svc.UserActor(u, models.RoleOwner, "", ""), c.Key.ID, keys.LimitSettings{PerMinute: &limit}); err != nil {
		b.Fatal(err)
	}
	v := keys.NewVerifier(db, clk, "ks", ratelimit.NewMemory(), keys.NewUsage(db, nil), nil)
	if _, code, _ := v.Authenticate(b.Context(), c.Secret, "192.0.2.1"); code != keys.CodeValid {
		b.Fatalf("warm-up: %s", code)
	}
	b.ReportAllocs()
	for b.Loop() {
		k, code, err := v.Authenticate(b.Context(), c.Secret, "192.0.2.1")
		if err != nil || code != keys.CodeValid || !k.Allows("files:read") {
			b.Fatalf("%s %v", code, err)
		}
		if _, err := v.Admit(b.Context(), k, "192.0.2.1", "bench/1.0"); err != nil {
			b.Fatal(err)
		}
	}
}
