package config_test

import (
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
	if !c.Demo {
		t.Error("the default SQLite file should seed the demo account")
	}
	if c.IsPostgres() || c.SecureCookies() {
		t.Error("defaults claim PostgreSQL or https")
	}
}

func TestPostgresAndHTTPS(t *testing.T) {
	c, err := config.Load(testutil.Env(map[string]string{
		"KEYSMITH_DATABASE_URL": "postgres://u@db/keysmith",
		"KEYSMITH_BASE_URL":     "https://keys.example.com/",
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
	}))
	if err == nil {
		t.Fatal("invalid configuration accepted")
	}
	for _, name := range []string{
		"KEYSMITH_SCHEDULER_INTERVAL", "KEYSMITH_KEY_PREFIX", "KEYSMITH_SMTP_URL", "KEYSMITH_BASE_URL",
		"KEYSMITH_BCRYPT_COST", "KEYSMITH_DEMO", "KEYSMITH_SERVICE_TOKEN", "KEYSMITH_SESSION_LIFETIME", "KEYSMITH_LOG_FORMAT",
	} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not mention %s:\n%v", name, err)
		}
	}
}
