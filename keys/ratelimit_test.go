package keys_test

import (
	"errors"
	"strings"
	"testing"

	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
	"keysmith/validate"
)

func n(v int) *int { return &v }

func TestCheckLimits(t *testing.T) {
	cases := []struct {
		name string
		kind keys.Kind
		in   keys.LimitSettings
		want map[string]string // field → part of the message
	}{
		{"all defaults", keys.Secret, keys.LimitSettings{}, nil},
		{"all three, in order", keys.Secret, keys.LimitSettings{PerMinute: n(100), PerHour: n(6000), PerDay: n(100_000)}, nil},
		{"quotas equal to the limit", keys.Secret, keys.LimitSettings{PerMinute: n(100), PerHour: n(100), PerDay: n(100)}, nil},
		{"a quota at least the kind's default", keys.Publishable, keys.LimitSettings{PerHour: n(100)}, nil},
		{"limit out of range", keys.Secret, keys.LimitSettings{PerMinute: n(0)}, map[string]string{"rate_limit": "from 1 to 1000000"}},
		{"quotas out of range", keys.Secret, keys.LimitSettings{PerHour: n(-1), PerDay: n(keys.MaxDailyQuota + 1)},
			map[string]string{"hourly_quota": "from 1 to 60000000", "daily_quota": "from 1 to 1440000000"}},
		{"hour below the default minute", keys.Secret, keys.LimitSettings{PerHour: n(999)}, map[string]string{"hourly_quota": "at least 1000"}},
		{"hour below the key's minute", keys.Secret, keys.LimitSettings{PerMinute: n(50), PerHour: n(49)}, map[string]string{"hourly_quota": "at least 50"}},
		{"day below the hour", keys.Secret, keys.LimitSettings{PerHour: n(5000), PerDay: n(4999)}, map[string]string{"daily_quota": "at least 5000, the key's hourly quota"}},
		{"day below the minute, no hour", keys.Publishable, keys.LimitSettings{PerDay: n(99)}, map[string]string{"daily_quota": "at least 100"}},
		{"a bad number and a bad order both reported", keys.Secret, keys.LimitSettings{PerMinute: n(100), PerHour: n(50), PerDay: n(-1)},
			map[string]string{"hourly_quota": "at least 100", "daily_quota": "from 1 to"}},
		{"no order compared with a bad number", keys.Secret, keys.LimitSettings{PerMinute: n(0), PerHour: n(5)}, map[string]string{"rate_limit": "from 1 to"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := keys.CheckLimits(tc.kind, tc.in)
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want fields %v", got, tc.want)
			}
			for field, part := range tc.want {
				if !strings.Contains(got[field], part) {
					t.Errorf("%s: %q does not say %q", field, got[field], part)
				}
			}
		})
	}
}

func TestSetRateLimitsStoresAllThreeAndAudits(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := setup(t, dbURL, 0)
		c, err := f.svc.Create(ctx, f.ws, f.owner, valid())
		if err != nil {
			t.Fatal(err)
		}
		k, err := f.svc.SetRateLimits(ctx, f.ws, f.owner, c.Key.ID, keys.LimitSettings{PerMinute: n(100), PerHour: n(6000), PerDay: n(100_000)})
		if err != nil {
			t.Fatal(err)
		}
		var stored models.APIKey
		f.db.Take(&stored, k.ID)
		if *stored.RateLimit != 100 || *stored.HourlyQuota != 6000 || *stored.DailyQuota != 100_000 {
			t.Fatalf("stored %v %v %v", *stored.RateLimit, *stored.HourlyQuota, *stored.DailyQuota)
		}
		var ev models.AuditEvent
		f.db.Where("key_id = ? AND action = ?", k.ID, keys.ActionLimited).Order("id DESC").Take(&ev)
		if ev.Detail != "100 requests per minute, 6000 per hour, 100000 per day" {
			t.Errorf("audit detail %q", ev.Detail)
		}

		_, err = f.svc.SetRateLimits(ctx, f.ws, f.owner, c.Key.ID, keys.LimitSettings{PerHour: n(10)})
		var ve validate.Errors
		if !errors.As(err, &ve) || ve["hourly_quota"] == "" {
			t.Fatalf("an hourly quota below the default minute: %v", err)
		}
		f.db.Take(&stored, k.ID)
		if stored.HourlyQuota == nil || *stored.HourlyQuota != 6000 {
			t.Fatal("an invalid change was stored")
		}

		if _, err := f.svc.SetRateLimits(ctx, f.ws, f.owner, c.Key.ID, keys.LimitSettings{}); err != nil {
			t.Fatal(err)
		}
		f.db.Take(&stored, k.ID)
		if stored.RateLimit != nil || stored.HourlyQuota != nil || stored.DailyQuota != nil {
			t.Fatal("clearing left limits behind")
		}

		editor := f.actor(t, "editor@example.com", models.RoleEditor)
		var forbidden *keys.ForbiddenError
		if _, err := f.svc.SetRateLimits(ctx, f.ws, editor, c.Key.ID, keys.LimitSettings{PerHour: n(5000)}); !errors.As(err, &forbidden) {
			t.Fatalf("an editor setting a quota: %v", err)
		}
	})
}
