package keys_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"keysmith/accounts"
	"keysmith/clock"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
	"keysmith/validate"
)

var ctx = context.Background()

type fixture struct {
	db    *gorm.DB
	clk   *clock.Fake
	svc   *keys.Service
	ws    int64
	owner keys.Actor
}

func setup(t *testing.T, dbURL string, maxLifetime time.Duration) *fixture {
	t.Helper()
	clk := clock.NewFake(testutil.Epoch)
	db := testutil.OpenDB(t, dbURL, clk)
	f := &fixture{db: db, clk: clk, svc: keys.NewService(db, clk, keys.DemoCatalog(), "ks", maxLifetime)}
	u, m := f.member(t, "owner@example.com", 0, models.RoleOwner)
	f.ws = m.WorkspaceID
	f.owner = f.svc.UserActor(u, models.RoleOwner, "192.0.2.1", "test")
	return f
}

// member signs a user up and, when ws is not 0, adds them to it with role.
func (f *fixture) member(t testing.TB, email string, ws int64, role models.Role) (models.User, models.Membership) {
	t.Helper()
	acc := accounts.New(f.db, f.clk, 4)
	u, err := acc.SignUp(ctx, accounts.SignUpInput{Email: email, Password: "long enough"})
	if err != nil {
		t.Fatal(err)
	}
	if ws == 0 {
		ms, _ := acc.Memberships(ctx, u.ID)
		return u, ms[0]
	}
	m := models.Membership{WorkspaceID: ws, UserID: u.ID, Role: role}
	if err := f.db.Create(&m).Error; err != nil {
		t.Fatal(err)
	}
	return u, m
}

func (f *fixture) actor(t *testing.T, email string, role models.Role) keys.Actor {
	u, _ := f.member(t, email, f.ws, role)
	return f.svc.UserActor(u, role, "192.0.2.2", "test")
}

func valid() keys.CreateInput {
	return keys.CreateInput{Name: "Billing worker", Kind: keys.Secret, Env: keys.Live, Permission: keys.PermRead, ExpiresIn: "30"}
}

func TestCreateStoresOnlyTheHash(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := setup(t, dbURL, 0)
		in := valid()
		in.Description = "  runs nightly  "
		c, err := f.svc.Create(ctx, f.ws, f.owner, in)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := keys.Parse(c.Secret, "ks"); err != nil || !strings.HasPrefix(c.Secret, "ks_sk_live_") {
			t.Fatalf("secret %q: %v", c.Secret, err)
		}
		var stored models.APIKey
		f.db.Take(&stored, c.Key.ID)
		if stored.SecretHash != keys.Hash(c.Secret) || stored.Hint != keys.Hint(c.Secret) || stored.Description != "runs nightly" {
			t.Errorf("stored %+v", stored)
		}
		if stored.Scopes != "files:read projects:read members:read webhooks:read keys:read" {
			t.Errorf("scopes %q", stored.Scopes)
		}
		if want := testutil.Epoch.Add(30 * 24 * time.Hour); stored.ExpiresAt == nil || !stored.ExpiresAt.Equal(want) {
			t.Errorf("expires %v, want %s", stored.ExpiresAt, want)
		}
		var events []models.AuditEvent
		f.db.Find(&events)
		if len(events) != 1 || events[0].Action != keys.ActionCreated || events[0].ActorLabel != "owner@example.com" || events[0].IP != "192.0.2.1" || *events[0].KeyID != c.Key.ID {
			t.Fatalf("audit events %+v", events)
		}
		if strings.Contains(events[0].Detail+events[0].KeyLabel, c.Secret) {
			t.Fatal("the audit log holds the secret")
		}
	})
}

