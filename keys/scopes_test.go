package keys

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestPresets(t *testing.T) {
	c := DemoCatalog()
	cases := []struct {
		perm Permission
		kind Kind
		want string
	}{
		{PermRead, Secret, "files:read projects:read members:read webhooks:read keys:read"},
		{PermWrite, Secret, "files:read files:write projects:read projects:write members:read webhooks:read webhooks:write keys:read"},
		{PermAdmin, Secret, "*"},
		{PermRead, Publishable, "files:read projects:read"},
	}
	for _, tc := range cases {
		got, err := c.Preset(tc.perm, tc.kind)
		if err != nil || strings.Join(got, " ") != tc.want {
			t.Errorf("Preset(%s, %s) = %v, %v; want %s", tc.perm, tc.kind, got, err, tc.want)
		}
	}
	for _, p := range []Permission{PermWrite, PermAdmin} {
		if _, err := c.Preset(p, Publishable); err == nil {
			t.Errorf("publishable key got the %s preset", p)
		}
	}
}

func TestAllowsWildcards(t *testing.T) {
	cases := []struct {
		held  []string
		scope string
		want  bool
	}{
		{[]string{"files:read"}, "files:read", true},
		{[]string{"files:read"}, "files:write", false},
		{[]string{"files:*"}, "files:write", true},
		{[]string{"files:*"}, "projects:read", false},
		{[]string{"*:read"}, "webhooks:read", true},
		{[]string{"*:read"}, "webhooks:write", false},
		{[]string{"*"}, "anything:else", true},
		{nil, "files:read", false},
		{[]string{"projects:read", "files:write"}, "files:write", true},
	}
	for _, tc := range cases {
		if got := Allows(tc.held, tc.scope); got != tc.want {
			t.Errorf("Allows(%v, %q) = %v, want %v", tc.held, tc.scope, got, tc.want)
		}
	}
}

func TestCoversRefusesEscalation(t *testing.T) {
	cases := []struct {
		held, requested []string
		want            bool
	}{
		{[]string{"*"}, []string{"*"}, true},
		{[]string{"files:*"}, []string{"files:read", "files:write"}, true},
		{[]string{"files:*"}, []string{"files:*"}, true},
		{[]string{"files:read", "files:write"}, []string{"files:*"}, false}, // the resource may grow actions
		{[]string{"files:*", "projects:*"}, []string{"*"}, false},
		{[]string{"*:read"}, []string{"files:read"}, true},
		{[]string{"files:read"}, []string{"*:read"}, false},
		{[]string{"files:read"}, []string{"files:read", "keys:write"}, false},
		{[]string{"files:read"}, nil, true},
	}
	for _, tc := range cases {
		if got := Covers(tc.held, tc.requested); got != tc.want {
			t.Errorf("Covers(%v, %v) = %v, want %v", tc.held, tc.requested, got, tc.want)
		}
	}
}

func TestNormalize(t *testing.T) {
	c := DemoCatalog()
	got, err := c.Normalize([]string{" files:read", "*:*", "files:read", "keys:*", "*:write"})
	if err != nil || !slices.Equal(got, []string{"*", "*:write", "files:read", "keys:*"}) {
		t.Fatalf("Normalize = %v, %v", got, err)
	}
	for _, bad := range []string{"files", "files:delete", "planets:read", "files:read:x", ":read", ""} {
		if _, err := c.Normalize([]string{bad}); err == nil {
			t.Errorf("Normalize accepted %q", bad)
		}
	}
}

func TestLoadCatalog(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "scopes.json")
	os.WriteFile(good, []byte(`{"resources":[{"name":"invoices","description":"Billing","actions":[{"name":"read","publishable":true},{"name":"refund"}]}]}`), 0o644)
	c, err := LoadCatalog(good)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Scopes(), []string{"invoices:read", "invoices:refund"}) || !c.IsPublishable("invoices:read") || c.IsPublishable("invoices:refund") {
		t.Fatalf("loaded %+v", c)
	}
	for name, body := range map[string]string{
		"not json":        `{`,
		"empty":           `{"resources":[]}`,
		"bad name":        `{"resources":[{"name":"Invoices!","actions":[{"name":"read"}]}]}`,
		"repeated action": `{"resources":[{"name":"a","actions":[{"name":"read"},{"name":"read"}]}]}`,
		"no actions":      `{"resources":[{"name":"a","actions":[]}]}`,
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".json")
		os.WriteFile(p, []byte(body), 0o644)
		if _, err := LoadCatalog(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
