package scheduler_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"keysmith/accounts"
	"keysmith/clock"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/scheduler"
	"keysmith/testutil"
)

// inactivityWorld is the keys service and the inactivity job on a fresh
// database, with a fake clock and hooks that write down what they hear.
type inactivityWorld struct {
	t   *testing.T
	db  *gorm.DB
	clk *clock.Fake
	svc *keys.Service
	job *scheduler.Inactivity

	mu     sync.Mutex
	heard  []string             // "day 83: warned k1, acts day 90", "day 90: disable k1"
	names  map[int64]string     // key id → name
	owners map[int64]keys.Actor // workspace → its owner
}

func newInactivityWorld(t *testing.T, dbURL string) *inactivityWorld {
	clk := clock.NewFake(testutil.Epoch)
	db := testutil.OpenDB(t, dbURL, clk)
	w := &inactivityWorld{t: t, db: db, clk: clk, svc: keys.NewService(db, clk, keys.DemoCatalog(), "ks", 0),
		names: map[int64]string{}, owners: map[int64]keys.Actor{}}
	w.job = scheduler.NewInactivity(w.svc, clk, slog.New(slog.NewTextHandler(io.Discard, nil)))
	w.job.Batch = 2 // several batches per workspace, as with thousands of keys
	w.job.OnInactivityWarning = func(_ context.Context, k models.APIKey, actAt time.Time) {
		if k.InactivityWarnedAt == nil || !k.InactivityWarnedAt.Equal(clk.Now()) {
			t.Errorf("warning of %s carries warned_at %v", k.Name, k.InactivityWarnedAt)
		}
		w.hear(fmt.Sprintf("warned %s, acts day %s", k.Name, w.day(actAt)))
	}
	w.job.OnInactivityAction = func(_ context.Context, k models.APIKey, action string) {
		if action == "disable" && (k.DisabledAt == nil || k.RevokedAt != nil) || action == "revoke" && k.RevokedAt == nil {
			t.Errorf("%s of %s: the key handed over is %+v", action, k.Name, k)
		}
		w.hear(action + " " + k.Name)
	}
	return w
}

func (w *inactivityWorld) day(at time.Time) string {
	d := at.Sub(testutil.Epoch)
	if d%(24*time.Hour) == 0 {
		return fmt.Sprint(int(d / (24 * time.Hour)))
	}
	return fmt.Sprintf("%.2f", d.Hours()/24)
}

func (w *inactivityWorld) hear(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.heard = append(w.heard, "day "+w.day(w.clk.Now())+": "+s)
}

// workspace signs up its owner and returns the personal workspace's id.
func (w *inactivityWorld) workspace(name string) int64 {
	w.t.Helper()
	acc := accounts.New(w.db, w.clk, 4)
	u, err := acc.SignUp(w.t.Context(), accounts.SignUpInput{Email: name + "@example.com", Password: "long enough pw"})
	if err != nil {
		w.t.Fatal(err)
	}
	ms, _ := acc.Memberships(w.t.Context(), u.ID)
	w.owners[ms[0].WorkspaceID] = w.svc.UserActor(u, models.RoleOwner, "", "")
	return ms[0].WorkspaceID
}

func (w *inactivityWorld) policy(ws int64, action keys.InactivityAction, days int) {
	w.t.Helper()
	if _, err := w.svc.SetInactivityPolicy(w.t.Context(), ws, w.owners[ws], action, days); err != nil {
		w.t.Fatal(err)
	}
}

func (w *inactivityWorld) key(ws int64, name, expiresIn string) int64 {
	w.t.Helper()
	c, err := w.svc.Create(w.t.Context(), ws, w.owners[ws], keys.CreateInput{Name: name, Kind: keys.Secret, Env: keys.Live, Permission: keys.PermRead, ExpiresIn: expiresIn})
	if err != nil {
		w.t.Fatal(err)
	}
	w.names[c.Key.ID] = name
	return c.Key.ID
}

// use records a use of the key now, as the last-used buffer's flush does.
func (w *inactivityWorld) use(id int64) {
	w.t.Helper()
	if err := models.WriteLastUses(w.db, []models.LastUse{{KeyID: id, At: w.clk.Now(), IP: "192.0.2.9"}}); err != nil {
		w.t.Fatal(err)
	}
}

func (w *inactivityWorld) setDisabled(ws, id int64, disabled bool) {
	w.t.Helper()
	if _, err := w.svc.SetDisabled(w.t.Context(), ws, w.owners[ws], id, disabled); err != nil {
		w.t.Fatal(err)
	}
}

// heardOf is what the hooks heard of one key, in order.
func (w *inactivityWorld) heardOf(name string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, h := range w.heard {
		if strings.HasSuffix(h, " "+name) || strings.Contains(h, " "+name+",") {
			out = append(out, h)
		}
	}
	return out
}

