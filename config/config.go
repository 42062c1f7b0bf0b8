// Package config reads Keysmith's settings from KEYSMITH_* environment
// variables once, at start-up, and reports every invalid value together.
package config

import (
	"encoding/base64"
	"fmt"
	"net/mail"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is the whole of Keysmith's configuration.
type Config struct {
	Addr           string        // KEYSMITH_ADDR
	DatabaseURL    string        // KEYSMITH_DATABASE_URL: a SQLite path or a postgres:// URL
	SMTPURL        string        // KEYSMITH_SMTP_URL
	DevMailbox     bool          // KEYSMITH_DEV_MAILBOX: keep mail in memory and show it at /dev/mailbox
	MailFrom       string        // KEYSMITH_MAIL_FROM
	BaseURL        string        // KEYSMITH_BASE_URL: used in links inside emails
	BaseURLSet     bool          // the operator set KEYSMITH_BASE_URL rather than taking the default
	KeyPrefix      string        // KEYSMITH_KEY_PREFIX
	ServiceToken   string        // KEYSMITH_SERVICE_TOKEN
	ScopesFile     string        // KEYSMITH_SCOPES_FILE: the operator's scope catalog (JSON); empty for the demo catalog
	MaxKeyLifetime time.Duration // KEYSMITH_MAX_KEY_LIFETIME: 0 for no maximum
	AllowQueryKeys bool          // KEYSMITH_ALLOW_QUERY_KEYS: accept ?api_key= and ?accesskey=
	// WebhookAllowPrivate lets webhook endpoints be on private, loopback
	// and link-local addresses (KEYSMITH_WEBHOOK_ALLOW_PRIVATE): on by
	// default on the embedded default (one machine, often a developer's),
	// off on PostgreSQL, where an SSRF guard checks every call's address.
	WebhookAllowPrivate bool
	UsageFlushEvery     time.Duration // KEYSMITH_LAST_USED_FLUSH_INTERVAL
	SchedulerEvery      time.Duration // KEYSMITH_SCHEDULER_INTERVAL
	SessionIdle         time.Duration // KEYSMITH_SESSION_IDLE_TIMEOUT
	SessionLifetime     time.Duration // KEYSMITH_SESSION_LIFETIME
	SudoTimeout         time.Duration // KEYSMITH_SUDO_TIMEOUT: how long a confirmation before sensitive actions holds
	ShutdownTimeout     time.Duration // KEYSMITH_SHUTDOWN_TIMEOUT
	BcryptCost          int           // KEYSMITH_BCRYPT_COST
	Demo                bool          // KEYSMITH_DEMO: seed and print a demo login
	TrustProxy          bool          // KEYSMITH_TRUST_PROXY: take the client IP from X-Forwarded-For
	LogLevel            string        // KEYSMITH_LOG_LEVEL: debug, info, warn, error
	LogFormat           string        // KEYSMITH_LOG_FORMAT: text or json

	// Several replicas (docs/OPERATIONS.md, "Running several replicas").
	RedisURL          string        // KEYSMITH_REDIS_URL: shared rate limits; empty for in-process limits
	DBMaxOpenConns    int           // KEYSMITH_DB_MAX_OPEN_CONNS
	DBMaxIdleConns    int           // KEYSMITH_DB_MAX_IDLE_CONNS
	DBConnMaxLifetime time.Duration // KEYSMITH_DB_CONN_MAX_LIFETIME
	MailConcurrency   int           // KEYSMITH_MAIL_CONCURRENCY: reminder deliveries sent at once
	MetricsToken      string        // KEYSMITH_METRICS_TOKEN: serve /metrics to this bearer token; empty for no /metrics

	// OIDC is single sign-on through the operator's OpenID provider
	// (issue 18); off while OIDC.Issuer is empty.
	OIDC OIDC
	// PasswordLogin (KEYSMITH_PASSWORD_LOGIN) offers sign-up, password
	// sign-in and reset; false leaves only the provider (and the CLI's
	// break-glass users at /login/password).
	PasswordLogin bool

	// EncryptionKey (KEYSMITH_ENCRYPTION_KEY, 32 bytes in base64) encrypts
	// the token signing keys at rest; nil for a key file beside a SQLite
	// database (tokens.LoadEncryptionKey). PostgreSQL requires it.
	EncryptionKey []byte
}

// OIDC configures the OpenID Connect relying party.
type OIDC struct {
	Issuer       string   // KEYSMITH_OIDC_ISSUER
	ClientID     string   // KEYSMITH_OIDC_CLIENT_ID
	ClientSecret string   // KEYSMITH_OIDC_CLIENT_SECRET; empty for a public client (PKCE only)
	Name         string   // KEYSMITH_OIDC_NAME: the button says "Sign in with <Name>"
	Scopes       []string // KEYSMITH_OIDC_SCOPES, space-separated
	// WorkspaceClaim names the claim whose value picks the user's
	// workspace, WorkspaceNameClaim the one that names it; empty for none.
	WorkspaceClaim     string
	WorkspaceNameClaim string
	// RoleClaim names the claim (a string or a list of strings) whose
	// values Roles maps to a workspace role.
	RoleClaim string
	Roles     map[string]string // KEYSMITH_OIDC_ROLES: claim value → role
}

// Enabled reports whether single sign-on is configured.
func (o OIDC) Enabled() bool { return o.Issuer != "" }

// The default of KEYSMITH_DB_MAX_OPEN_CONNS per engine: PostgreSQL serves
// many connections; SQLite has one writer, and more connections only wait.
const (
	DefaultPostgresConns = 25
	DefaultSQLiteConns   = 8
)

// Variable documents one setting; a test keeps the README's table in step.
type Variable struct {
	Name, Default, Help string
}

// Variables lists every setting with its default, in the order the README shows them.
var Variables = []Variable{
	{"KEYSMITH_ADDR", ":8080", "address the HTTP server listens on"},
	{"KEYSMITH_DATABASE_URL", "keysmith.db", "SQLite file path, or a postgres:// URL"},
	{"KEYSMITH_SMTP_URL", "", "smtp://user:pass@host:587 (STARTTLS when offered; ?starttls=required to insist) or smtps://…:465; required unless the dev mailbox is on"},
	{"KEYSMITH_DEV_MAILBOX", "true with the default SQLite file and no SMTP, else false", "keep every email in memory and show it, reset links included, to anyone at /dev/mailbox: development only"},
	{"KEYSMITH_MAIL_FROM", "Keysmith <no-reply@keysmith.localhost>", "sender of every email"},
	{"KEYSMITH_BASE_URL", "http://localhost:8080", "public URL of the dashboard, used in email links and as the passkeys' origin (https, or localhost)"},
	{"KEYSMITH_KEY_PREFIX", "ks", "prefix of every API key (2–10 lowercase letters or digits, starting with a letter)"},
	{"KEYSMITH_SERVICE_TOKEN", "", "token the operator's services use for POST /v1/keys/verify"},
	{"KEYSMITH_SCOPES_FILE", "", "JSON scope catalog, e.g. {\"resources\":[{\"name\":\"files\",\"actions\":[{\"name\":\"read\",\"publishable\":true}]}]}; empty for the demo catalog"},
	{"KEYSMITH_MAX_KEY_LIFETIME", "", "longest lifetime a new key may have, as days (90d) or a Go duration; empty for none"},
	{"KEYSMITH_ALLOW_QUERY_KEYS", "false", "accept keys in ?api_key= and ?accesskey= (they end up in proxy and browser logs; off unless a client cannot send headers)"},
	{"KEYSMITH_WEBHOOK_ALLOW_PRIVATE", "true on SQLite, false on PostgreSQL", "let webhook endpoints be on private, loopback and link-local addresses; off, every call's address is checked when it connects (an SSRF guard)"},
	{"KEYSMITH_LAST_USED_FLUSH_INTERVAL", "15s", "how often buffered last-used times are written to the database (and at shutdown)"},
	{"KEYSMITH_SCHEDULER_INTERVAL", "1m", "how often background work runs (Go duration)"},
	{"KEYSMITH_SESSION_IDLE_TIMEOUT", "2h", "a dashboard session ends after this long without a request"},
	{"KEYSMITH_SESSION_LIFETIME", "24h", "a dashboard session ends this long after login, active or not"},
	{"KEYSMITH_SUDO_TIMEOUT", "1h", "sensitive dashboard actions (new or rotated secrets, two-step settings, members' roles) ask to confirm the password, or a code, when the session last did longer ago than this (Go duration); signing in counts"},
	{"KEYSMITH_SHUTDOWN_TIMEOUT", "15s", "how long a SIGTERM waits for requests in flight"},
	{"KEYSMITH_BCRYPT_COST", "12", "bcrypt cost of password hashes (10–14)"},
	{"KEYSMITH_DEMO", "true with the default SQLite file, else false", "seed a demo account and print its login"},
	{"KEYSMITH_TRUST_PROXY", "false", "behind a reverse proxy: take the client IP from X-Forwarded-For"},
	{"KEYSMITH_LOG_LEVEL", "info", "debug, info, warn or error"},
	{"KEYSMITH_LOG_FORMAT", "text", "text or json"},
	{"KEYSMITH_REDIS_URL", "", "redis://host:6379/0: rate limits shared by every replica; empty for limits kept in each process"},
	{"KEYSMITH_DB_MAX_OPEN_CONNS", "25 on PostgreSQL, 8 on SQLite", "most database connections open at once"},
	{"KEYSMITH_DB_MAX_IDLE_CONNS", "the same as open", "database connections kept open while idle"},
	{"KEYSMITH_DB_CONN_MAX_LIFETIME", "30m", "a database connection is closed and reopened after this long"},
	{"KEYSMITH_MAIL_CONCURRENCY", "4", "reminder emails sent at once, so one slow message does not hold up the rest"},
	{"KEYSMITH_METRICS_TOKEN", "", "serve Prometheus metrics at /metrics to Authorization: Bearer <this token> (at least 32 characters); empty for no /metrics"},
	{"KEYSMITH_OIDC_ISSUER", "", "URL of the operator's OpenID provider (https, or http on localhost): turns on \"Sign in with …\"; register KEYSMITH_BASE_URL/login/oidc/callback as its redirect URI"},
	{"KEYSMITH_OIDC_CLIENT_ID", "", "client ID registered at the provider; required with KEYSMITH_OIDC_ISSUER"},
	{"KEYSMITH_OIDC_CLIENT_SECRET", "", "client secret registered at the provider; empty for a public client"},
	{"KEYSMITH_OIDC_NAME", "SSO", "the provider's name on the sign-in button: \"Sign in with <name>\""},
	{"KEYSMITH_OIDC_SCOPES", "openid email profile", "scopes asked of the provider, space-separated; must include openid"},
	{"KEYSMITH_OIDC_WORKSPACE_CLAIM", "", "claim whose value puts the user in a workspace (made at its first sign-in); empty for personal workspaces"},
	{"KEYSMITH_OIDC_WORKSPACE_NAME_CLAIM", "", "claim that names that workspace when it is made"},
	{"KEYSMITH_OIDC_ROLE_CLAIM", "", "claim (a string or a list) whose values KEYSMITH_OIDC_ROLES maps to the role in that workspace at each sign-in"},
	{"KEYSMITH_OIDC_ROLES", "", "claim value=role pairs, comma-separated, e.g. admins=admin,developers=editor; the most powerful match wins"},
	{"KEYSMITH_PASSWORD_LOGIN", "true", "offer sign-up, password sign-in and reset; false sends /login to the provider (CLI-made users still sign in at /login/password)"},
	{"KEYSMITH_ENCRYPTION_KEY", "a key file beside the SQLite database; required with PostgreSQL", "32 random bytes in base64 (openssl rand -base64 32) that encrypt the token signing keys in the database; the same on every replica"},
}

var prefixPattern = regexp.MustCompile(`^[a-z][a-z0-9]{1,9}$`)

// FromEnv reads the process environment.
func FromEnv() (Config, error) { return Load(os.LookupEnv) }

// Load reads settings through lookup (os.LookupEnv in production) and
// returns every problem it finds, as Problems, so an operator fixes them in
// one go.
func Load(lookup func(string) (string, bool)) (Config, error) {
	p := parser{lookup: lookup}
	_, dbSet := lookup("KEYSMITH_DATABASE_URL")
	baseURL, _ := lookup("KEYSMITH_BASE_URL")
	smtpURL, _ := lookup("KEYSMITH_SMTP_URL")
	c := Config{
		Addr:           p.str("KEYSMITH_ADDR", ":8080"),
		DatabaseURL:    p.str("KEYSMITH_DATABASE_URL", "keysmith.db"),
		SMTPURL:        p.str("KEYSMITH_SMTP_URL", ""),
		MailFrom:       p.str("KEYSMITH_MAIL_FROM", "Keysmith <no-reply@keysmith.localhost>"),
		BaseURL:        strings.TrimRight(p.str("KEYSMITH_BASE_URL", "http://localhost:8080"), "/"),
		BaseURLSet:     baseURL != "",
		KeyPrefix:      p.str("KEYSMITH_KEY_PREFIX", "ks"),
		ServiceToken:   p.str("KEYSMITH_SERVICE_TOKEN", ""),
		ScopesFile:     p.str("KEYSMITH_SCOPES_FILE", ""),
		MaxKeyLifetime: p.lifetime("KEYSMITH_MAX_KEY_LIFETIME"),
		AllowQueryKeys: p.boolean("KEYSMITH_ALLOW_QUERY_KEYS", false),
		WebhookAllowPrivate: p.boolean("KEYSMITH_WEBHOOK_ALLOW_PRIVATE",
			!strings.HasPrefix(p.str("KEYSMITH_DATABASE_URL", "keysmith.db"), "postgres")),
		UsageFlushEvery: p.duration("KEYSMITH_LAST_USED_FLUSH_INTERVAL", 15*time.Second),
		SchedulerEvery:  p.duration("KEYSMITH_SCHEDULER_INTERVAL", time.Minute),
		SessionIdle:     p.duration("KEYSMITH_SESSION_IDLE_TIMEOUT", 2*time.Hour),
		SessionLifetime: p.duration("KEYSMITH_SESSION_LIFETIME", 24*time.Hour),
		SudoTimeout:     p.duration("KEYSMITH_SUDO_TIMEOUT", time.Hour),
		ShutdownTimeout: p.duration("KEYSMITH_SHUTDOWN_TIMEOUT", 15*time.Second),
		BcryptCost:      p.integer("KEYSMITH_BCRYPT_COST", 12),
		Demo:            p.boolean("KEYSMITH_DEMO", !dbSet),
		DevMailbox:      p.boolean("KEYSMITH_DEV_MAILBOX", !dbSet && smtpURL == ""),
		TrustProxy:      p.boolean("KEYSMITH_TRUST_PROXY", false),
		LogLevel:        p.str("KEYSMITH_LOG_LEVEL", "info"),
		LogFormat:       p.str("KEYSMITH_LOG_FORMAT", "text"),

		RedisURL:          p.str("KEYSMITH_REDIS_URL", ""),
		DBConnMaxLifetime: p.duration("KEYSMITH_DB_CONN_MAX_LIFETIME", 30*time.Minute),
		MailConcurrency:   p.integer("KEYSMITH_MAIL_CONCURRENCY", 4),
		MetricsToken:      p.str("KEYSMITH_METRICS_TOKEN", ""),
		EncryptionKey:     p.base64Key("KEYSMITH_ENCRYPTION_KEY", 32),
		PasswordLogin:     p.boolean("KEYSMITH_PASSWORD_LOGIN", true),
	}
	c.OIDC = p.oidc()
	if !c.PasswordLogin && !c.OIDC.Enabled() {
		p.fail("KEYSMITH_PASSWORD_LOGIN", "cannot be false without KEYSMITH_OIDC_ISSUER: nobody could sign in")
	}
	// PostgreSQL serves many connections; SQLite has one writer, and more
	// connections only wait for it.
	defaultOpen := DefaultSQLiteConns
	if c.IsPostgres() {
		defaultOpen = DefaultPostgresConns
	}
	c.DBMaxOpenConns = p.integer("KEYSMITH_DB_MAX_OPEN_CONNS", defaultOpen)
	c.DBMaxIdleConns = p.integer("KEYSMITH_DB_MAX_IDLE_CONNS", c.DBMaxOpenConns)

	if strings.TrimSpace(c.DatabaseURL) == "" {
		p.fail("KEYSMITH_DATABASE_URL", "must not be empty")
	} else if scheme, _, ok := strings.Cut(c.DatabaseURL, "://"); ok && !c.IsPostgres() {
		p.fail("KEYSMITH_DATABASE_URL", fmt.Sprintf("is a %s:// URL: give a SQLite file path or a postgres:// URL", scheme))
	}
	if c.IsPostgres() && c.EncryptionKey == nil && !p.failed("KEYSMITH_ENCRYPTION_KEY") {
		p.fail("KEYSMITH_ENCRYPTION_KEY", "is required with PostgreSQL, the same on every replica: 32 random bytes in base64 (openssl rand -base64 32)")
	}
	switch {
	case c.SMTPURL != "" && c.DevMailbox:
		p.fail("KEYSMITH_DEV_MAILBOX", "cannot be true together with KEYSMITH_SMTP_URL: choose one")
	case c.SMTPURL == "" && !c.DevMailbox:
		p.fail("KEYSMITH_SMTP_URL", "is required (or set KEYSMITH_DEV_MAILBOX=true on a development machine)")
	}
	if c.SMTPURL != "" {
		if u, err := url.Parse(c.SMTPURL); err != nil || (u.Scheme != "smtp" && u.Scheme != "smtps") || u.Hostname() == "" {
			p.fail("KEYSMITH_SMTP_URL", "must look like smtp://user:pass@host:587 or smtps://user:pass@host:465")
		}
	}
	if _, err := mail.ParseAddress(c.MailFrom); err != nil {
		p.fail("KEYSMITH_MAIL_FROM", "must be an email address such as \"Keysmith <no-reply@example.com>\"")
	}
	if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.fail("KEYSMITH_BASE_URL", "must be an absolute http(s) URL such as https://keys.example.com")
	}
	if !prefixPattern.MatchString(c.KeyPrefix) {
		p.fail("KEYSMITH_KEY_PREFIX", "must be 2–10 lowercase letters or digits, starting with a letter")
	}
	if c.ServiceToken != "" && len(c.ServiceToken) < 32 {
		p.fail("KEYSMITH_SERVICE_TOKEN", "must be at least 32 characters")
	}
	for name, d := range map[string]time.Duration{
		"KEYSMITH_SCHEDULER_INTERVAL":       c.SchedulerEvery,
		"KEYSMITH_SESSION_IDLE_TIMEOUT":     c.SessionIdle,
		"KEYSMITH_SESSION_LIFETIME":         c.SessionLifetime,
		"KEYSMITH_SUDO_TIMEOUT":             c.SudoTimeout,
		"KEYSMITH_SHUTDOWN_TIMEOUT":         c.ShutdownTimeout,
		"KEYSMITH_LAST_USED_FLUSH_INTERVAL": c.UsageFlushEvery,
	} {
		if d <= 0 {
			p.fail(name, "must be a positive duration")
		}
	}
	if c.RedisURL != "" {
		if u, err := url.Parse(c.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			p.fail("KEYSMITH_REDIS_URL", "must look like redis://host:6379/0 or rediss://user:pass@host:6380/0")
		}
	}
	if c.DBMaxOpenConns < 1 {
		p.fail("KEYSMITH_DB_MAX_OPEN_CONNS", "must be at least 1")
	}
	if c.DBMaxIdleConns < 0 || c.DBMaxIdleConns > c.DBMaxOpenConns {
		p.fail("KEYSMITH_DB_MAX_IDLE_CONNS", "must be between 0 and KEYSMITH_DB_MAX_OPEN_CONNS")
	}
	if c.DBConnMaxLifetime <= 0 {
		p.fail("KEYSMITH_DB_CONN_MAX_LIFETIME", "must be a positive duration")
	}
	if c.MailConcurrency < 1 || c.MailConcurrency > 64 {
		p.fail("KEYSMITH_MAIL_CONCURRENCY", "must be between 1 and 64")
	}
	if c.MetricsToken != "" && len(c.MetricsToken) < 32 {
		p.fail("KEYSMITH_METRICS_TOKEN", "must be at least 32 characters")
	}
	if c.BcryptCost < 10 || c.BcryptCost > 14 {
		p.fail("KEYSMITH_BCRYPT_COST", "must be between 10 and 14")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		p.fail("KEYSMITH_LOG_LEVEL", "must be debug, info, warn or error")
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		p.fail("KEYSMITH_LOG_FORMAT", "must be text or json")
	}
	if len(p.problems) == 0 {
		return c, nil
	}
	return c, p.problems
}

