// Package app is Keysmith's services container: it builds every dependency
// once from the configuration, in order, and tears them down in reverse.
// main and the tests both start Keysmith through it.
package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/alexedwards/scs/gormstore"
	"github.com/alexedwards/scs/v2"
	"github.com/labstack/echo/v4"
	"gorm.io/gorm"

	"keysmith/accounts"
	"keysmith/clock"
	"keysmith/config"
	"keysmith/handlers"
	"keysmith/identity"
	"keysmith/keys"
	"keysmith/mailer"
	"keysmith/metrics"
	"keysmith/models"
	"keysmith/oauth"
	"keysmith/outbox"
	"keysmith/ratelimit"
	"keysmith/scheduler"
	"keysmith/teams"
	"keysmith/tokens"
	"keysmith/webhooks"
)

// Demo account seeded on a development database (KEYSMITH_DEMO).
const (
	DemoEmail    = accounts.DemoEmail
	DemoPassword = accounts.DemoPassword
)

// Options override what a test needs to control.
type Options struct {
	Clock     clock.Clock      // default: the wall clock
	Log       *slog.Logger     // default: stderr, per KEYSMITH_LOG_*
	Transport mailer.Transport // default: the dev mailbox or SMTP, as configured
	// RedisPrefix starts every rate-limit key written to KEYSMITH_REDIS_URL
	// (default ratelimit.DefaultPrefix), so tests sharing a Redis keep apart.
	RedisPrefix string
	// SSOBackoff is the wait before each retry of the identity provider's
	// discovery (default: 1s doubling to a minute).
	SSOBackoff func(n int) time.Duration
}

// App is a running Keysmith.
type App struct {
	Config    config.Config
	Clock     clock.Clock
	Log       *slog.Logger
	DB        *gorm.DB
	Sessions  *scs.SessionManager
	Accounts  *accounts.Service
	Keys      *keys.Service
	Tokens    *tokens.Service // signs and verifies the tokens derived from keys
	OAuth     *oauth.Service  // the authorization server for third-party apps
	Verifier  *keys.Verifier
	Usage     *keys.Usage
	Mailer    *mailer.Mailer
	Mailbox   *mailer.Mailbox
	Echo      *echo.Echo
	Scheduler *scheduler.Scheduler
	Reminders *scheduler.Reminders
	Outbox    *outbox.Outbox // every email and webhook call, durable
	Webhooks  *webhooks.Service
	Teams     *teams.Service
	Feed      *keys.ChangeFeed     // on PostgreSQL: key changes to and from the other replicas
	Flusher   *scheduler.Scheduler // writes buffered last-used times
	Metrics   *metrics.Metrics     // always collected; served at /metrics only with KEYSMITH_METRICS_TOKEN

	// Inactivity applies the workspaces' inactivity policies; its hooks
	// tell people and webhooks of its warnings and actions.
	Inactivity *scheduler.Inactivity

	// SessionList is what Settings → Security lists of users' sessions.
	SessionList *accounts.Sessions
	// SSO is single sign-on through the operator's OpenID provider; nil
	// without KEYSMITH_OIDC_ISSUER.
	SSO *identity.SSO

	sessionStore *gormstore.GORMStore
	sharedLimits *ratelimit.Fallback // rate limits in Redis; nil without KEYSMITH_REDIS_URL
	stopFeed     context.CancelFunc
	feedDone     chan struct{}
	closeOnce    sync.Once
	closeErr     error
}

// NewLogger builds the structured logger the configuration asks for.
func NewLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// OpenDB opens and migrates the database.
func OpenDB(cfg config.Config, clk clock.Clock) (*gorm.DB, int, error) {
	db, err := models.Open(cfg.DatabaseURL, clk)
	if err != nil {
		return nil, 0, err
	}
	if err := models.SetPool(db, models.Pool{MaxOpen: cfg.DBMaxOpenConns, MaxIdle: cfg.DBMaxIdleConns, MaxLifetime: cfg.DBConnMaxLifetime}); err != nil {
		_ = models.Close(db)
		return nil, 0, err
	}
	applied, err := models.Migrate(db)
	if err != nil {
		_ = models.Close(db)
		return nil, 0, err
	}
	return db, applied, nil
}

