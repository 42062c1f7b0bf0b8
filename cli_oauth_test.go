package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"keysmith/clock"
	"keysmith/models"
	"keysmith/testutil"
)

// oauth-client create registers an app in the user's workspace and prints
// its credentials as JSON; the database keeps only the secret's hash.
func TestOAuthClientCreateCommand(t *testing.T) {
	dir := t.TempDir()
	env := operatorEnv(dir)
	if code, _, stderr := runBinary(t, dir, env, "", "user", "create", "--email", "ops@example.com", "--password", "long enough pw"); code != 0 {
		t.Fatal(stderr)
	}
	create := func(more ...string) []string {
		return append([]string{"oauth-client", "create", "--email", "ops@example.com"}, more...)
	}

	code, out, stderr := runBinary(t, dir, env, "", create("--name", "Acme Sync", "--redirect-uri", "https://acme.example/callback",
		"--redirect-uri", "http://127.0.0.1:8765/callback", "--scopes", "files:read keys:read", "--logo-url", "https://acme.example/logo.png")...)
	var got struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if code != 0 || strings.Count(out, "\n") != 1 || json.Unmarshal([]byte(out), &got) != nil ||
		!strings.HasPrefix(got.ClientID, "ksapp_") || !strings.HasPrefix(got.ClientSecret, "ksapp_secret_") || stderr != "" {
		t.Fatalf("oauth-client create: %d %q %q", code, out, stderr)
	}

	code, out, stderr = runBinary(t, dir, env, "", create("--name", "Acme CLI", "--redirect-uri", "http://127.0.0.1/callback", "--scopes", "files:read", "--public")...)
	var pub map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &pub) != nil || !strings.HasPrefix(pub["client_id"], "ksapp_") || pub["client_secret"] != "" {
		t.Fatalf("public oauth-client create: %d %q %q", code, out, stderr)
	}

	db := testutil.OpenDB(t, filepath.Join(dir, "k.db"), clock.Real{})
	var apps []models.OAuthClient
	db.Order("id").Find(&apps)
	sum := sha256.Sum256([]byte(got.ClientSecret))
	if len(apps) != 2 {
		t.Fatalf("%d apps stored", len(apps))
	}
	a, p := apps[0], apps[1]
	if a.ClientID != got.ClientID || a.SecretHash != hex.EncodeToString(sum[:]) || a.Public || a.Name != "Acme Sync" || a.Scopes != "files:read keys:read" ||
		a.RedirectURIs != "https://acme.example/callback\nhttp://127.0.0.1:8765/callback" || a.LogoURL != "https://acme.example/logo.png" {
		t.Fatalf("stored %+v", a)
	}
	var m models.Membership
	db.Joins("JOIN users ON users.id = memberships.user_id").Where("users.email = ?", "ops@example.com").Take(&m)
	if a.WorkspaceID != m.WorkspaceID || a.CreatedByID == nil {
		t.Errorf("app in workspace %d, the user's is %d", a.WorkspaceID, m.WorkspaceID)
	}
	if !p.Public || p.SecretHash != "" {
		t.Errorf("public app stored %+v", p)
	}
	var row map[string]any
	db.Raw("SELECT * FROM oauth_clients WHERE id = ?", a.ID).Scan(&row)
	for col, v := range row {
		if s, ok := v.(string); ok && strings.Contains(s, got.ClientSecret) {
			t.Errorf("column %s holds the secret", col)
		}
	}

	// Failures name the flags, exit 1, and print nothing on stdout.
	if code, _, stderr := runBinary(t, dir, env, "", "user", "create", "--email", "viewer@example.com", "--password", "long enough pw"); code != 0 {
		t.Fatal(stderr)
	}
	var viewer models.User
	db.Where("email = ?", "viewer@example.com").Take(&viewer)
	db.Create(&models.Membership{WorkspaceID: m.WorkspaceID, UserID: viewer.ID, Role: models.RoleViewer})
	for _, tc := range []struct {
		args []string
		want []string // lines of stderr
	}{
		{create("--name", " ", "--redirect-uri", "http://acme.example/cb", "--scopes", "files:nope", "--logo-url", "ftp://x"), []string{
			"keysmith: --logo-url: the logo URL must be an https:// address",
			"keysmith: --name: give the app a name; users see it on the consent screen",
			"keysmith: --redirect-uri: http://acme.example/cb uses http: ",
			`keysmith: --scopes: scope "files:nope" names an unknown action`,
		}},
		{create("--name", "x", "--redirect-uri", "https://a.example/cb", "--scopes", " "), []string{"keysmith: --scopes: choose at least one scope the app may ask for"}},
		{[]string{"oauth-client", "create", "--email", "nobody@example.com", "--name", "x", "--redirect-uri", "https://a.example/cb", "--scopes", "files:read"}, []string{"keysmith: no user nobody@example.com"}},
		{[]string{"oauth-client", "create", "--email", "viewer@example.com", "--workspace", fmt.Sprint(m.WorkspaceID), "--name", "x", "--redirect-uri", "https://a.example/cb", "--scopes", "files:read"},
			[]string{"keysmith: only owners and admins can register OAuth apps, and viewer@example.com is viewer of workspace " + fmt.Sprint(m.WorkspaceID)}},
	} {
		code, out, stderr := runBinary(t, dir, env, "", tc.args...)
		lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
		ok := code == 1 && out == "" && len(lines) == len(tc.want)
		for i := 0; ok && i < len(lines); i++ {
			ok = strings.HasPrefix(lines[i], tc.want[i])
		}
		if !ok {
			t.Errorf("keysmith %q: exit %d, stdout %q\nstderr: %q\n  want: %q", tc.args, code, out, stderr, tc.want)
		}
	}
	code, _, stderr = runBinary(t, dir, env, "", "oauth-client", "create", "--email", "ops@example.com", "--name", "x", "--scopes", "files:read")
	if code != 2 || !strings.Contains(stderr, "--redirect-uri") {
		t.Errorf("missing --redirect-uri: %d %q", code, stderr)
	}
	var n int64
	db.Model(&models.OAuthClient{}).Count(&n)
	if n != 2 {
		t.Errorf("%d apps after the refused commands, want 2", n)
	}
}
