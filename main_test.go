package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"keysmith/accounts"
	"keysmith/clock"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
	"keysmith/tokens"
)

// testVersion is the release the test binary is linked as.
const testVersion = "v0.0.0-test"

// binDir holds the binary built once for the whole test run.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "keysmith-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

var buildBinary = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(binDir, "keysmith")
	out, err := exec.Command("go", "build", "-ldflags=-X main.version="+testVersion, "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// keysmithBinary is the command built as a packager would, with the
// release version linked in.
func keysmithBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// freshEnv is the test process's environment without its KEYSMITH_*
// settings, plus vars.
func freshEnv(vars map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEYSMITH_") {
			env = append(env, kv)
		}
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}

// operatorEnv is an operator's own database in dir and no SMTP: enough
// for every admin command, not for serve.
func operatorEnv(dir string, more ...string) map[string]string {
	env := map[string]string{
		"KEYSMITH_DATABASE_URL": filepath.Join(dir, "k.db"),
		"KEYSMITH_BCRYPT_COST":  "10",
	}
	for i := 0; i+1 < len(more); i += 2 {
		env[more[i]] = more[i+1]
	}
	return env
}

// runBinary runs the built keysmith in dir with env as its only KEYSMITH_*
// settings. A command still running after 30 seconds fails the test: it
// is serving instead of exiting.
func runBinary(t *testing.T, dir string, env map[string]string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, keysmithBinary(t), args...)
	cmd.Dir, cmd.Env, cmd.Stdin = dir, freshEnv(env), strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("keysmith %q still running after 30s:\n%s%s", args, out.String(), errOut.String())
	}
	if err != nil && !errors.As(err, new(*exec.ExitError)) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// cli runs the entry point in-process with a database in a temp dir.
func cli(t *testing.T, dbPath, stdin string, args ...string) (int, string, string) {
	t.Helper()
	t.Setenv("KEYSMITH_DATABASE_URL", dbPath)
	t.Setenv("KEYSMITH_BCRYPT_COST", "10")
	t.Setenv("KEYSMITH_DEV_MAILBOX", "true")
	var out, errOut bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// Help and --version once started the server (listening, creating
// keysmith.db); they must print and exit 0 without touching anything.
func TestHelpAndVersionExitWithoutServing(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"KEYSMITH_ADDR": "127.0.0.1:0"} // a fresh machine, but never port 8080
	for _, args := range [][]string{
		{"-h"}, {"--help"},
		{"serve", "--help"}, {"migrate", "--help"}, {"user", "create", "--help"},
		{"key", "create", "--help"}, {"key", "create", "-h", "--email", "ops@example.com"},
	} {
		code, out, stderr := runBinary(t, dir, env, "", args...)
		command := "keysmith"
		for _, a := range args {
			if !strings.HasPrefix(a, "-") && !strings.Contains(a, "@") {
				command += " " + a
			}
		}
		if code != 0 || !strings.HasPrefix(out, "Usage: "+command+" ") || stderr != "" {
			t.Errorf("keysmith %q: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, out, stderr)
		}
	}
	_, out, _ := runBinary(t, dir, env, "", "key", "create", "--help")
	for _, flag := range []string{"--email", "--name", "--permission", "--env", "--kind", "--expires", "--workspace", "--rate-limit"} {
		if !strings.Contains(out, flag) {
			t.Errorf("key create --help does not explain %s:\n%s", flag, out)
		}
	}

	code, out, stderr := runBinary(t, dir, env, "", "--version")
	if code != 0 || !strings.HasPrefix(out, "keysmith "+testVersion) || strings.Count(out, "\n") != 1 || stderr != "" {
		t.Errorf("--version: exit %d %q %q", code, out, stderr)
	}

	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("help or --version wrote %v", entries)
	}
}

