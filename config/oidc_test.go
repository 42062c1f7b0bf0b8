package config_test

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"keysmith/config"
	"keysmith/testutil"
)

func TestOIDCOffByDefault(t *testing.T) {
	c, err := config.Load(testutil.Env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.OIDC.Enabled() || !c.PasswordLogin {
		t.Errorf("single sign-on on or password sign-in off by default: %+v", c.OIDC)
	}
}

func TestOIDCSettings(t *testing.T) {
	c, err := config.Load(testutil.Env(map[string]string{
		"KEYSMITH_OIDC_ISSUER":               "https://id.example.com/realms/main/",
		"KEYSMITH_OIDC_CLIENT_ID":            "keysmith",
		"KEYSMITH_OIDC_CLIENT_SECRET":        "s3cret",
		"KEYSMITH_OIDC_NAME":                 "Contaqt",
		"KEYSMITH_OIDC_WORKSPACE_CLAIM":      "org_id",
		"KEYSMITH_OIDC_WORKSPACE_NAME_CLAIM": "org_name",
		"KEYSMITH_OIDC_ROLE_CLAIM":           "groups",
		"KEYSMITH_OIDC_ROLES":                "admins=admin, developers = editor",
		"KEYSMITH_PASSWORD_LOGIN":            "false",
	}))
	if err != nil {
		t.Fatal(err)
	}
	o := c.OIDC
	if !o.Enabled() || o.Issuer != "https://id.example.com/realms/main/" || o.ClientID != "keysmith" || o.ClientSecret != "s3cret" || o.Name != "Contaqt" {
		t.Errorf("got %+v", o)
	}
	if !slices.Equal(o.Scopes, []string{"openid", "email", "profile"}) {
		t.Errorf("default scopes: %q", o.Scopes)
	}
	if !maps.Equal(o.Roles, map[string]string{"admins": "admin", "developers": "editor"}) {
		t.Errorf("roles: %v", o.Roles)
	}
	if c.PasswordLogin {
		t.Error("KEYSMITH_PASSWORD_LOGIN=false not read")
	}
}

func TestOIDCMistakesAreReported(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"KEYSMITH_OIDC_CLIENT_ID": "x"}, "KEYSMITH_OIDC_CLIENT_ID is set but KEYSMITH_OIDC_ISSUER is not"},
		{map[string]string{"KEYSMITH_OIDC_ISSUER": "https://id.example.com"}, "KEYSMITH_OIDC_CLIENT_ID is required"},
		{map[string]string{"KEYSMITH_OIDC_ISSUER": "http://id.example.com", "KEYSMITH_OIDC_CLIENT_ID": "x"}, "KEYSMITH_OIDC_ISSUER must be the provider's https URL"},
		{map[string]string{"KEYSMITH_OIDC_ISSUER": "id.example.com", "KEYSMITH_OIDC_CLIENT_ID": "x"}, "KEYSMITH_OIDC_ISSUER must be"},
		{map[string]string{"KEYSMITH_OIDC_ISSUER": "https://id.example.com", "KEYSMITH_OIDC_CLIENT_ID": "x", "KEYSMITH_OIDC_SCOPES": "email profile"}, "KEYSMITH_OIDC_SCOPES must include openid"},
		{map[string]string{"KEYSMITH_OIDC_ISSUER": "https://id.example.com", "KEYSMITH_OIDC_CLIENT_ID": "x", "KEYSMITH_OIDC_ROLE_CLAIM": "groups"}, "KEYSMITH_OIDC_ROLE_CLAIM needs KEYSMITH_OIDC_WORKSPACE_CLAIM"},
		{map[string]string{"KEYSMITH_OIDC_ISSUER": "https://id.example.com", "KEYSMITH_OIDC_CLIENT_ID": "x", "KEYSMITH_OIDC_WORKSPACE_CLAIM": "org", "KEYSMITH_OIDC_ROLE_CLAIM": "groups", "KEYSMITH_OIDC_ROLES": "admins=boss"}, `KEYSMITH_OIDC_ROLES has "admins=boss"`},
		{map[string]string{"KEYSMITH_OIDC_ISSUER": "https://id.example.com", "KEYSMITH_OIDC_CLIENT_ID": "x", "KEYSMITH_OIDC_ROLES": "admins=admin"}, "KEYSMITH_OIDC_ROLES needs KEYSMITH_OIDC_ROLE_CLAIM"},
		{map[string]string{"KEYSMITH_PASSWORD_LOGIN": "false"}, "KEYSMITH_PASSWORD_LOGIN cannot be false without KEYSMITH_OIDC_ISSUER"},
	} {
		_, err := config.Load(testutil.Env(tc.env))
		var ps config.Problems
		if !errors.As(err, &ps) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v; want %q", tc.env, err, tc.want)
		}
	}
	// Plain http is for a provider on this machine.
	if _, err := config.Load(testutil.Env(map[string]string{"KEYSMITH_OIDC_ISSUER": "http://127.0.0.1:5556/dex", "KEYSMITH_OIDC_CLIENT_ID": "x"})); err != nil {
		t.Errorf("a local provider over http: %v", err)
	}
}
