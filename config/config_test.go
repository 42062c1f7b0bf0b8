package config_test

import (
	"encoding/base64"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"keysmith/config"
	"keysmith/testutil"
)

func TestDefaults(t *testing.T) {
	c, err := config.Load(testutil.Env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":8080" || c.DatabaseURL != "keysmith.db" || c.KeyPrefix != "ks" || c.SchedulerEvery != time.Minute {
		t.Errorf("defaults: %+v", c)
	}
	if !c.Demo || !c.DevMailbox {
		t.Error("the default SQLite file should seed the demo account and use the dev mailbox")
	}
	if c.IsPostgres() || c.SecureCookies() {
		t.Error("defaults claim PostgreSQL or https")
	}
}

func TestPostgresAndHTTPS(t *testing.T) {
	c, err := config.Load(testutil.Env(map[string]string{
		"KEYSMITH_DATABASE_URL":   "postgres://u@db/keysmith",
		"KEYSMITH_BASE_URL":       "https://keys.example.com/",
		"KEYSMITH_SMTP_URL":       "smtps://u:p@mail.example.com",
		"KEYSMITH_ENCRYPTION_KEY": testutil.EncryptionKey,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !c.IsPostgres() || !c.SecureCookies() || c.BaseURL != "https://keys.example.com" {
		t.Errorf("got %+v", c)
	}
	if c.Demo {
		t.Error("an operator's own database must not get a demo account by default")
	}
}

func TestMaxKeyLifetime(t *testing.T) {
	for in, want := range map[string]time.Duration{"90d": 90 * 24 * time.Hour, "2160h": 90 * 24 * time.Hour, "": 0} {
		c, err := config.Load(testutil.Env(map[string]string{"KEYSMITH_MAX_KEY_LIFETIME": in}))
		if err != nil || c.MaxKeyLifetime != want {
			t.Errorf("%q: %s, %v; want %s", in, c.MaxKeyLifetime, err, want)
		}
	}
}

func TestProductionNeedsSMTP(t *testing.T) {
	_, err := config.Load(testutil.Env(map[string]string{"KEYSMITH_DATABASE_URL": "postgres://u@db/keysmith"}))
	if err == nil || !strings.Contains(err.Error(), "KEYSMITH_SMTP_URL is required") {
		t.Fatalf("no SMTP on an operator's database: %v", err)
	}
	c, err := config.Load(testutil.Env(map[string]string{"KEYSMITH_SMTP_URL": "smtp://mail.example.com"}))
	if err != nil || c.DevMailbox {
		t.Fatalf("SMTP configured: dev mailbox %v, err %v", c.DevMailbox, err)
	}
	_, err = config.Load(testutil.Env(map[string]string{"KEYSMITH_SMTP_URL": "smtp://mail.example.com", "KEYSMITH_DEV_MAILBOX": "true"}))
	if err == nil {
		t.Fatal("SMTP and the dev mailbox both on")
	}
}

func TestBaseURLSetRecordsTheOperatorsChoice(t *testing.T) {
	c, err := config.Load(testutil.Env(nil))
	if err != nil || c.BaseURLSet {
		t.Fatalf("default base URL counted as set: %v %v", c.BaseURLSet, err)
	}
	c, err = config.Load(testutil.Env(map[string]string{"KEYSMITH_BASE_URL": "https://keys.example.com"}))
	if err != nil || !c.BaseURLSet {
		t.Fatalf("KEYSMITH_BASE_URL not recorded as set: %v %v", c.BaseURLSet, err)
	}
}

// A task that reads only some settings is refused only for those: a
// migration sends no mail, so it must not need SMTP.
func TestProblemsConcerningSomeVariables(t *testing.T) {
	_, err := config.Load(testutil.Env(map[string]string{
		"KEYSMITH_DATABASE_URL":   "postgres://u@db/keysmith",
		"KEYSMITH_BCRYPT_COST":    "40",
		"KEYSMITH_KEY_PREFIX":     "Keys!",
		"KEYSMITH_ENCRYPTION_KEY": testutil.EncryptionKey,
	}))
	var problems config.Problems
	if !errors.As(err, &problems) || len(problems) != 3 {
		t.Fatalf("want three Problems, got %#v", err)
	}
	if problems[0].Variable != "KEYSMITH_SMTP_URL" || problems[0].Error() != "KEYSMITH_SMTP_URL "+problems[0].Reason {
		t.Errorf("first problem: %+v", problems[0])
	}
	if err := problems.Concerning("KEYSMITH_DATABASE_URL"); err != nil {
		t.Errorf("the database URL is valid, yet: %v", err)
	}
	err = problems.Concerning("KEYSMITH_DATABASE_URL", "KEYSMITH_BCRYPT_COST", "KEYSMITH_MAIL_FROM")
	if err == nil || !strings.Contains(err.Error(), "KEYSMITH_BCRYPT_COST must be between 10 and 14") ||
		strings.Contains(err.Error(), "KEYSMITH_SMTP_URL") || strings.Contains(err.Error(), "KEYSMITH_KEY_PREFIX") {
		t.Errorf("problems concerning the database and bcrypt cost: %v", err)
	}

	_, err = config.Load(testutil.Env(map[string]string{"KEYSMITH_DATABASE_URL": " "}))
	if !errors.As(err, &problems) || problems.Concerning("KEYSMITH_DATABASE_URL") == nil {
		t.Errorf("a blank database URL passed: %v", err)
	}
}

func TestEveryProblemIsReportedAtOnce(t *testing.T) {
	_, err := config.Load(testutil.Env(map[string]string{
		"KEYSMITH_SCHEDULER_INTERVAL": "every minute",
		"KEYSMITH_KEY_PREFIX":         "Keys!",
		"KEYSMITH_SMTP_URL":           "mail.example.com:587",
		"KEYSMITH_BASE_URL":           "keys.example.com",
		"KEYSMITH_BCRYPT_COST":        "40",
		"KEYSMITH_DEMO":               "maybe",
		"KEYSMITH_SERVICE_TOKEN":      "short",
		"KEYSMITH_SESSION_LIFETIME":   "-1h",
		"KEYSMITH_LOG_FORMAT":         "xml",
		"KEYSMITH_MAX_KEY_LIFETIME":   "3h",
	}))
	if err == nil {
		t.Fatal("invalid configuration accepted")
	}
	for _, name := range []string{
		"KEYSMITH_SCHEDULER_INTERVAL", "KEYSMITH_KEY_PREFIX", "KEYSMITH_SMTP_URL", "KEYSMITH_BASE_URL",
		"KEYSMITH_BCRYPT_COST", "KEYSMITH_DEMO", "KEYSMITH_SERVICE_TOKEN", "KEYSMITH_SESSION_LIFETIME", "KEYSMITH_LOG_FORMAT", "KEYSMITH_MAX_KEY_LIFETIME",
	} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not mention %s:\n%v", name, err)
		}
	}
}

// The README's configuration table must name every variable Load reads.
func TestREADMEListsEveryVariable(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("config.go")
	if err != nil {
		t.Fatal(err)
	}
	read := regexp.MustCompile(`p\.\w+\("(KEYSMITH_[A-Z_]+)"`).FindAllStringSubmatch(string(src), -1)
	if len(read) < 10 {
		t.Fatalf("found only %d variables read in config.go", len(read))
	}
	documented := map[string]bool{}
	for _, v := range config.Variables {
		documented[v.Name] = true
	}
	for _, m := range read {
		if !documented[m[1]] {
			t.Errorf("%s is read but missing from config.Variables", m[1])
		}
		if !strings.Contains(string(readme), "`"+m[1]+"`") {
			t.Errorf("%s is read but missing from the README", m[1])
		}
	}
}

func TestDatabaseURLOfAnotherEngineIsAConfigurationError(t *testing.T) {
	_, err := config.Load(func(k string) (string, bool) {
		if k == "KEYSMITH_DATABASE_URL" {
			return "mysql://root@localhost/keys", true
		}
		if k == "KEYSMITH_DEV_MAILBOX" {
			return "true", true
		}
		return "", false
	})
	if err == nil || !strings.Contains(err.Error(), "KEYSMITH_DATABASE_URL is a mysql:// URL") {
		t.Fatalf("mysql:// URL: %v", err)
	}
}

func TestEncryptionKey(t *testing.T) {
	c, err := config.Load(testutil.Env(nil))
	if err != nil || c.EncryptionKey != nil {
		t.Fatalf("unset: %v, %v; want nil (a key file beside SQLite)", c.EncryptionKey, err)
	}
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(250 - i) // URL-safe and standard base64 differ on these bytes
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		c, err := config.Load(testutil.Env(map[string]string{"KEYSMITH_ENCRYPTION_KEY": enc.EncodeToString(key) + "\n"}))
		if err != nil || !slices.Equal(c.EncryptionKey, key) {
			t.Errorf("%s: %v, %v", enc.EncodeToString(key), c.EncryptionKey, err)
		}
	}
	for value, reason := range map[string]string{
		base64.StdEncoding.EncodeToString(key[:16]): "must be 32 random bytes in base64 (openssl rand -base64 32), not 16 bytes",
		"correct horse battery staple!":             "is not base64",
	} {
		_, err := config.Load(testutil.Env(map[string]string{"KEYSMITH_ENCRYPTION_KEY": value}))
		var problems config.Problems
		if !errors.As(err, &problems) || len(problems) != 1 || problems[0].Variable != "KEYSMITH_ENCRYPTION_KEY" ||
			!strings.Contains(problems[0].Reason, reason) {
			t.Errorf("%q: %v; want %q", value, err, reason)
		}
		if strings.Contains(err.Error(), value) {
			t.Errorf("the problem repeats the secret: %v", err)
		}
	}
}

// Several replicas must share the key that encrypts the signing keys, so
// PostgreSQL without one is refused; SQLite keeps a key file instead.
func TestPostgresNeedsAnEncryptionKey(t *testing.T) {
	_, err := config.Load(testutil.Env(map[string]string{
		"KEYSMITH_DATABASE_URL": "postgres://u@db/keysmith",
		"KEYSMITH_SMTP_URL":     "smtps://u:p@mail.example.com",
	}))
	var problems config.Problems
	if !errors.As(err, &problems) || len(problems) != 1 || problems[0].Variable != "KEYSMITH_ENCRYPTION_KEY" {
		t.Fatalf("got %v", err)
	}
	if err := problems.Concerning("KEYSMITH_DATABASE_URL"); err != nil {
		t.Errorf("keysmith migrate needs no encryption key: %v", err)
	}
}

func TestSudoTimeout(t *testing.T) {
	c, err := config.Load(testutil.Env(nil))
	if err != nil || c.SudoTimeout != time.Hour {
		t.Fatalf("default sudo timeout %s, %v; want 1h", c.SudoTimeout, err)
	}
	c, err = config.Load(testutil.Env(map[string]string{"KEYSMITH_SUDO_TIMEOUT": "15m"}))
	if err != nil || c.SudoTimeout != 15*time.Minute {
		t.Fatalf("15m: %s, %v", c.SudoTimeout, err)
	}
	for _, bad := range []string{"0s", "-5m", "an hour"} {
		_, err := config.Load(testutil.Env(map[string]string{"KEYSMITH_SUDO_TIMEOUT": bad}))
		var problems config.Problems
		if !errors.As(err, &problems) || problems.Concerning("KEYSMITH_SUDO_TIMEOUT") == nil {
			t.Errorf("%q accepted: %v", bad, err)
		}
	}
}
