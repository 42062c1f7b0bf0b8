package teams_test

import (
	"testing"
	"time"

	"keysmith/models"
	"keysmith/teams"
)

func TestStandingOf(t *testing.T) {
	since := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	required := models.Workspace{TwoFactorRequiredAt: &since, TwoFactorGraceDays: 7}
	deadline := since.AddDate(0, 0, 7)
	cases := []struct {
		name string
		w    models.Workspace
		has  bool
		now  time.Time
		want teams.TwoFactorStanding
	}{
		{"not required", models.Workspace{}, false, since, teams.TwoFactorStanding{}},
		{"member has it", required, true, deadline.Add(time.Hour), teams.TwoFactorStanding{}},
		{"in the grace", required, false, deadline.Add(-time.Second), teams.TwoFactorStanding{Required: true, Deadline: deadline}},
		{"at the deadline", required, false, deadline, teams.TwoFactorStanding{Required: true, Deadline: deadline, Blocked: true}},
		{"no grace", models.Workspace{TwoFactorRequiredAt: &since}, false, since, teams.TwoFactorStanding{Required: true, Deadline: since, Blocked: true}},
	}
	for _, tc := range cases {
		if got := teams.StandingOf(tc.w, tc.has, tc.now); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
