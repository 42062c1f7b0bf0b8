// Package models holds Keysmith's gorm models, its ordered schema
// migrations and the queries that belong to them.
package models

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"keysmith/clock"
)

// Open connects to the database named by url: a postgres:// URL, or else a
// SQLite file path. gorm's timestamps follow clk, so tests control them.
func Open(url string, clk clock.Clock) (*gorm.DB, error) {
	cfg := &gorm.Config{
		NowFunc:                func() time.Time { return clk.Now() },
		Logger:                 logger.Discard,
		TranslateError:         true,
		SkipDefaultTransaction: true,
		PrepareStmt:            true, // reuse prepared statements: the hot queries repeat
	}
	if strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://") {
		db, err := gorm.Open(postgres.Open(url), cfg)
		if err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		return db, nil
	}
	if err := createPrivate(url); err != nil {
		return nil, fmt.Errorf("create sqlite %s: %w", url, err)
	}
	db, err := gorm.Open(sqlite.Open(sqliteDSN(url)), cfg)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", url, err)
	}
	return db, nil
}

// createPrivate creates a new SQLite file readable by its owner only, before
// SQLite would create it world-readable (0644 less the umask); SQLite gives
// the -wal and -shm files the main file's mode. It leaves an existing file,
// and its mode, as they are: an operator may have chosen it.
func createPrivate(path string) error {
	path, _, _ = strings.Cut(path, "?")
	if path == "" || path == ":memory:" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// sqliteDSN turns a path into a DSN with the settings a web app needs: WAL so
// readers never wait for the writer, a busy timeout instead of instant
// "database is locked" errors, foreign keys enforced, and write transactions
// that take the write lock up front (no deadlocked lock upgrades).
func sqliteDSN(path string) string {
	const params = "_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=5000&_foreign_keys=on&_txlock=immediate"
	if strings.Contains(path, "?") {
		return "file:" + path + "&" + params
	}
	return "file:" + path + "?" + params
}

// IsPostgres reports whether db talks to PostgreSQL.
func IsPostgres(db *gorm.DB) bool { return db.Dialector.Name() == "postgres" }

// Ping checks that the database answers.
func Ping(db *gorm.DB) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	return sqlDB.Ping()
}

// Close closes the connection pool.
func Close(db *gorm.DB) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

// Pool sizes the connection pool. Go's default keeps only 2 idle
// connections, so under load every other query opens a new one: on
// PostgreSQL that is a new backend process each time.
type Pool struct {
	MaxOpen, MaxIdle int
	MaxLifetime      time.Duration
}

// SetPool applies p; zero fields keep Go's defaults.
func SetPool(db *gorm.DB, p Pool) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	if p.MaxOpen > 0 {
		sqlDB.SetMaxOpenConns(p.MaxOpen)
	}
	if p.MaxIdle > 0 {
		sqlDB.SetMaxIdleConns(p.MaxIdle)
	}
	if p.MaxLifetime > 0 {
		sqlDB.SetConnMaxLifetime(p.MaxLifetime)
	}
	return nil
}