// The inactivity policy walked over 400 days, a pass every 6 hours, on
// keys used at various times, in workspaces with the policy off, on from
// the start, switched on late, lengthened, switched off and on again, and
// revoking: every warning and action lands on the day it must, exactly
// once, and never less than 7 days after the key's warning.
func TestInactivityPolicyOver400Days(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		w := newInactivityWorld(t, dbURL)
		const step = 6 * time.Hour
		day := func(n int) int { return n * int(24*time.Hour/step) } // the step of day n
		script := map[int][]func(){}
		at := func(d int, f func()) { script[day(d)] = append(script[day(d)], f) }

		// disable after 90 days, on from the start
		a := w.workspace("a")
		w.policy(a, keys.InactivityDisable, 90)
		a1 := w.key(a, "a1-never-used", "never")
		a2 := w.key(a, "a2-used-day-50", "never")
		a3 := w.key(a, "a3-used-after-its-warning", "never")
		a4 := w.key(a, "a4-used-every-20-days", "never")
		w.key(a, "a5-expires-day-60", "60")
		w.key(a, "a6-expires-before-the-action", "88")
		a7 := w.key(a, "a7-disabled-by-hand", "never")
		at(50, func() { w.use(a2) })
		at(10, func() { w.use(a3) })
		at(95, func() { w.use(a3) }) // 2 days after its warning
		for d := 20; d <= 400; d += 20 {
			at(d, func() { w.use(a4) })
		}
		at(100, func() { w.setDisabled(a, a1, false) }) // an admin enables it again
		at(5, func() { w.setDisabled(a, a7, true) })
		at(150, func() { w.setDisabled(a, a7, false) })
		at(200, func() { w.key(a, "a8-created-day-200", "never") })

		// the same keys with the policy off
		b := w.workspace("b")
		b1 := w.key(b, "b1-never-used", "never")
		w.key(b, "b2-never-used", "never")
		at(50, func() { w.use(b1) })

		// revoke after 30 days
		c := w.workspace("c")
		w.policy(c, keys.InactivityRevoke, 30)
		w.key(c, "c1-never-used", "never")
		c2 := w.key(c, "c2-used-day-20", "never")
		c3 := w.key(c, "c3-disabled-by-hand", "never")
		c4 := w.key(c, "c4-used-after-its-warning", "never")
		at(20, func() { w.use(c2) })
		at(1, func() { w.setDisabled(c, c3, true) })
		at(25, func() { w.use(c4) })

		// switched on on day 200, over keys long unused
		d := w.workspace("d")
		w.key(d, "d1-never-used", "never")
		d2 := w.key(d, "d2-used-day-150", "never")
		at(150, func() { w.use(d2) })
		at(200, func() { w.policy(d, keys.InactivityDisable, 90) })

		// 30 days, lengthened to 365 between the warning and the action
		e := w.workspace("e")
		w.policy(e, keys.InactivityDisable, 30)
		w.key(e, "e1-never-used", "never")
		at(25, func() { w.policy(e, keys.InactivityDisable, 365) })

		// 30 days, switched off after the warning and on again
		f := w.workspace("f")
		w.policy(f, keys.InactivityDisable, 30)
		w.key(f, "f1-never-used", "never")
		at(25, func() { w.policy(f, keys.InactivityOff, 30) })
		at(40, func() { w.policy(f, keys.InactivityDisable, 30) })

		for i := 0; i <= day(400); i++ {
			w.clk.Set(testutil.Epoch.Add(time.Duration(i) * step))
			for _, f := range script[i] {
				f()
			}
			if err := w.job.Run(t.Context()); err != nil {
				t.Fatalf("day %s: %v", w.day(w.clk.Now()), err)
			}
		}

		want := map[string][]string{
			"a1-never-used": {"day 83: warned a1-never-used, acts day 90", "day 90: disable a1-never-used",
				// enabled again on day 100: warned again, 7 days' notice
				"day 100: warned a1-never-used, acts day 107", "day 107: disable a1-never-used"},
			"a2-used-day-50": {"day 133: warned a2-used-day-50, acts day 140", "day 140: disable a2-used-day-50"},
			// used on day 95, after its warning on day 93: left alone, and
			// warned again once unused for 83 days more
			"a3-used-after-its-warning":    {"day 93: warned a3-used-after-its-warning, acts day 100", "day 178: warned a3-used-after-its-warning, acts day 185", "day 185: disable a3-used-after-its-warning"},
			"a4-used-every-20-days":        nil,
			"a5-expires-day-60":            nil,
			"a6-expires-before-the-action": nil, // expires on day 88, before the action of day 90
			// disabled by hand until day 150: then warned, with 7 days' notice
			"a7-disabled-by-hand": {"day 150: warned a7-disabled-by-hand, acts day 157", "day 157: disable a7-disabled-by-hand"},
			"a8-created-day-200":  {"day 283: warned a8-created-day-200, acts day 290", "day 290: disable a8-created-day-200"},
			"b1-never-used":       nil,
			"b2-never-used":       nil,
			"c1-never-used":       {"day 23: warned c1-never-used, acts day 30", "day 30: revoke c1-never-used"},
			"c2-used-day-20":      {"day 43: warned c2-used-day-20, acts day 50", "day 50: revoke c2-used-day-20"},
			"c3-disabled-by-hand": {"day 23: warned c3-disabled-by-hand, acts day 30", "day 30: revoke c3-disabled-by-hand"},
			"c4-used-after-its-warning": {"day 23: warned c4-used-after-its-warning, acts day 30",
				"day 48: warned c4-used-after-its-warning, acts day 55", "day 55: revoke c4-used-after-its-warning"},
			// switched on when unused for 200 days: warned at once, acted on 7 days later
			"d1-never-used":   {"day 200: warned d1-never-used, acts day 207", "day 207: disable d1-never-used"},
			"d2-used-day-150": {"day 233: warned d2-used-day-150, acts day 240", "day 240: disable d2-used-day-150"},
			// the day-23 warning was for 30 days; at 365 it is given again
			"e1-never-used": {"day 23: warned e1-never-used, acts day 30", "day 358: warned e1-never-used, acts day 365", "day 365: disable e1-never-used"},
			// the day-23 warning was given before the policy was switched on again
			"f1-never-used": {"day 23: warned f1-never-used, acts day 30", "day 40: warned f1-never-used, acts day 47", "day 47: disable f1-never-used"},
		}
		for _, name := range slices.Sorted(maps.Keys(want)) {
			if got := w.heardOf(name); !slices.Equal(got, want[name]) {
				t.Errorf("%s heard:\n\t%s\nwant:\n\t%s", name, strings.Join(got, "\n\t"), strings.Join(want[name], "\n\t"))
			}
		}

		// The keys as they end, each action audited in the policy's name.
		var ks []models.APIKey
		w.db.Order("id").Find(&ks)
		for _, k := range ks {
			heard := w.heardOf(k.Name)
			last := ""
			if len(heard) > 0 {
				last = heard[len(heard)-1]
			}
			disabled, revoked := strings.Contains(last, ": disable "), strings.Contains(last, ": revoke ")
			if (k.DisabledAt != nil) != (disabled || k.Name == "c3-disabled-by-hand") || (k.RevokedAt != nil) != revoked {
				t.Errorf("%s ends disabled %v, revoked %v; last heard %q", k.Name, k.DisabledAt, k.RevokedAt, last)
			}
		}
		var events []models.AuditEvent
		w.db.Where("actor_label LIKE ?", "inactivity policy%").Order("id").Find(&events)
		actions := 0
		for _, h := range w.heard {
			if strings.Contains(h, ": disable ") || strings.Contains(h, ": revoke ") {
				actions++
			}
		}
		if len(events) != actions {
			t.Errorf("%d audit events by the policy, %d actions", len(events), actions)
		}
		for _, ev := range events {
			label := "inactivity policy (unused 90 days)"
			switch ev.WorkspaceID {
			case c, f:
				label = "inactivity policy (unused 30 days)"
			case e:
				label = "inactivity policy (unused 365 days)"
			}
			if ev.ActorLabel != label || ev.ActorUserID != nil || !strings.HasPrefix(ev.Detail, "unused since ") ||
				(ev.Action != keys.ActionDisabled && ev.Action != keys.ActionRevoked) {
				t.Errorf("audit event %+v", ev)
			}
		}
		// The revocations kept the key list's counts true.
		for _, ws := range []int64{a, b, c, d, e, f} {
			kept, err := w.svc.Count(t.Context(), ws)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.svc.Recount(t.Context(), ws); err != nil {
				t.Fatal(err)
			}
			if counted, _ := w.svc.Count(t.Context(), ws); fmt.Sprint(kept) != fmt.Sprint(counted) {
				t.Errorf("workspace %d: kept counts %v, recounted %v", ws, kept, counted)
			}
		}
	})
}