func TestCreateValidation(t *testing.T) {
	f := setup(t, testutil.DatabaseURL(t, "sqlite"), 90*24*time.Hour)
	cases := []struct {
		name  string
		edit  func(*keys.CreateInput)
		field string
	}{
		{"no name", func(in *keys.CreateInput) { in.Name = "  " }, "name"},
		{"long name", func(in *keys.CreateInput) { in.Name = strings.Repeat("x", 101) }, "name"},
		{"bad kind", func(in *keys.CreateInput) { in.Kind = "rk" }, "kind"},
		{"bad env", func(in *keys.CreateInput) { in.Env = "prod" }, "environment"},
		{"no permission", func(in *keys.CreateInput) { in.Permission = "" }, "permission"},
		{"custom without scopes", func(in *keys.CreateInput) { in.Permission = keys.PermCustom }, "scopes"},
		{"unknown scope", func(in *keys.CreateInput) { in.Permission, in.Scopes = keys.PermCustom, []string{"planets:read"} }, "scopes"},
		{"publishable write", func(in *keys.CreateInput) { in.Kind, in.Permission = keys.Publishable, keys.PermWrite }, "permission"},
		{"publishable secret scope", func(in *keys.CreateInput) {
			in.Kind, in.Permission, in.Scopes = keys.Publishable, keys.PermCustom, []string{"files:read", "members:read"}
		}, "scopes"},
		{"never, with a maximum", func(in *keys.CreateInput) { in.ExpiresIn = "never" }, "expires_in"},
		{"past the maximum", func(in *keys.CreateInput) { in.ExpiresIn = "91" }, "expires_in"},
		{"custom date in the past", func(in *keys.CreateInput) { in.ExpiresIn, in.ExpiresOn = "custom", "2026-03-01" }, "expires_on"},
		{"custom date past the maximum", func(in *keys.CreateInput) { in.ExpiresIn, in.ExpiresOn = "custom", "2026-06-01" }, "expires_on"},
		{"custom date garbled", func(in *keys.CreateInput) { in.ExpiresIn, in.ExpiresOn = "custom", "next week" }, "expires_on"},
		{"expiry garbled", func(in *keys.CreateInput) { in.ExpiresIn = "7 days" }, "expires_in"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := valid()
			tc.edit(&in)
			_, err := f.svc.Create(ctx, f.ws, f.owner, in)
			var ve validate.Errors
			if !errors.As(err, &ve) || ve[tc.field] == "" {
				t.Fatalf("Create = %v, want an error on %s", err, tc.field)
			}
		})
	}
	in := valid()
	in.ExpiresIn, in.ExpiresOn = "custom", "2026-05-30" // its end is within 90 days of 2 March, 09:00
	c, err := f.svc.Create(ctx, f.ws, f.owner, in)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 5, 30, 23, 59, 59, 0, time.UTC); !c.Key.ExpiresAt.Equal(want) {
		t.Errorf("custom date expires %s, want the end of that day %s", c.Key.ExpiresAt, want)
	}
}

func TestRolesAndEscalation(t *testing.T) {
	f := setup(t, testutil.DatabaseURL(t, "sqlite"), 0)
	editor := f.actor(t, "editor@example.com", models.RoleEditor)
	viewer := f.actor(t, "viewer@example.com", models.RoleViewer)
	admin := f.actor(t, "admin@example.com", models.RoleAdmin)

	var fe *keys.ForbiddenError
	if _, err := f.svc.Create(ctx, f.ws, viewer, valid()); !errors.As(err, &fe) {
		t.Fatalf("viewer create: %v", err)
	}
	adminKey := valid()
	adminKey.Permission = keys.PermAdmin
	if _, err := f.svc.Create(ctx, f.ws, editor, adminKey); !errors.As(err, &fe) || !strings.Contains(fe.Reason, "owners and admins") {
		t.Fatalf("editor creating an admin key: %v", err)
	}
	custom := valid()
	custom.Permission, custom.Scopes = keys.PermCustom, []string{"members:write"}
	if _, err := f.svc.Create(ctx, f.ws, editor, custom); !errors.As(err, &fe) {
		t.Fatalf("editor creating members:write: %v", err)
	}
	custom.Scopes = []string{"files:*"}
	if _, err := f.svc.Create(ctx, f.ws, editor, custom); !errors.As(err, &fe) {
		t.Fatalf("editor creating a wildcard broader than the write preset: %v", err)
	}
	write := valid()
	write.Permission = keys.PermWrite
	editorKey, err := f.svc.Create(ctx, f.ws, editor, write)
	if err != nil {
		t.Fatalf("editor creating a write key: %v", err)
	}
	if _, err := f.svc.Create(ctx, f.ws, admin, adminKey); err != nil {
		t.Fatalf("admin creating an admin key: %v", err)
	}
	ownerKey, err := f.svc.Create(ctx, f.ws, f.owner, valid())
	if err != nil {
		t.Fatal(err)
	}

	// Editors act on their own keys only; admins on all.
	if _, err := f.svc.Rename(ctx, f.ws, editor, ownerKey.Key.ID, "mine now", ""); !errors.As(err, &fe) {
		t.Fatalf("editor renaming someone else's key: %v", err)
	}
	if _, err := f.svc.Revoke(ctx, f.ws, editor, ownerKey.Key.ID); !errors.As(err, &fe) {
		t.Fatalf("editor revoking someone else's key: %v", err)
	}
	if _, err := f.svc.Rotate(ctx, f.ws, viewer, editorKey.Key.ID, 0); !errors.As(err, &fe) {
		t.Fatalf("viewer rotating: %v", err)
	}
	if _, err := f.svc.Rename(ctx, f.ws, editor, editorKey.Key.ID, "Editor's worker", "x"); err != nil {
		t.Fatalf("editor renaming own key: %v", err)
	}
	if _, err := f.svc.Revoke(ctx, f.ws, admin, editorKey.Key.ID); err != nil {
		t.Fatalf("admin revoking an editor's key: %v", err)
	}
	// Keys never cross workspaces.
	_, other := f.member(t, "stranger@example.com", 0, "")
	if _, err := f.svc.Revoke(ctx, other.WorkspaceID, f.owner, ownerKey.Key.ID); !errors.Is(err, keys.ErrNotFound) {
		t.Fatalf("revoking through another workspace: %v", err)
	}
}

