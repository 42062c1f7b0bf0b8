// Package testutil is the shared setup of Keysmith's tests: fresh databases
// on both engines, the real app behind an httptest server, a browser-like
// HTTP client that scrapes forms, and an in-process SMTP server.
package testutil

import (
	"crypto/rand"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"keysmith/clock"
	"keysmith/config"
	"keysmith/models"
)

// PostgresEnv names the variable holding a PostgreSQL URL for tests.
const PostgresEnv = "KEYSMITH_TEST_POSTGRES_URL"

// Engines lists the database engines every database test runs on.
var Engines = []string{"sqlite", "postgres"}

// ForEachEngine runs fn once per engine as a subtest, each with a fresh,
// empty database. The PostgreSQL run is skipped, saying why, when
// KEYSMITH_TEST_POSTGRES_URL is not set.
func ForEachEngine(t *testing.T, fn func(t *testing.T, dbURL string)) {
	t.Helper()
	for _, engine := range Engines {
		t.Run(engine, func(t *testing.T) {
			fn(t, DatabaseURL(t, engine))
		})
	}
}

// DatabaseURL returns the URL of a fresh database on engine, removed when
// the test ends: a SQLite file in the test's temp dir, or a PostgreSQL
// schema of its own.
func DatabaseURL(t testing.TB, engine string) string {
	t.Helper()
	switch engine {
	case "sqlite":
		return filepath.Join(t.TempDir(), "keysmith.db")
	case "postgres":
		return postgresSchema(t)
	}
	t.Fatalf("unknown engine %q", engine)
	return ""
}

func postgresSchema(t testing.TB) string {
	t.Helper()
	base := os.Getenv(PostgresEnv)
	if base == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set on CI: the PostgreSQL run must not be skipped", PostgresEnv)
		}
		t.Skipf("%s is not set: skipping the PostgreSQL run (.ci/run sets it)", PostgresEnv)
	}
	admin, err := gorm.Open(postgres.Open(base), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatalf("connect to %s: %v", PostgresEnv, err)
	}
	schema := "ks_test_" + strings.ToLower(rand.Text()[:12])
	if err := admin.Exec("CREATE SCHEMA " + schema).Error; err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if err := admin.Exec("DROP SCHEMA " + schema + " CASCADE").Error; err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		if db, err := admin.DB(); err == nil {
			db.Close()
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse %s: %v", PostgresEnv, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Env turns a map into a lookup function for config.Load.
func Env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	}
}

// OpenDB opens the database at dbURL with clk as its clock, migrated, and
// closes it when the test ends.
func OpenDB(t testing.TB, dbURL string, clk clock.Clock) *gorm.DB {
	t.Helper()
	db, err := models.Open(dbURL, clk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { models.Close(db) })
	if models.IsPostgres(db) {
		// As the app's pool is by default: a test's burst must not take
		// more of the shared server's connections than a replica would.
		if err := models.SetPool(db, models.Pool{MaxOpen: config.DefaultPostgresConns}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := models.Migrate(db); err != nil {
		t.Fatal(err)
	}
	return db
}
