// Package handlers is Keysmith's HTTP layer: it binds and validates input,
// calls the domain packages and renders a view or a JSON error. Thin.
package handlers

import (
	"log/slog"
	"net/http"

	"github.com/alexedwards/scs/v2"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"gorm.io/gorm"

	"keysmith/accounts"
	"keysmith/clock"
	"keysmith/config"
	"keysmith/identity"
	"keysmith/keys"
	"keysmith/mailer"
	"keysmith/metrics"
	"keysmith/oauth"
	"keysmith/outbox"
	"keysmith/ratelimit"
	"keysmith/teams"
	"keysmith/tokens"
	"keysmith/views"
	"keysmith/webhooks"
)

// Deps is everything the HTTP layer uses, built once in main.
type Deps struct {
	Config   config.Config
	DB       *gorm.DB
	Sessions *scs.SessionManager
	Accounts *accounts.Service
	Keys     *keys.Service
	Tokens   *tokens.Service
	OAuth    *oauth.Service
	Verifier *keys.Verifier
	Outbox   *outbox.Outbox
	Webhooks *webhooks.Service
	Teams    *teams.Service
	Mailer   *mailer.Mailer
	Mailbox  *mailer.Mailbox // nil when mail goes out over SMTP
	Clock    clock.Clock
	Log      *slog.Logger
	Metrics  *metrics.Metrics

	// SharedLimits is where rate limits are shared (Redis), for /readyz;
	// nil when each process keeps its own.
	SharedLimits *ratelimit.Fallback

	// TwoFactor and SessionList serve Settings → Security (issue 17).
	TwoFactor   *accounts.TwoFactor
	SessionList *accounts.Sessions
	// Sudo asks for a fresh confirmation before sensitive actions.
	Sudo     *accounts.Sudo
	Passkeys *identity.Passkeys
	// SSO signs in through the operator's OpenID provider (issue 18); nil
	// without KEYSMITH_OIDC_ISSUER.
	SSO *identity.SSO
}

// Handlers holds the dependencies every handler method uses.
type Handlers struct {
	Deps
	reference []views.Endpoint // the API reference page, built once from openapi.json
}

// NewSessionManager configures scs for the dashboard: stored in the
// database under hashed tokens (so sessions survive restarts and work
// across replicas, and a database copy opens none), idle and
// absolute timeouts, HttpOnly, SameSite=Lax, Secure over https.
func NewSessionManager(cfg config.Config, store scs.Store) *scs.SessionManager {
	sm := scs.New()
	sm.Store = store
	// The store holds only SHA-256s of tokens (migration 6 ended the rows
	// stored under raw ones): a copy of the database opens no session.
	sm.HashTokenInStore = true
	sm.IdleTimeout = cfg.SessionIdle
	sm.Lifetime = cfg.SessionLifetime
	sm.Cookie.Name = "keysmith_session"
	sm.Cookie.HttpOnly = true
	sm.Cookie.SameSite = http.SameSiteLaxMode
	sm.Cookie.Secure = cfg.SecureCookies()
	sm.Cookie.Path = "/"
	return sm
}

// New builds the echo application with every middleware and route.
func New(d Deps) *echo.Echo {
	h := &Handlers{Deps: d}
	ref, err := referenceEndpoints(d.Config.BaseURL)
	if err != nil {
		panic("handlers: the embedded openapi.json does not parse: " + err.Error())
	}
	h.reference = ref
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = h.handleError
	if d.Config.TrustProxy {
		e.IPExtractor = echo.ExtractIPFromXFFHeader()
	} else {
		e.IPExtractor = echo.ExtractIPDirect()
	}

	e.Pre(middleware.RequestIDWithConfig(middleware.RequestIDConfig{Generator: newRequestID}))
	e.Use(h.logRequests())
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{
		DisableStackAll:   true,
		DisablePrintStack: true,
	}))
	e.Use(securityHeaders(d.Config.SecureCookies()))
	e.Use(middleware.BodyLimit("1M"))
	e.Use(h.countAPI)
	e.Use(storableText)

	h.routes(e)
	return e
}