// NewTokens builds the token service over the signing keys; it reads none
// yet (the server calls Load; signing-key rotate need not, so it can start
// over when the keys no longer decrypt). Its encryption key comes from
// KEYSMITH_ENCRYPTION_KEY, or on SQLite from a key file beside the
// database; PostgreSQL without one is a configuration error.
func NewTokens(cfg config.Config, db *gorm.DB, clk clock.Clock) (*tokens.Service, error) {
	encKey, source, err := tokens.LoadEncryptionKey(cfg.EncryptionKey, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	return tokens.New(db, clk, tokens.Options{Issuer: cfg.BaseURL, EncryptionKey: encKey, KeySource: source, Covers: keys.Covers})
}

// ConfigError is a setting that stops Keysmith from starting: the
// command exits 2, as for the settings config.Load refuses.
type ConfigError struct{ error }

func (e ConfigError) Unwrap() error { return e.error }

// NewKeys builds the keys service with the operator's scope catalog (or
// the demo one), key prefix and maximum lifetime.
func NewKeys(cfg config.Config, db *gorm.DB, clk clock.Clock) (*keys.Service, error) {
	catalog := keys.DemoCatalog()
	if cfg.ScopesFile != "" {
		var err error
		if catalog, err = keys.LoadCatalog(cfg.ScopesFile); err != nil {
			return nil, ConfigError{err}
		}
	}
	return keys.NewService(db, clk, catalog, cfg.KeyPrefix, cfg.MaxKeyLifetime), nil
}

// New builds Keysmith: database (migrated), services, HTTP routes and
// background jobs. Nothing listens or runs until Run.
func New(cfg config.Config, opts Options) (*App, error) {
	a := &App{Config: cfg, Clock: opts.Clock, Log: opts.Log, Metrics: metrics.New()}
	if a.Clock == nil {
		a.Clock = clock.Real{}
	}
	if a.Log == nil {
		a.Log = NewLogger(cfg, os.Stderr)
	}

	db, applied, err := OpenDB(cfg, a.Clock)
	if err != nil {
		return nil, err
	}
	a.DB = db
	if applied > 0 {
		a.Log.Info("database migrated", "schema_version", models.SchemaVersion(), "applied", applied)
	}

	a.sessionStore, err = gormstore.New(db)
	if err != nil {
		_ = models.Close(db)
		return nil, fmt.Errorf("session store: %w", err)
	}
	a.Sessions = handlers.NewSessionManager(cfg, a.sessionStore)
	a.Accounts = accounts.New(db, a.Clock, cfg.BcryptCost)
	a.SessionList = accounts.NewSessions(a.Accounts, cfg.SessionIdle, cfg.SessionLifetime)
	if a.Keys, err = NewKeys(cfg, db, a.Clock); err != nil {
		a.closeStores()
		_ = models.Close(db)
		return nil, err
	}
	if a.Tokens, err = NewTokens(cfg, db, a.Clock); err == nil {
		err = a.Tokens.Load(context.Background()) // makes the first signing key on a new database
	}
	if err != nil {
		a.closeStores()
		_ = models.Close(db)
		return nil, err
	}
	if a.OAuth, err = oauth.New(db, a.Clock, a.Tokens, a.Keys.Catalog(), oauth.Options{Issuer: cfg.BaseURL}); err != nil {
		a.closeStores()
		_ = models.Close(db)
		return nil, err
	}
	a.Usage = keys.NewUsage(db, a.Metrics)
	local := ratelimit.NewMemory()
	var limiter ratelimit.Limiter = local
	if cfg.RedisURL != "" { // shared by every replica, and answered in memory while Redis does not
		shared, err := ratelimit.NewRedis(cfg.RedisURL, cmp.Or(opts.RedisPrefix, ratelimit.DefaultPrefix))
		if err != nil {
			a.closeStores()
			_ = models.Close(db)
			return nil, fmt.Errorf("KEYSMITH_REDIS_URL: %w", err)
		}
		a.sharedLimits = ratelimit.NewFallback(shared, local, a.Log, a.Metrics)
		limiter = a.sharedLimits
	}
	a.Verifier = keys.NewVerifier(db, a.Clock, cfg.KeyPrefix, limiter, a.Usage, a.Metrics)
	a.Teams = teams.New(db, a.Clock, cfg.MaxKeyLifetime)
	if err := a.watchKeyChanges(); err != nil {
		a.closeStores()
		_ = models.Close(db)
		return nil, err
	}

	transport := opts.Transport
	switch {
	case transport != nil:
	case cfg.DevMailbox:
		a.Log.Warn("dev mailbox on: every email, password-reset links included, is shown to anyone at /dev/mailbox; set KEYSMITH_SMTP_URL in production")
		a.Mailbox = mailer.NewMailbox(a.Clock, 200)
		transport = a.Mailbox
	default:
		if transport, err = mailer.NewSMTP(cfg.SMTPURL, nil); err != nil {
			a.closeStores()
			_ = models.Close(db)
			return nil, err
		}
	}
	a.Mailer = mailer.New(transport, cfg.MailFrom, cfg.BaseURL)

	a.Outbox = outbox.New(db, a.Clock, a.Tokens, a.Log, a.Metrics)
	a.Outbox.Concurrency, a.Outbox.Drain = cfg.MailConcurrency, cfg.ShutdownTimeout
	a.Outbox.Register(outbox.KindMail, outbox.MailComposer{Outbox: a.Outbox, Mailer: a.Mailer})
	a.Reminders = scheduler.NewReminders(db, a.Clock, a.Mailer, a.Outbox, cfg.BaseURL)
	a.Webhooks = webhooks.New(db, a.Clock, a.Outbox, a.Tokens, a.Mailer, a.Log,
		webhooks.Options{AllowPrivate: cfg.WebhookAllowPrivate, BaseURL: cfg.BaseURL})
	a.Reminders.OnStages = a.Webhooks.KeyStages
	if err := a.Webhooks.WatchAudit(db); err != nil {
		a.closeStores()
		_ = models.Close(db)
		return nil, err
	}
	twoFactor := accounts.NewTwoFactor(a.Accounts, a.Tokens)
	// Single sign-on reads the provider's discovery document now; an
	// unreachable provider is retried in the background, password sign-in
	// working meanwhile.
	if a.SSO = identity.NewSSO(db, a.Accounts, a.Clock, a.Log, cfg.OIDC, cfg.BaseURL); a.SSO != nil {
		if opts.SSOBackoff != nil {
			a.SSO.Backoff = opts.SSOBackoff
		}
		a.SSO.Start()
	}
	a.Echo = handlers.New(handlers.Deps{
		Config:   cfg,
		DB:       db,
		Sessions: a.Sessions,
		Accounts: a.Accounts,
		Keys:     a.Keys,
		Tokens:   a.Tokens,
		OAuth:    a.OAuth,
		Verifier: a.Verifier,
		Outbox:   a.Outbox,
		Webhooks: a.Webhooks,
		Teams:    a.Teams,
		Mailer:   a.Mailer,
		Mailbox:  a.Mailbox,
		Clock:    a.Clock,
		Log:      a.Log,
		Metrics:  a.Metrics,

		SharedLimits: a.sharedLimits,

		TwoFactor:   twoFactor,
		SessionList: a.SessionList,
		Sudo:        accounts.NewSudo(twoFactor, cfg.SudoTimeout),
		Passkeys:    identity.NewPasskeys(db, a.Accounts, a.Clock, cfg.BaseURL),
		SSO:         a.SSO,
	})
	a.Inactivity = scheduler.NewInactivity(a.Keys, a.Clock, a.Log)
	notices := scheduler.NewNotices(db, a.Clock, a.Log, a.Mailer, a.Outbox, a.Webhooks, cfg.BaseURL)
	a.Inactivity.OnInactivityWarning, a.Inactivity.OnInactivityAction = notices.InactivityWarning, notices.InactivityAction
	a.Keys.OnLeak(notices.KeyLeaked)
	a.Scheduler = scheduler.New(cfg.SchedulerEvery, a.Log,
		scheduler.Job{Name: "expiry reminders", Run: a.Reminders.Run},
		scheduler.Job{Name: "inactivity policies", Run: a.Inactivity.Run},
		scheduler.Job{Name: "purge expired login attempts, links and tokens", Run: a.Accounts.PurgeExpired},
		scheduler.Job{Name: "purge the rows of sessions over", Run: a.SessionList.Purge},
		scheduler.Job{Name: "prune usage counts older than 90 days", Run: a.Keys.PruneUsage},
		scheduler.Job{Name: "prune expired OAuth codes and tokens", Run: a.OAuth.PruneExpired},
	)
	a.Flusher = scheduler.New(cfg.UsageFlushEvery, a.Log, scheduler.Job{Name: "flush last-used times and usage counts", Run: a.Usage.Flush})
	return a, nil
}

// watchKeyChanges keeps the verifier's cache true to the database. Every
// change evicts the keys it changed here. On PostgreSQL other replicas
// change keys too: each change announces itself on the change feed
// (LISTEN/NOTIFY) inside its transaction, and this replica listens.
func (a *App) watchKeyChanges() error {
	a.Keys.OnChange(a.Verifier.Evict)
	a.Teams.OnRename(a.Verifier.EvictWorkspace)
	if !models.IsPostgres(a.DB) {
		a.Verifier.SetComplete(true) // every change is made by this process
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	feed, err := keys.NewChangeFeed(ctx, a.DB, a.Config.DatabaseURL, a.Verifier, a.Log, a.Metrics)
	if err != nil {
		cancel()
		return err
	}
	a.Feed, a.stopFeed, a.feedDone = feed, cancel, make(chan struct{})
	a.Keys.SetChangeFeed(feed)
	a.Teams.SetChangeFeed(feed)
	go func() {
		defer close(a.feedDone)
		feed.Run(ctx)
	}()
	return nil
}

// SeedDemo creates the demo account on an empty database and reports
// whether its documented login works.
func (a *App) SeedDemo(ctx context.Context) (bool, error) {
	return a.Accounts.EnsureDemo(ctx)
}

// Run serves HTTP on ln and runs background jobs until ctx is cancelled,
// then shuts down in order: stop accepting and drain requests, stop
// background work, close the database.
func (a *App) Run(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: a.Echo, ReadHeaderTimeout: 10 * time.Second}
	a.Accounts.PrepareLogin()
	a.Scheduler.Start()
	a.Flusher.Start()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	a.Log.Info("shutting down: draining requests")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), a.Config.ShutdownTimeout)
	defer cancel()
	// Background work winds down while requests drain, within the same
	// timeout: the reminder pass claims nothing more and finishes the mails
	// in flight. Close waits for it.
	go a.Scheduler.Stop()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		a.Log.Error("http shutdown", "err", err)
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return errors.Join(serveErr, a.Close())
}

// Close stops background work, writes the last buffered key uses and
// closes the database. Run calls it once requests have drained; later
// calls return the first call's result.
func (a *App) Close() error {
	a.closeOnce.Do(func() { a.closeErr = a.close() })
	return a.closeErr
}

func (a *App) close() error {
	a.Log.Info("shutting down: stopping background work")
	if a.stopFeed != nil {
		a.stopFeed()
		<-a.feedDone
	}
	if a.SSO != nil {
		a.SSO.Close()
	}
	a.Outbox.Wait()
	a.Scheduler.Stop()
	a.Flusher.Stop()
	a.closeStores()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := a.Usage.Flush(ctx)
	if err != nil {
		a.Log.Error("shutting down: last-used times not written", "err", err)
	}
	if a.sharedLimits != nil {
		err = errors.Join(err, a.sharedLimits.Close())
	}
	a.Log.Info("shutting down: closing database")
	return errors.Join(err, models.Close(a.DB))
}

func (a *App) closeStores() {
	if a.sessionStore != nil {
		a.sessionStore.StopCleanup()
	}
}