// Problem is one invalid setting.
type Problem struct {
	Variable string // e.g. KEYSMITH_SMTP_URL
	Reason   string // e.g. "is required (or …)"
}

func (p Problem) Error() string { return p.Variable + " " + p.Reason }

// Problems is every invalid setting Load found, in the order it checked them.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Concerning returns the problems with the named variables, or nil when
// they are all valid, so a task that reads only some settings (a
// migration reads only the database URL) is refused only for those.
func (ps Problems) Concerning(names ...string) error {
	var kept Problems
	for _, p := range ps {
		if slices.Contains(names, p.Variable) {
			kept = append(kept, p)
		}
	}
	if len(kept) == 0 {
		return nil
	}
	return kept
}

// IsPostgres reports whether the database is PostgreSQL rather than SQLite.
func (c Config) IsPostgres() bool {
	return strings.HasPrefix(c.DatabaseURL, "postgres://") || strings.HasPrefix(c.DatabaseURL, "postgresql://")
}

// SecureCookies reports whether the dashboard is served over https, so
// cookies must carry the Secure attribute.
func (c Config) SecureCookies() bool { return strings.HasPrefix(c.BaseURL, "https://") }

type parser struct {
	lookup   func(string) (string, bool)
	problems Problems
}

func (p *parser) fail(name, msg string) {
	p.problems = append(p.problems, Problem{Variable: name, Reason: msg})
}