// Disabling pauses a key: the verifier refuses it as DISABLED at once, it
// leaves the working tabs, and enabling resumes it; both are audited, and
// neither works on a revoked key or twice in a row.
func TestDisableAndEnable(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := setup(t, dbURL, 0)
		c, err := f.svc.Create(ctx, f.ws, f.owner, valid())
		if err != nil {
			t.Fatal(err)
		}
		v := keys.NewVerifier(f.db, f.clk, "ks", nil, nil, nil)
		f.svc.OnChange(v.Evict)
		code := func() keys.Code {
			t.Helper()
			_, code, err := v.Authenticate(ctx, c.Secret, "")
			if err != nil {
				t.Fatal(err)
			}
			return code
		}
		if code() != keys.CodeValid {
			t.Fatal("a new key does not verify")
		}
		k, err := f.svc.SetDisabled(ctx, f.ws, f.owner, c.Key.ID, true)
		if err != nil || keys.StatusOf(k, f.clk.Now()) != keys.StatusDisabled {
			t.Fatalf("disable: %v, status %s", err, keys.StatusOf(k, f.clk.Now()))
		}
		if got := code(); got != keys.CodeDisabled {
			t.Fatalf("a disabled key verifies as %s", got)
		}
		if _, err := f.svc.SetDisabled(ctx, f.ws, f.owner, c.Key.ID, true); !errors.Is(err, keys.ErrAlreadyThat) {
			t.Errorf("disabling twice: %v", err)
		}
		counts, _ := f.svc.Count(ctx, f.ws)
		if counts[keys.FilterDisabled].N != 1 || counts[keys.FilterActive].N != 0 || counts[keys.FilterAll].N != 1 {
			t.Errorf("counts while disabled: %v", counts)
		}
		if _, err := f.svc.SetDisabled(ctx, f.ws, f.owner, c.Key.ID, false); err != nil {
			t.Fatal(err)
		}
		if got := code(); got != keys.CodeValid {
			t.Fatalf("an enabled key verifies as %s", got)
		}
		var actions []string
		f.db.Model(&models.AuditEvent{}).Where("key_id = ?", c.Key.ID).Order("id").Pluck("action", &actions)
		if strings.Join(actions, ",") != "key.created,key.disabled,key.enabled" {
			t.Errorf("audited %v", actions)
		}
		if _, err := f.svc.Revoke(ctx, f.ws, f.owner, c.Key.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.SetDisabled(ctx, f.ws, f.owner, c.Key.ID, true); !errors.Is(err, keys.ErrNotActive) {
			t.Errorf("disabling a revoked key: %v", err)
		}
	})
}