// Two replicas running the same pass warn and act once between them.
func TestInactivityPassesOnTwoReplicas(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		w := newInactivityWorld(t, dbURL)
		other := scheduler.NewInactivity(w.svc, w.clk, slog.New(slog.NewTextHandler(io.Discard, nil)))
		other.OnInactivityWarning, other.OnInactivityAction = w.job.OnInactivityWarning, w.job.OnInactivityAction
		ws := w.workspace("a")
		w.policy(ws, keys.InactivityRevoke, 30)
		for i := range 20 {
			w.key(ws, fmt.Sprintf("k%02d", i), "never")
		}
		for _, d := range []int{23, 30} {
			w.clk.Set(testutil.Epoch.Add(time.Duration(d) * 24 * time.Hour))
			var wg sync.WaitGroup
			for _, j := range []*scheduler.Inactivity{w.job, other} {
				wg.Go(func() {
					if err := j.Run(t.Context()); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
		}
		if len(w.heard) != 40 {
			t.Fatalf("heard %d notices, want 20 warnings and 20 revocations:\n%s", len(w.heard), strings.Join(w.heard, "\n"))
		}
		for i := range 20 {
			name := fmt.Sprintf("k%02d", i)
			if got := w.heardOf(name); len(got) != 2 {
				t.Errorf("%s: %v", name, got)
			}
		}
	})
}