// failed reports whether name has a problem already.
func (p *parser) failed(name string) bool {
	return slices.ContainsFunc(p.problems, func(q Problem) bool { return q.Variable == name })
}

func (p *parser) str(name, def string) string {
	if v, ok := p.lookup(name); ok && v != "" {
		return v
	}
	return def
}

func (p *parser) duration(name string, def time.Duration) time.Duration {
	v := p.str(name, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		p.fail(name, fmt.Sprintf("is %q, not a Go duration such as 90s, 5m or 2h", v))
		return def
	}
	return d
}

// lifetime reads "90d" as 90 days, or a Go duration; empty is 0.
func (p *parser) lifetime(name string) time.Duration {
	v := p.str(name, "")
	if v == "" {
		return 0
	}
	if n, ok := strings.CutSuffix(v, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days > 0 {
			return time.Duration(days) * 24 * time.Hour
		}
	} else if d, err := time.ParseDuration(v); err == nil && d >= 24*time.Hour {
		return d
	}
	p.fail(name, fmt.Sprintf("is %q, not a lifetime of at least a day such as 90d or 2160h", v))
	return 0
}

// base64Key reads a secret of size bytes in base64 (standard or URL-safe,
// padded or not); unset is nil. The problem never repeats the value.
func (p *parser) base64Key(name string, size int) []byte {
	v := strings.TrimSpace(p.str(name, ""))
	if v == "" {
		return nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(v); err == nil {
			if len(b) == size {
				return b
			}
			p.fail(name, fmt.Sprintf("must be %d random bytes in base64 (openssl rand -base64 %d), not %d bytes", size, size, len(b)))
			return nil
		}
	}
	p.fail(name, fmt.Sprintf("is not base64: give %d random bytes in base64 (openssl rand -base64 %d)", size, size))
	return nil
}

