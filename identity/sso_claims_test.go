package identity

import (
	"log/slog"
	"slices"
	"strings"
	"testing"

	"keysmith/config"
	"keysmith/models"
)

func TestMappedRoleTakesTheMostPowerfulMatch(t *testing.T) {
	s := &SSO{cfg: config.OIDC{Roles: map[string]string{"admins": "admin", "developers": "editor", "founders": "owner"}}}
	for _, tc := range []struct {
		values []string
		want   models.Role
	}{
		{[]string{"developers"}, models.RoleEditor},
		{[]string{"developers", "admins"}, models.RoleAdmin},
		{[]string{"admins", "founders"}, models.RoleOwner},
		{[]string{"sales"}, models.RoleViewer}, // a mapping, and no match: the least role
		{nil, models.RoleViewer},
	} {
		if got, ok := s.mappedRole(tc.values); !ok || got != tc.want {
			t.Errorf("%q: %s, %v; want %s", tc.values, got, ok, tc.want)
		}
	}
	if _, ok := (&SSO{}).mappedRole([]string{"admins"}); ok {
		t.Error("without KEYSMITH_OIDC_ROLES a role was mapped")
	}
}

func TestClaimsOfEveryShape(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want []string
	}{
		{"admins", []string{"admins"}},
		{[]any{"admins", "developers", 7}, []string{"admins", "developers"}},
		{nil, nil},
		{42.0, nil},
	} {
		if got := claimStrings(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("claimStrings(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for in, want := range map[any]bool{true: true, false: false, "true": true, "TRUE": true, "false": false, "yes": false, 1.0: false} {
		if got := claimBool(in); got != want {
			t.Errorf("claimBool(%v) = %v, want %v", in, got, want)
		}
	}
	if got := workspaceName(Identity{Workspace: "org-1"}); got != "org-1" {
		t.Errorf("a workspace without a name claim is named %q", got)
	}
	if got := workspaceName(Identity{Workspace: "org-1", WorkspaceName: "Acme"}); got != "Acme" {
		t.Errorf("named %q", got)
	}
}

// A role mapping that makes nobody an admin or owner leaves every workspace
// single sign-on makes without an owner: the start says so.
func TestAMappingWithoutAdminsIsWarnedAbout(t *testing.T) {
	for _, tc := range []struct {
		roles map[string]string
		warn  bool
	}{
		{map[string]string{"developers": "editor", "sales": "viewer"}, true},
		{map[string]string{"developers": "editor", "admins": "admin"}, false},
		{map[string]string{"founders": "owner"}, false},
		{nil, false}, // no mapping: the first member owns the workspace
	} {
		var logs strings.Builder
		NewSSO(nil, nil, nil, slog.New(slog.NewTextHandler(&logs, nil)), config.OIDC{Issuer: "https://id.example.com", Roles: tc.roles}, "https://keys.example.com")
		if got := strings.Contains(logs.String(), "maps no value to admin or owner"); got != tc.warn {
			t.Errorf("roles %v: warned %v, want %v (%q)", tc.roles, got, tc.warn, logs.String())
		}
	}
}
