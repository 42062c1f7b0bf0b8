package main

import (
	"bytes"
	"context"
	"keysmith/keys"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"keysmith/accounts"
	"keysmith/clock"
	"keysmith/models"
)

// cli runs the binary's entry point with a database in a temp dir.
func cli(t *testing.T, dbPath, stdin string, args ...string) (int, string, string) {
	t.Helper()
	t.Setenv("KEYSMITH_DATABASE_URL", dbPath)
	t.Setenv("KEYSMITH_BCRYPT_COST", "10")
	t.Setenv("KEYSMITH_DEV_MAILBOX", "true")
	var out, errOut bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestMigrateCommand(t *testing.T) {
	db := filepath.Join(t.TempDir(), "k.db")
	code, out, stderr := cli(t, db, "", "migrate")
	if code != 0 || !strings.Contains(out, "schema version 5 (5 migrations applied now)") {
		t.Fatalf("first migrate: %d %q %q", code, out, stderr)
	}
	code, out, _ = cli(t, db, "", "migrate")
	if code != 0 || !strings.Contains(out, "(0 migrations applied now)") {
		t.Fatalf("second migrate: %d %q", code, out)
	}
}

func TestUserCreateCommand(t *testing.T) {
	db := filepath.Join(t.TempDir(), "k.db")
	code, out, stderr := cli(t, db, "", "user", "create", "--email", "Ops@Example.com", "--password", "long enough pw", "--name", "Ops")
	if code != 0 || !strings.Contains(out, "created user ops@example.com") {
		t.Fatalf("user create: %d %q %q", code, out, stderr)
	}
	code, out, _ = cli(t, db, "piped password\n", "user", "create", "--email", "piped@example.com", "--password", "-")
	if code != 0 {
		t.Fatalf("user create with --password -: %d %q", code, out)
	}

	gdb, err := models.Open(db, clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	defer models.Close(gdb)
	svc := accounts.New(gdb, clock.Real{}, 10)
	if _, err := svc.Authenticate(context.Background(), "ops@example.com", "long enough pw", "cli"); err != nil {
		t.Fatalf("CLI-created user cannot log in: %v", err)
	}
	if _, err := svc.Authenticate(context.Background(), "piped@example.com", "piped password", "cli"); err != nil {
		t.Fatalf("password from stdin: %v", err)
	}

	code, _, stderr = cli(t, db, "", "user", "create", "--email", "ops@example.com", "--password", "long enough pw")
	if code != 1 || !strings.Contains(stderr, "already registered") {
		t.Fatalf("duplicate user: %d %q", code, stderr)
	}
	code, _, stderr = cli(t, db, "", "user", "create", "--email", "x@example.com")
	if code != 1 || !strings.Contains(stderr, "--password") {
		t.Fatalf("missing password: %d %q", code, stderr)
	}
}

func TestInvalidConfigurationExitsWithEveryProblem(t *testing.T) {
	t.Setenv("KEYSMITH_KEY_PREFIX", "NOPE!")
	t.Setenv("KEYSMITH_SCHEDULER_INTERVAL", "soon")
	code, _, stderr := cli(t, filepath.Join(t.TempDir(), "k.db"), "", "serve")
	if code != 2 || !strings.Contains(stderr, "KEYSMITH_KEY_PREFIX") || !strings.Contains(stderr, "KEYSMITH_SCHEDULER_INTERVAL") {
		t.Fatalf("bad config: %d %q", code, stderr)
	}
}

func TestUnknownCommand(t *testing.T) {
	code, _, stderr := cli(t, filepath.Join(t.TempDir(), "k.db"), "", "frobnicate")
	if code != 2 || !strings.Contains(stderr, "unknown command") {
		t.Fatalf("unknown command: %d %q", code, stderr)
	}
}

func TestKeyCreateCommandPrintsOnlyTheSecret(t *testing.T) {
	db := filepath.Join(t.TempDir(), "k.db")
	if code, _, stderr := cli(t, db, "", "user", "create", "--email", "ops@example.com", "--password", "long enough pw"); code != 0 {
		t.Fatal(stderr)
	}
	code, out, stderr := cli(t, db, "", "key", "create", "--email", "ops@example.com", "--name", "deploy", "--permission", "write", "--env", "test", "--expires", "36h", "--rate-limit", "50000")
	secret := strings.TrimSpace(out)
	if code != 0 || !regexp.MustCompile(`^ks_sk_test_[0-9A-Za-z]{38}$`).MatchString(secret) || strings.Count(out, "\n") != 1 {
		t.Fatalf("key create: %d %q %q", code, out, stderr)
	}
	gdb, err := models.Open(db, clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	defer models.Close(gdb)
	var k models.APIKey
	gdb.Take(&k)
	if k.SecretHash != keys.Hash(secret) || k.Permission != "write" || k.ExpiresAt == nil || k.ExpiresAt.Sub(k.CreatedAt) != 36*time.Hour || k.RateLimit == nil || *k.RateLimit != 50000 {
		t.Fatalf("stored %+v", k)
	}
	code, out, _ = cli(t, db, "", "key", "create", "--email", "ops@example.com", "--name", "dated", "--expires", "2099-01-31")
	if code != 0 {
		t.Fatalf("dated key: %d %q", code, out)
	}
	code, _, stderr = cli(t, db, "", "key", "create", "--email", "ops@example.com", "--name", "", "--permission", "read")
	if code != 1 || !strings.Contains(stderr, "--name") {
		t.Fatalf("missing name: %d %q", code, stderr)
	}
	code, _, stderr = cli(t, db, "", "key", "create", "--email", "ops@example.com", "--name", "x", "--permission", "root")
	if code != 1 || !strings.Contains(stderr, "permission") {
		t.Fatalf("bad permission: %d %q", code, stderr)
	}
}