// A wrong command line is a usage error (exit 2) that names the mistake,
// before any database is opened.
func TestUsageErrorsExit2(t *testing.T) {
	dir := t.TempDir()
	key := []string{"key", "create", "--email", "ops@example.com", "--name", "deploy", "--permission", "read"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "keysmith: unknown flag --bogus\nRun 'keysmith --help' for usage.\n"},
		{[]string{"frobnicate"}, "keysmith: unexpected argument frobnicate\nRun 'keysmith --help' for usage.\n"},
		{[]string{"serve", "--port", "9000"}, "keysmith: unknown flag --port\nRun 'keysmith serve --help' for usage.\n"},
		{[]string{"user", "create", "--email", "ops@example.com"}, "keysmith: missing flags: --password=PASSWORD\nRun 'keysmith user create --help' for usage.\n"},
		{append(key[:6:6], "--permission", "root"), `keysmith: --permission must be one of "read","write","admin" but got "root"` + "\nRun 'keysmith key create --help' for usage.\n"},
		{append(key, "--expires", "3s"), "keysmith: --expires 3s: a key must live at least 1 hour\n"},
		{append(key, "--expires", "0d"), "keysmith: --expires 0d: give a whole number of days, such as 30d\n"},
		{append(key, "--expires", "soon"), "keysmith: --expires soon: give never, days (30d), a duration (36h) or a date (2027-01-31)\n"},
		{append(key, "--rate-limit", "0"), "keysmith: --rate-limit 0: choose 1 to 1000000 requests per minute\n"},
	} {
		code, out, stderr := runBinary(t, dir, operatorEnv(dir), "", tc.args...)
		if code != 2 || stderr != tc.want || out != "" {
			t.Errorf("keysmith %q: exit %d\nstderr: %q\n  want: %q", tc.args, code, stderr, tc.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a usage error still opened the database: %v", entries)
	}
}

// Each command is refused only for invalid settings it reads: a migration
// sends no mail, so it must not need SMTP on an operator's database.
func TestEachCommandReadsOnlyItsSettings(t *testing.T) {
	dir := t.TempDir()
	// Wrong for serve (no SMTP, a bad base URL and log format), fine for the admin commands.
	env := operatorEnv(dir, "KEYSMITH_BASE_URL", "keys.example.com", "KEYSMITH_LOG_FORMAT", "xml")
	if code, out, stderr := runBinary(t, dir, env, "", "migrate"); code != 0 || !strings.Contains(out, fmt.Sprintf("(%d migrations applied now)", models.SchemaVersion())) {
		t.Fatalf("migrate: %d %q %q", code, out, stderr)
	}
	if code, out, stderr := runBinary(t, dir, env, "long enough pw\n", "user", "create", "--email", "ops@example.com", "--password", "-"); code != 0 {
		t.Fatalf("user create: %d %q %q", code, out, stderr)
	}
	if code, out, stderr := runBinary(t, dir, env, "", "key", "create", "--email", "ops@example.com", "--name", "deploy", "--permission", "read"); code != 0 || !strings.HasPrefix(out, "ks_sk_live_") {
		t.Fatalf("key create: %d %q %q", code, out, stderr)
	}
	code, _, stderr := runBinary(t, dir, env, "", "serve")
	for _, name := range []string{"KEYSMITH_SMTP_URL", "KEYSMITH_BASE_URL", "KEYSMITH_LOG_FORMAT"} {
		if code != 2 || !strings.Contains(stderr, name) {
			t.Errorf("serve does not refuse %s: %d %q", name, code, stderr)
		}
	}

	for _, tc := range []struct {
		setting, value string
		args           []string
	}{
		{"KEYSMITH_DATABASE_URL", " ", []string{"migrate"}},
		{"KEYSMITH_BCRYPT_COST", "40", []string{"user", "create", "--email", "x@example.com", "--password", "long enough pw"}},
		{"KEYSMITH_KEY_PREFIX", "NOPE!", []string{"key", "create", "--email", "ops@example.com", "--name", "x", "--permission", "read"}},
		{"KEYSMITH_MAX_KEY_LIFETIME", "3h", []string{"key", "create", "--email", "ops@example.com", "--name", "x", "--permission", "read"}},
	} {
		code, _, stderr := runBinary(t, dir, operatorEnv(dir, tc.setting, tc.value), "", tc.args...)
		if code != 2 || !strings.HasPrefix(stderr, "keysmith: invalid configuration:\n  "+tc.setting+" ") || strings.Count(stderr, "KEYSMITH_") != 1 {
			t.Errorf("%s with %s=%q: %d %q", tc.args[0], tc.setting, tc.value, code, stderr)
		}
	}
}

// Failures read as terminal messages naming flags, not as form hints or
// database errors.
func TestMessagesAreForATerminal(t *testing.T) {
	dir := t.TempDir()
	env := operatorEnv(dir)
	if code, _, stderr := runBinary(t, dir, env, "", "user", "create", "--email", "ops@example.com", "--password", "long enough pw"); code != 0 {
		t.Fatal(stderr)
	}
	key := func(more ...string) []string {
		return append([]string{"key", "create", "--email", "ops@example.com", "--name", "deploy", "--permission", "read"}, more...)
	}
	for _, tc := range []struct {
		args []string
		want string // the whole of stderr, or its start when it ends with a space
	}{
		{[]string{"key", "create", "--email", "nobody@example.com", "--name", "x", "--permission", "read"}, "keysmith: no user nobody@example.com\n"},
		{[]string{"user", "create", "--email", "OPS@example.com", "--password", "long enough pw"}, "keysmith: ops@example.com is already registered\n"},
		{[]string{"user", "create", "--email", "new@example.com", "--password", "short"}, "keysmith: --password: use at least 8 characters\n"},
		{[]string{"user", "create", "--email", "not an address", "--password", "long enough pw"}, "keysmith: --email: "},
		{key("--name", " "), "keysmith: --name: give the key a name, such as the service that will use it\n"},
		{key("--workspace", "99"), "keysmith: ops@example.com is not a member of workspace 99\n"},
		{key("--expires", "2020-01-31"), "keysmith: --expires: "},
		{key("--kind", "pk", "--permission", "write"), "keysmith: --permission: "},
	} {
		code, out, stderr := runBinary(t, dir, env, "", tc.args...)
		matches := stderr == tc.want
		if strings.HasSuffix(tc.want, " ") {
			matches = strings.HasPrefix(stderr, tc.want) && strings.Count(stderr, "\n") == 1
		}
		if code != 1 || out != "" || !matches {
			t.Errorf("keysmith %q: exit %d\nstderr: %q\n  want: %q", tc.args, code, stderr, tc.want)
		}
		if regexp.MustCompile(`invalid input|record not found|accounts:|keys:|[A-Z][a-z]+ .*\.\n$`).MatchString(stderr) {
			t.Errorf("keysmith %q: not a terminal message: %q", tc.args, stderr)
		}
	}
}

// --expires takes never, days, a Go duration of at least an hour or a
// last day; the web form's choices do not limit the CLI.
func TestKeyCreateExpires(t *testing.T) {
	dir := t.TempDir()
	env := operatorEnv(dir)
	if code, _, stderr := runBinary(t, dir, env, "", "user", "create", "--email", "ops@example.com", "--password", "long enough pw"); code != 0 {
		t.Fatal(stderr)
	}
	// Expiry after creation; 0 for never. A date keeps the key through that day (UTC).
	lifetimes := map[string]time.Duration{"never": 0, "30d": 30 * 24 * time.Hour, "36h": 36 * time.Hour, "1h": time.Hour}
	y, m, d := time.Now().UTC().AddDate(1, 0, 0).Date()
	date := fmt.Sprintf("%04d-%02d-%02d", y, m, d)
	lastDay := time.Date(y, m, d, 23, 59, 59, 0, time.UTC)
	for _, expires := range []string{"never", "30d", "36h", "1h", date} {
		code, out, stderr := runBinary(t, dir, env, "", "key", "create", "--email", "ops@example.com", "--name", expires, "--permission", "read", "--expires", expires)
		if code != 0 || strings.Count(out, "\n") != 1 {
			t.Errorf("--expires %s: %d %q %q", expires, code, out, stderr)
		}
	}
	db, err := models.Open(filepath.Join(dir, "k.db"), clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	defer models.Close(db)
	var dated models.APIKey
	if err := db.Where("name = ?", date).Take(&dated).Error; err != nil || dated.ExpiresAt == nil || !dated.ExpiresAt.Equal(lastDay) {
		t.Errorf("--expires %s: stored %v (%v)", date, dated.ExpiresAt, err)
	}
	for expires, lifetime := range lifetimes {
		var k models.APIKey
		err := db.Where("name = ?", expires).Take(&k).Error
		ok := err == nil && (lifetime == 0 && k.ExpiresAt == nil || k.ExpiresAt != nil && k.ExpiresAt.Sub(k.CreatedAt) == lifetime)
		if !ok {
			t.Errorf("--expires %s: stored created %v, expires %v (%v)", expires, k.CreatedAt, k.ExpiresAt, err)
		}
	}
}

func TestDescribeVersion(t *testing.T) {
	built := &debug.BuildInfo{
		Main: debug.Module{Version: "v1.2.3"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0123456789abcdef0123"},
			{Key: "vcs.time", Value: "2026-01-02T03:04:05Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	for _, tc := range []struct {
		release string
		info    *debug.BuildInfo
		want    string
	}{
		{"", nil, "keysmith (devel)"},
		{"", &debug.BuildInfo{}, "keysmith (devel)"},
		{"", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "keysmith (devel)"}, // -buildvcs=false
		{"", built, "keysmith v1.2.3 (commit 0123456789ab, 2026-01-02T03:04:05Z, modified)"},
		{"v2.0.0", built, "keysmith v2.0.0 (commit 0123456789ab, 2026-01-02T03:04:05Z, modified)"},
		{"v2.0.0", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "keysmith v2.0.0"},
	} {
		if got := describeVersion(tc.release, tc.info); got != tc.want {
			t.Errorf("describeVersion(%q, %+v) = %q, want %q", tc.release, tc.info, got, tc.want)
		}
	}
}

func TestListenURL(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4zero, Port: 8081}, "http://localhost:8081"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 8081}, "http://localhost:8081"},
		{&net.TCPAddr{Port: 8081}, "http://localhost:8081"},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8081}, "http://127.0.0.1:8081"},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 8081}, "http://[::1]:8081"},
	} {
		if got := listenURL(tc.addr); got != tc.want {
			t.Errorf("listenURL(%v) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}

func TestMigrateCommand(t *testing.T) {
	db := filepath.Join(t.TempDir(), "k.db")
	code, out, stderr := cli(t, db, "", "migrate")
	v := models.SchemaVersion()
	if code != 0 || !strings.Contains(out, fmt.Sprintf("schema version %d (%d migrations applied now)", v, v)) {
		t.Fatalf("first migrate: %d %q %q", code, out, stderr)
	}
	code, out, _ = cli(t, db, "", "migrate")
	if code != 0 || !strings.Contains(out, "(0 migrations applied now)") {
		t.Fatalf("second migrate: %d %q", code, out)
	}
}

// signing-key rotate adds a key each time (the first one on a new
// database, with the key file that encrypts them), and works even when
// the stored keys no longer decrypt.
func TestSigningKeyRotateCommand(t *testing.T) {
	db := filepath.Join(t.TempDir(), "k.db")
	for range 2 {
		code, out, stderr := cli(t, db, "", "signing-key", "rotate")
		if code != 0 || !strings.HasPrefix(out, "new signing key ") {
			t.Fatalf("signing-key rotate: %d %q %q", code, out, stderr)
		}
	}
	gdb := testutil.OpenDB(t, db, clock.Real{})
	var n int64
	gdb.Model(&models.SigningKey{}).Count(&n)
	if n != 2 {
		t.Errorf("%d signing keys, want one per rotation", n)
	}
	if fi, err := os.Stat(db + tokens.KeyFileSuffix); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", fi, err)
	}
	// The key file lost (a restore without it): the server refuses to start
	// and says to rotate; rotating starts over with the new key file.
	if err := os.WriteFile(db+tokens.KeyFileSuffix, []byte(base64.StdEncoding.EncodeToString(make([]byte, tokens.EncryptionKeySize))), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := cli(t, db, "", "signing-key", "rotate"); code != 0 || !strings.HasPrefix(out, "new signing key ") {
		t.Fatalf("signing-key rotate under a new encryption key: %d %q %q", code, out, stderr)
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

	gdb := testutil.OpenDB(t, db, clock.Real{})
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
	if code != 2 || !strings.Contains(stderr, "--password") {
		t.Fatalf("missing password: %d %q", code, stderr)
	}

	// With password sign-in off, the CLI still makes users (break-glass
	// access), and says where they sign in.
	t.Setenv("KEYSMITH_OIDC_ISSUER", "https://id.example.com")
	t.Setenv("KEYSMITH_OIDC_CLIENT_ID", "keysmith")
	t.Setenv("KEYSMITH_PASSWORD_LOGIN", "false")
	code, out, stderr = cli(t, db, "", "user", "create", "--email", "glass@example.com", "--password", "long enough pw")
	if code != 0 || !strings.Contains(out, "created user glass@example.com") || !strings.Contains(stderr, "warning: KEYSMITH_PASSWORD_LOGIN is false") || !strings.Contains(stderr, "/login/password") {
		t.Fatalf("break-glass user: %d %q %q", code, out, stderr)
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

// A scope catalog whose routes cannot be matched unambiguously stops the
// server before it serves, naming the route and who claimed it.
func TestBadRouteRulesExit2(t *testing.T) {
	dir := t.TempDir()
	scopes := filepath.Join(dir, "scopes.json")
	catalog := `{"resources":[{"name":"files","actions":[{"name":"read","routes":["GET /files/{id}"]},{"name":"write","routes":["GET /files/{id}"]}]}]}`
	if err := os.WriteFile(scopes, []byte(catalog), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KEYSMITH_SCOPES_FILE", scopes)
	t.Setenv("KEYSMITH_ADDR", "127.0.0.1:0")
	code, _, stderr := cli(t, filepath.Join(dir, "k.db"), "", "serve")
	if code != 2 || !strings.Contains(stderr, `"GET /files/{id}" is claimed twice: by files:read and by files:write`) {
		t.Fatalf("bad route rules: %d %q", code, stderr)
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
	gdb := testutil.OpenDB(t, db, clock.Real{})
	var k models.APIKey
	gdb.Take(&k)
	if k.SecretHash != keys.Hash(secret) || k.Permission != "write" || k.ExpiresAt == nil || k.ExpiresAt.Sub(k.CreatedAt) != 36*time.Hour || k.RateLimit == nil || *k.RateLimit != 50000 {
		t.Fatalf("stored %+v", k)
	}
	nextYear := time.Now().AddDate(1, 0, 0).Format(time.DateOnly)
	code, out, _ = cli(t, db, "", "key", "create", "--email", "ops@example.com", "--name", "dated", "--permission", "read", "--expires", nextYear)
	if code != 0 {
		t.Fatalf("dated key: %d %q", code, out)
	}
	code, _, stderr = cli(t, db, "", "key", "create", "--email", "ops@example.com", "--name", "", "--permission", "read")
	if code != 1 || !strings.Contains(stderr, "--name") {
		t.Fatalf("missing name: %d %q", code, stderr)
	}
	code, _, stderr = cli(t, db, "", "key", "create", "--email", "ops@example.com", "--name", "x", "--permission", "root")
	if code != 2 || !strings.Contains(stderr, "--permission") {
		t.Fatalf("bad permission: %d %q", code, stderr)
	}
}