// A rotation changes the secret and nothing else: a key's own rate limit
// and quotas carry over to the new key.
func TestRotateKeepsLimits(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := setup(t, dbURL, 0)
		c, err := f.svc.Create(ctx, f.ws, f.owner, valid())
		if err != nil {
			t.Fatal(err)
		}
		perMinute, perHour, perDay := 1, 60, 1000
		if _, err := f.svc.SetRateLimits(ctx, f.ws, f.owner, c.Key.ID, keys.LimitSettings{PerMinute: &perMinute, PerHour: &perHour, PerDay: &perDay}); err != nil {
			t.Fatal(err)
		}
		r, err := f.svc.Rotate(ctx, f.ws, f.owner, c.Key.ID, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		fresh, _ := f.svc.Get(ctx, f.ws, r.Key.ID)
		if fresh.RateLimit == nil || *fresh.RateLimit != 1 || fresh.HourlyQuota == nil || *fresh.HourlyQuota != 60 || fresh.DailyQuota == nil || *fresh.DailyQuota != 1000 {
			t.Errorf("rotated key's limits: %v %v %v", fresh.RateLimit, fresh.HourlyQuota, fresh.DailyQuota)
		}
	})
}

func TestRotate(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := setup(t, dbURL, 0)
		c, err := f.svc.Create(ctx, f.ws, f.owner, valid()) // 30 days
		if err != nil {
			t.Fatal(err)
		}
		f.clk.Advance(10 * 24 * time.Hour)
		if _, err := f.svc.Rotate(ctx, f.ws, f.owner, c.Key.ID, 5*time.Hour); err == nil {
			t.Fatal("a grace period outside the offered ones was accepted")
		}
		r, err := f.svc.Rotate(ctx, f.ws, f.owner, c.Key.ID, 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if r.Secret == c.Secret || r.Key.Name != "Billing worker" || r.Key.Scopes != c.Key.Scopes || *r.Key.ReplacesID != c.Key.ID {
			t.Fatalf("new key %+v", r.Key)
		}
		if want := f.clk.Now().Add(30 * 24 * time.Hour); !r.Key.ExpiresAt.Equal(want) {
			t.Errorf("new key expires %s, want a fresh 30 days: %s", r.Key.ExpiresAt, want)
		}
		old, _ := f.svc.Get(ctx, f.ws, c.Key.ID)
		if *old.RotatedToID != r.Key.ID || old.RotatedTo.Hint != r.Key.Hint {
			t.Fatalf("old key not linked to the new one: %+v", old)
		}
		if got := keys.StatusOf(old, f.clk.Now()); got != keys.StatusRotating {
			t.Fatalf("old key during grace: %s", got)
		}
		if counts, _ := f.svc.Count(ctx, f.ws); counts[keys.FilterExpiring].N != 0 || counts[keys.FilterActive].N != 2 {
			t.Errorf("during grace: %d expiring (a replaced key is not), %d active", counts[keys.FilterExpiring].N, counts[keys.FilterActive].N)
		}
		f.clk.Advance(24*time.Hour + time.Second)
		if got := keys.StatusOf(old, f.clk.Now()); got != keys.StatusExpired {
			t.Fatalf("old key after grace: %s", got)
		}
		if _, err := f.svc.Rotate(ctx, f.ws, f.owner, c.Key.ID, 0); !errors.Is(err, keys.ErrNotActive) {
			t.Fatalf("rotating a replaced key again: %v", err)
		}

		now, err := f.svc.Rotate(ctx, f.ws, f.owner, r.Key.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		second, _ := f.svc.Get(ctx, f.ws, r.Key.ID)
		if keys.StatusOf(second, f.clk.Now()) != keys.StatusExpired || now.Key.ID == 0 {
			t.Fatal("rotation with no grace left the old key working")
		}
		var events []models.AuditEvent
		f.db.Where("action = ?", keys.ActionRotated).Find(&events)
		if len(events) != 2 {
			t.Fatalf("%d rotation events, want 2", len(events))
		}
	})
}

func TestRevoke(t *testing.T) {
	f := setup(t, testutil.DatabaseURL(t, "sqlite"), 0)
	c, _ := f.svc.Create(ctx, f.ws, f.owner, valid())
	k, err := f.svc.Revoke(ctx, f.ws, f.owner, c.Key.ID)
	if err != nil || keys.StatusOf(k, f.clk.Now()) != keys.StatusRevoked {
		t.Fatalf("revoke: %v %+v", err, k)
	}
	if _, err := f.svc.Revoke(ctx, f.ws, f.owner, c.Key.ID); !errors.Is(err, keys.ErrNotActive) {
		t.Fatalf("second revoke: %v", err)
	}
	if _, err := f.svc.Rotate(ctx, f.ws, f.owner, c.Key.ID, 0); !errors.Is(err, keys.ErrNotActive) {
		t.Fatalf("rotating a revoked key: %v", err)
	}
	got, _ := f.svc.Get(ctx, f.ws, c.Key.ID)
	if got.RevokedBy == nil || got.RevokedBy.Email != "owner@example.com" {
		t.Fatalf("revoked by %+v", got.RevokedBy)
	}
}