// oidc reads the KEYSMITH_OIDC_* settings. Without an issuer, none of the
// others may be set: a half-configured provider is a mistake to report.
func (p *parser) oidc() OIDC {
	o := OIDC{
		// Exactly as the provider spells it (Auth0's ends in a slash):
		// discovery refuses an issuer that differs.
		Issuer:             strings.TrimSpace(p.str("KEYSMITH_OIDC_ISSUER", "")),
		ClientID:           p.str("KEYSMITH_OIDC_CLIENT_ID", ""),
		ClientSecret:       p.str("KEYSMITH_OIDC_CLIENT_SECRET", ""),
		Name:               strings.TrimSpace(p.str("KEYSMITH_OIDC_NAME", "SSO")),
		Scopes:             strings.Fields(p.str("KEYSMITH_OIDC_SCOPES", "openid email profile")),
		WorkspaceClaim:     p.str("KEYSMITH_OIDC_WORKSPACE_CLAIM", ""),
		WorkspaceNameClaim: p.str("KEYSMITH_OIDC_WORKSPACE_NAME_CLAIM", ""),
		RoleClaim:          p.str("KEYSMITH_OIDC_ROLE_CLAIM", ""),
	}
	if o.Issuer == "" {
		for _, name := range []string{"KEYSMITH_OIDC_CLIENT_ID", "KEYSMITH_OIDC_CLIENT_SECRET", "KEYSMITH_OIDC_WORKSPACE_CLAIM",
			"KEYSMITH_OIDC_WORKSPACE_NAME_CLAIM", "KEYSMITH_OIDC_ROLE_CLAIM", "KEYSMITH_OIDC_ROLES"} {
			if p.str(name, "") != "" {
				p.fail(name, "is set but KEYSMITH_OIDC_ISSUER is not")
			}
		}
		return o
	}
	if u, err := url.Parse(o.Issuer); err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" ||
		(u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
		p.fail("KEYSMITH_OIDC_ISSUER", "must be the provider's https URL, such as https://id.example.com/realms/main (plain http only on localhost)")
	}
	if o.ClientID == "" {
		p.fail("KEYSMITH_OIDC_CLIENT_ID", "is required with KEYSMITH_OIDC_ISSUER: the client ID registered at the provider")
	}
	if o.Name == "" {
		p.fail("KEYSMITH_OIDC_NAME", "must not be blank")
	}
	if !slices.Contains(o.Scopes, "openid") {
		p.fail("KEYSMITH_OIDC_SCOPES", "must include openid")
	}
	if o.WorkspaceNameClaim != "" && o.WorkspaceClaim == "" {
		p.fail("KEYSMITH_OIDC_WORKSPACE_NAME_CLAIM", "needs KEYSMITH_OIDC_WORKSPACE_CLAIM")
	}
	if o.RoleClaim != "" && o.WorkspaceClaim == "" {
		p.fail("KEYSMITH_OIDC_ROLE_CLAIM", "needs KEYSMITH_OIDC_WORKSPACE_CLAIM: the role is the one in that workspace")
	}
	if v := p.str("KEYSMITH_OIDC_ROLES", ""); v != "" {
		if o.RoleClaim == "" {
			p.fail("KEYSMITH_OIDC_ROLES", "needs KEYSMITH_OIDC_ROLE_CLAIM")
		}
		o.Roles = map[string]string{}
		for _, pair := range strings.Split(v, ",") {
			value, role, ok := strings.Cut(strings.TrimSpace(pair), "=")
			value, role = strings.TrimSpace(value), strings.TrimSpace(role)
			if !ok || value == "" || !slices.Contains([]string{"owner", "admin", "editor", "viewer"}, role) {
				p.fail("KEYSMITH_OIDC_ROLES", fmt.Sprintf("has %q: give claim value=role pairs, comma-separated, with role owner, admin, editor or viewer (admins=admin,developers=editor)", strings.TrimSpace(pair)))
				continue
			}
			o.Roles[value] = role
		}
	}
	return o
}

func isLoopback(host string) bool {
	return host == "localhost" || strings.HasSuffix(host, ".localhost") || host == "127.0.0.1" || host == "::1"
}

func (p *parser) integer(name string, def int) int {
	v := p.str(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		p.fail(name, fmt.Sprintf("is %q, not a whole number", v))
		return def
	}
	return n
}

func (p *parser) boolean(name string, def bool) bool {
	v := p.str(name, "")
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.fail(name, fmt.Sprintf("is %q, not true or false", v))
		return def
	}
	return b
}
