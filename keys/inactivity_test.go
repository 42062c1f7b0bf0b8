package keys_test

import (
	"errors"
	"testing"
	"time"

	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
	"keysmith/validate"
)

func TestInactivityWarningBelongsToTheIdlePeriod(t *testing.T) {
	day := 24 * time.Hour
	t0 := testutil.Epoch
	at := func(d int) *time.Time { x := t0.Add(time.Duration(d) * day); return &x }
	p := keys.InactivityPolicy{Action: keys.InactivityDisable, Days: 90, Since: t0}
	for _, tc := range []struct {
		name      string
		policy    keys.InactivityPolicy
		lastUsed  *time.Time
		warned    *time.Time
		want      bool
		wantActAt int // days after t0, from the warning
	}{
		{"never warned", p, nil, nil, false, 0},
		{"warned 83 days into the idle period", p, nil, at(83), true, 90},
		{"warned late: 7 days' notice all the same", p, nil, at(150), true, 157},
		{"warned too early for this policy (a longer Days)", p, nil, at(23), false, 90},
		{"used since the warning", p, at(85), at(83), false, 175},
		{"warned before the policy was switched on again", keys.InactivityPolicy{Action: keys.InactivityRevoke, Days: 90, Since: *at(100)}, nil, at(83), false, 90},
		{"policy off", keys.InactivityPolicy{Days: 90}, nil, at(83), false, 90},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := models.APIKey{CreatedAt: t0, LastUsedAt: tc.lastUsed, InactivityWarnedAt: tc.warned}
			if got := tc.policy.Warned(k); got != tc.want {
				t.Errorf("Warned = %v, want %v", got, tc.want)
			}
			if tc.warned != nil {
				if got := tc.policy.ActAt(k, *tc.warned); !got.Equal(*at(tc.wantActAt)) {
					t.Errorf("ActAt = day %v, want day %d", got.Sub(t0).Hours()/24, tc.wantActAt)
				}
			}
		})
	}
}

func TestSetInactivityPolicy(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := setup(t, dbURL, 0)
		audited := func() []models.AuditEvent {
			var evs []models.AuditEvent
			f.db.Where("workspace_id = ? AND action = ?", f.ws, keys.ActionInactivityPolicy).Order("id").Find(&evs)
			return evs
		}
		var w models.Workspace
		f.db.Take(&w, f.ws)
		if p := keys.PolicyOf(w); p.On() || p.Days != keys.DefaultInactivityDays {
			t.Fatalf("a new workspace's policy: %+v", p)
		}

		for _, tc := range []struct {
			action keys.InactivityAction
			days   int
			field  string
		}{
			{keys.InactivityDisable, 29, "inactivity_days"},
			{keys.InactivityDisable, 366, "inactivity_days"},
			{keys.InactivityOff, 0, "inactivity_days"},
			{"delete", 90, "inactivity_action"},
		} {
			_, err := f.svc.SetInactivityPolicy(ctx, f.ws, f.owner, tc.action, tc.days)
			var ve validate.Errors
			if !errors.As(err, &ve) || ve[tc.field] == "" || len(ve) != 1 {
				t.Errorf("%q %d: %v", tc.action, tc.days, err)
			}
		}
		for _, role := range []models.Role{models.RoleEditor, models.RoleViewer} {
			_, err := f.svc.SetInactivityPolicy(ctx, f.ws, f.actor(t, string(role)+"@example.com", role), keys.InactivityDisable, 90)
			var fe *keys.ForbiddenError
			if !errors.As(err, &fe) {
				t.Errorf("%s: %v", role, err)
			}
		}
		if n := len(audited()); n != 0 {
			t.Fatalf("%d audit events for refused changes", n)
		}

		admin := f.actor(t, "admin@example.com", models.RoleAdmin)
		p, err := f.svc.SetInactivityPolicy(ctx, f.ws, admin, keys.InactivityDisable, 30)
		if err != nil || !p.On() || !p.Since.Equal(f.clk.Now()) {
			t.Fatalf("switch on: %+v %v", p, err)
		}
		on := f.clk.Now()
		f.clk.Advance(time.Hour)
		if _, err := f.svc.SetInactivityPolicy(ctx, f.ws, f.owner, keys.InactivityDisable, 30); err != nil {
			t.Fatal(err) // unchanged: not audited
		}
		if p, err = f.svc.SetInactivityPolicy(ctx, f.ws, f.owner, keys.InactivityRevoke, 365); err != nil || !p.Since.Equal(on) {
			t.Fatalf("a change keeps the time it was switched on: %+v %v", p, err)
		}
		if p, err = f.svc.SetInactivityPolicy(ctx, f.ws, f.owner, keys.InactivityOff, 365); err != nil || p.On() {
			t.Fatalf("switch off: %+v %v", p, err)
		}
		f.db.Take(&w, f.ws)
		if p := keys.PolicyOf(w); p.On() || p.Days != 365 || w.InactivitySince != nil {
			t.Fatalf("off keeps its days, and nothing else: %+v %+v", p, w)
		}
		f.clk.Advance(time.Hour)
		if p, err = f.svc.SetInactivityPolicy(ctx, f.ws, f.owner, keys.InactivityDisable, 90); err != nil || !p.Since.Equal(f.clk.Now()) {
			t.Fatalf("switched on again, it starts afresh: %+v %v", p, err)
		}

		want := []struct{ actor, detail string }{
			{"admin@example.com", "disable keys unused for 30 days (was off)"},
			{"owner@example.com", "revoke keys unused for 365 days (was disable keys unused for 30 days)"},
			{"owner@example.com", "off (was revoke keys unused for 365 days)"},
			{"owner@example.com", "disable keys unused for 90 days (was off)"},
		}
		evs := audited()
		if len(evs) != len(want) {
			t.Fatalf("%d audit events, want %d: %+v", len(evs), len(want), evs)
		}
		for i, ev := range evs {
			if ev.ActorLabel != want[i].actor || ev.Detail != want[i].detail || ev.ActorUserID == nil || ev.KeyLabel != "inactivity policy" {
				t.Errorf("event %d: %+v, want %+v", i, ev, want[i])
			}
		}
	})
}