func TestStatusOf(t *testing.T) {
	now := testutil.Epoch
	at := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	id := int64(9)
	cases := []struct {
		key  models.APIKey
		want keys.Status
	}{
		{models.APIKey{}, keys.StatusActive},
		{models.APIKey{ExpiresAt: at(15 * 24 * time.Hour)}, keys.StatusActive},
		{models.APIKey{ExpiresAt: at(14 * 24 * time.Hour)}, keys.StatusExpiring},
		{models.APIKey{ExpiresAt: at(0)}, keys.StatusExpired},
		{models.APIKey{ExpiresAt: at(time.Hour), RotatedToID: &id}, keys.StatusRotating},
		{models.APIKey{ExpiresAt: at(time.Hour), RevokedAt: at(-time.Hour)}, keys.StatusRevoked},
	}
	for _, tc := range cases {
		if got := keys.StatusOf(tc.key, now); got != tc.want {
			t.Errorf("StatusOf(%+v) = %s, want %s", tc.key, got, tc.want)
		}
	}
}

func TestListFiltersAndCounts(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := setup(t, dbURL, 0)
		mk := func(name, expires string) models.APIKey {
			in := valid()
			in.Name, in.ExpiresIn = name, expires
			c, err := f.svc.Create(ctx, f.ws, f.owner, in)
			if err != nil {
				t.Fatal(err)
			}
			f.clk.Advance(time.Minute)
			return c.Key
		}
		stale := mk("stale", "never")
		f.clk.Advance(31 * 24 * time.Hour)
		mk("expiring", "7")
		mk("expired", "7")
		revoked := mk("revoked", "never")
		used := mk("fresh", "90")
		f.db.Model(&models.APIKey{}).Where("id = ?", used.ID).Update("last_used_at", f.clk.Now())
		if _, err := f.svc.Revoke(ctx, f.ws, f.owner, revoked.ID); err != nil {
			t.Fatal(err)
		}
		// Age "expired" past its 7 days but keep "expiring" inside them.
		f.db.Model(&models.APIKey{}).Where("name = ?", "expired").Update("expires_at", f.clk.Now().Add(-time.Hour))

		names := func(filter keys.Filter) string {
			p, err := f.svc.List(ctx, f.ws, keys.ListOptions{Filter: filter, Page: 1, PerPage: 10})
			if err != nil {
				t.Fatal(err)
			}
			var n []string
			for _, k := range p.Keys {
				n = append(n, k.Name)
			}
			return strings.Join(n, ",")
		}
		want := map[keys.Filter]string{
			keys.FilterAll:      "fresh,expired,expiring,stale",
			keys.FilterActive:   "fresh,expiring,stale",
			keys.FilterExpiring: "expiring",
			keys.FilterExpired:  "expired",
			keys.FilterRevoked:  "revoked",
			keys.FilterUnused:   "stale",
		}
		counts, err := f.svc.Count(ctx, f.ws)
		if err != nil {
			t.Fatal(err)
		}
		for filter, w := range want {
			if got := names(filter); got != w {
				t.Errorf("filter %q lists %s, want %s", filter, got, w)
			}
			if counts[filter] != (keys.Count{N: int64(len(strings.Split(w, ",")))}) {
				t.Errorf("count of %q = %+v, want %d", filter, counts[filter], len(strings.Split(w, ",")))
			}
		}
		_ = stale

		p, _ := f.svc.List(ctx, f.ws, keys.ListOptions{Page: 2, PerPage: 3})
		if p.Total.N != 4 || p.Pages() != 2 || len(p.Keys) != 1 || p.Keys[0].Name != "stale" {
			t.Fatalf("page 2 of 3-per-page: total %+v, pages %d, %d keys", p.Total, p.Pages(), len(p.Keys))
		}
		if p, _ := f.svc.List(ctx, f.ws, keys.ListOptions{Page: 99, PerPage: 3}); p.Page != 2 {
			t.Fatalf("page past the end clamps to %d, want 2", p.Page)
		}
	})
}