// A use that lands between finding a key due and acting on it saves the
// key; the action, when it comes, is the same as a person's disable or
// revoke, down to the verifier's cache.
func TestApplyInactivityLeavesAKeyUsedMeanwhile(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := setup(t, dbURL, 0)
		var evicted []int64
		f.svc.OnChange(func(ids ...int64) { evicted = append(evicted, ids...) })
		in := valid()
		in.ExpiresIn = "never"
		saved, err := f.svc.Create(ctx, f.ws, f.owner, in)
		if err != nil {
			t.Fatal(err)
		}
		doomed, err := f.svc.Create(ctx, f.ws, f.owner, in)
		if err != nil {
			t.Fatal(err)
		}
		p, err := f.svc.SetInactivityPolicy(ctx, f.ws, f.owner, keys.InactivityDisable, 30)
		if err != nil {
			t.Fatal(err)
		}
		f.clk.Advance(23 * 24 * time.Hour)
		due, next, err := f.svc.DueForWarning(ctx, p, f.clk.Now(), keys.Cursor{}, 10)
		if err != nil || next != nil || len(due) != 2 {
			t.Fatalf("due for warning: %d %v %v", len(due), next, err)
		}
		for _, k := range due {
			if _, _, ok, err := f.svc.MarkWarned(ctx, p, k, f.clk.Now()); !ok || err != nil {
				t.Fatalf("mark: %v %v", ok, err)
			}
			if _, _, ok, _ := f.svc.MarkWarned(ctx, p, k, f.clk.Now()); ok {
				t.Fatal("a key read before it was marked was marked twice")
			}
		}
		f.clk.Advance(7 * 24 * time.Hour)
		due, _, err = f.svc.DueForAction(ctx, p, f.clk.Now(), keys.Cursor{}, 10)
		if err != nil || len(due) != 2 {
			t.Fatalf("due for action: %d %v", len(due), err)
		}
		if err := models.WriteLastUses(f.db, []models.LastUse{{KeyID: saved.Key.ID, At: f.clk.Now().Add(-time.Minute)}}); err != nil {
			t.Fatal(err)
		}
		for _, k := range due {
			got, err := f.svc.ApplyInactivity(ctx, p, k, f.clk.Now())
			switch k.ID {
			case saved.Key.ID:
				if !errors.Is(err, keys.ErrNoLongerInactive) {
					t.Errorf("the key used meanwhile: %v", err)
				}
			case doomed.Key.ID:
				if err != nil || got.DisabledAt == nil || got.InactivityWarnedAt != nil {
					t.Errorf("the unused key: %+v %v", got, err)
				}
			}
		}
		if len(evicted) != 1 || evicted[0] != doomed.Key.ID {
			t.Errorf("evicted from the cache: %v", evicted)
		}
		k, _ := f.svc.Get(ctx, f.ws, doomed.Key.ID)
		if keys.StatusOf(k, f.clk.Now()) != keys.StatusDisabled || k.DisabledByID != nil {
			t.Errorf("status %s, disabled by %v", keys.StatusOf(k, f.clk.Now()), k.DisabledByID)
		}
		if _, err := f.svc.ApplyInactivity(ctx, p, k, f.clk.Now()); !errors.Is(err, keys.ErrNoLongerInactive) {
			t.Errorf("acting twice: %v", err)
		}
	})
}
