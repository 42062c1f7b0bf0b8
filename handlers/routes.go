package handlers

import (
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"keysmith/assets"
	"keysmith/models"
	"keysmith/tokens"
)

// csrfContextKey is where echo's CSRF middleware leaves the token for
// forms; the token also lives in the csrfCookieName cookie.
const (
	csrfContextKey = "csrf"
	csrfCookieName = "keysmith_csrf"
)

// routes registers every route. Dashboard routes share sessions and CSRF
// protection (Sec-Fetch-Site for modern browsers, else the _csrf form field
// or X-CSRF-Token header against a cookie); API routes authenticate keys.
func (h *Handlers) routes(echoApp *echo.Echo) {
	e := router{echoApp}
	e.GET("/healthz", h.healthz)
	e.GET("/readyz", h.readyz)
	if h.Config.MetricsToken != "" {
		e.GET("/metrics", echo.WrapHandler(h.Metrics.Handler(h.Config.MetricsToken)))
	}
	e.GET("/assets/*", serveAssets())
	e.GET("/favicon.ico", serveFavicon)
	// The API (SPEC §6) never touches sessions or CSRF cookies.
	e.GET("/v1/openapi.json", serveOpenAPI)
	e.POST("/v1/keys/verify", h.verify, h.requireServiceToken)
	e.POST("/v1/keys/leaked", h.leakedKeys, h.requireServiceToken)
	key := h.requireKey
	e.GET("/v1/auth/test", h.authTest, key)
	e.GET("/v1/keys", h.apiListKeys, key, requireScope("keys:read"))
	e.POST("/v1/keys", h.apiCreateKey, key, requireScope("keys:write"))
	e.GET("/v1/keys/:id", h.apiGetKey, key, requireScope("keys:read"))
	e.GET("/v1/keys/:id/usage", h.apiKeyUsage, key, requireScope("keys:read"))
	e.POST("/v1/keys/:id/rotate", h.apiRotateKey, key, requireScope("keys:write"))
	e.PATCH("/v1/keys/:id", h.apiUpdateKey, key, requireScope("keys:write"))
	e.DELETE("/v1/keys/:id", h.apiRevokeKey, key, requireScope("keys:write"))
	e.POST("/v1/keys/:id/disable", h.apiSetDisabled(true), key, requireScope("keys:write"))
	e.POST("/v1/keys/:id/enable", h.apiSetDisabled(false), key, requireScope("keys:write"))
	e.GET("/v1/webhook-endpoints", h.apiListWebhooks, key, requireScope("keys:read"))
	e.POST("/v1/webhook-endpoints", h.apiCreateWebhook, key, requireScope("keys:write"))
	e.DELETE("/v1/webhook-endpoints/:id", h.apiDeleteWebhook, key, requireScope("keys:write"))
	// Forward authentication for the operator's own API, behind their
	// reverse proxy: any method, and any path after it for Envoy.
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions} {
		e.Add(m, AuthzPath, h.authz)
		e.Add(m, AuthzPath+"/*", h.authz)
	}
	// OAuth (SPEC §9): the token exchange, and what offline verifiers need.
	e.POST(tokens.TokenPath, h.oauthToken)
	e.GET(tokens.JWKSPath, h.jwks)
	e.GET(tokens.MetadataPath, h.authServerMetadata)
	e.POST(tokens.RevokePath, h.oauthRevoke)
	e.POST(tokens.IntrospectPath, h.oauthIntrospect, h.requireServiceToken)

	// Dashboard routes carry their middleware themselves rather than
	// through a group: an echo group with middleware adds a catch-all route
	// that would answer 404 where 405 is the truth, for the API too.
	sess := sessions(h.Sessions, h.Log)
	csrf := middleware.CSRFWithConfig(middleware.CSRFConfig{
		TokenLookup:    "header:X-CSRF-Token,form:_csrf",
		ContextKey:     csrfContextKey,
		CookieName:     csrfCookieName,
		CookiePath:     "/",
		CookieHTTPOnly: true,
		CookieSecure:   h.Config.SecureCookies(),
		CookieSameSite: http.SameSiteLaxMode,
	})
	base := []echo.MiddlewareFunc{sess, csrfTokenFromBodyOnly, csrf}
	if h.SSO != nil {
		// Forms that lead on to the identity provider (Confirm access,
		// Link) may sit in any page htmx swapped in: every page allows it.
		base = append(base, allowFormsTo(h.SSO.Issuer()))
	}
	web := func(m ...echo.MiddlewareFunc) []echo.MiddlewareFunc {
		return slices.Concat(base, m)
	}
	guest, login := h.redirectIfLoggedIn, h.privateLogin
	// sudo marks a sensitive action: it asks to confirm access first when
	// the session last did longer ago than KEYSMITH_SUDO_TIMEOUT.
	sudo := h.sudo

	e.GET("/", h.home, web()...)
	e.GET("/login", h.loginForm, web(guest)...)
	e.POST("/logout", h.logout, web()...)
	// Users the CLI made sign in here when password sign-in is off
	// (KEYSMITH_PASSWORD_LOGIN=false): break-glass access.
	e.GET("/login/password", h.breakGlassForm, web(guest)...)
	e.POST("/login/password", h.login, web(guest)...)
	if h.Config.PasswordLogin {
		e.GET("/signup", h.signupForm, web(guest)...)
		e.POST("/signup", h.signup, web(guest)...)
		e.GET("/signup/confirm", h.signupConfirmForm, web()...)
		e.POST("/signup/confirm", h.signupConfirm, web()...)
		e.POST("/login", h.login, web(guest)...)
		e.GET("/forgot-password", h.forgotForm, web()...)
		e.POST("/forgot-password", h.forgot, web()...)
		e.GET("/reset-password", h.resetForm, web()...)
		e.POST("/reset-password", h.reset, web()...)
	} else {
		e.POST("/login", func(echo.Context) error { return echo.ErrNotFound }, web(guest)...)
	}
	h.ssoRoutes(e, web)

	e.GET("/settings", func(c echo.Context) error { return c.Redirect(http.StatusSeeOther, "/settings/api-keys") }, web(login)...)
	e.GET("/settings/api-keys", h.listKeys, web(login)...)
	e.GET("/settings/api-keys/new", h.newKey, web(login)...)
	e.POST("/settings/api-keys", h.createKey, web(login, sudo)...)
	e.GET("/settings/api-keys/:id", h.showKey, web(login)...)
	e.POST("/settings/api-keys/:id", h.renameKey, web(login)...)
	e.GET("/settings/api-keys/:id/edit", h.keyRowFragment(true), web(login)...)
	e.GET("/settings/api-keys/:id/row", h.keyRowFragment(false), web(login)...)
	e.POST("/settings/api-keys/:id/rotate", h.rotateKey, web(login, sudo)...)
	e.POST("/settings/api-keys/:id/revoke", h.revokeKey, web(login)...)
	e.POST("/settings/api-keys/:id/rate-limit", h.setRateLimit, web(login)...)
	e.POST("/settings/api-keys/:id/allowed-ips", h.setAllowedIPs, web(login)...)
	e.POST("/settings/api-keys/:id/token", h.issueToken, web(login, sudo)...)
	e.POST("/settings/api-keys/:id/disable", h.setDisabled(true), web(login)...)
	e.POST("/settings/api-keys/:id/enable", h.setDisabled(false), web(login)...)
	e.GET("/settings/api-reference", h.apiReference, web(login)...)
	e.GET("/settings/team", h.team, web(login)...)
	e.POST("/settings/team/invitations", h.invite, web(login)...)
	e.POST("/settings/team/invitations/:id/resend", h.resendInvitation, web(login)...)
	e.POST("/settings/team/invitations/:id/cancel", h.cancelInvitation, web(login)...)
	e.POST("/settings/team/members/:id/role", h.changeRole, web(login, sudo)...)
	e.POST("/settings/team/members/:id/remove", h.removeMember, web(login, sudo)...)
	e.POST("/settings/team/transfer", h.transferOwnership, web(login, sudo)...)
	e.POST("/settings/team/leave", h.leave, web(login)...)
	e.GET("/invitations/:token", h.invitation, web()...)
	e.POST("/invitations/:token", h.acceptInvitation, web(login)...)
	e.GET("/settings/notifications", h.notifications, web(login)...)
	e.POST("/settings/notifications", h.saveNotifications, web(login)...)
	e.POST("/settings/notifications/deliveries/:id/retry", h.retryDelivery, web(login)...)
	// Unsubscribe links work without a session; the token is the authority.
	e.GET("/unsubscribe/:token", h.unsubscribe)
	e.POST("/unsubscribe/:token", h.unsubscribe)
	e.GET("/settings/audit-log", h.auditLog, web(login)...)
	e.GET("/settings/audit-log/export.csv", h.auditExport("csv"), web(login)...)
	e.GET("/settings/audit-log/export.json", h.auditExport("json"), web(login)...)
	e.GET("/settings/workspace", h.workspaceSettings, web(login)...)
	e.POST("/settings/workspace", h.renameWorkspace, web(login)...)
	e.POST("/settings/workspace/key-policy", h.saveKeyPolicy, web(login, sudo)...)
	e.POST("/settings/workspace/inactivity-policy", h.saveInactivityPolicy, web(login)...)
	e.POST("/settings/workspace/two-factor-policy", h.saveTwoFactorPolicy, web(login, sudo)...)
	e.GET("/settings/account", h.account, web(login)...)
	e.POST("/settings/account/password", h.changePassword, web(login)...) // asks for the current password itself
	e.GET("/settings/oauth-apps", h.listOAuthApps, web(login)...)
	e.GET("/settings/oauth-apps/new", h.newOAuthApp, web(login)...)
	e.POST("/settings/oauth-apps", h.registerOAuthApp, web(login, sudo)...)
	e.GET("/settings/oauth-apps/:id", h.showOAuthApp, web(login)...)
	e.POST("/settings/oauth-apps/:id/rotate-secret", h.rotateOAuthAppSecret, web(login, sudo)...)
	e.POST("/settings/oauth-apps/:id/revoke", h.revokeOAuthApp, web(login)...)
	e.GET("/settings/authorized-apps", h.authorizedApps, web(login)...)
	e.POST("/settings/authorized-apps/:id/revoke", h.revokeAuthorizedApp, web(login)...)
	e.GET("/settings/webhooks", h.listWebhooks, web(login)...)
	e.GET("/settings/webhooks/new", h.newWebhook, web(login)...)
	e.POST("/settings/webhooks", h.createWebhook, web(login, sudo)...)
	e.GET("/settings/webhooks/:id", h.showWebhook, web(login)...)
	e.POST("/settings/webhooks/:id", h.updateWebhook, web(login)...)
	e.POST("/settings/webhooks/:id/enable", h.setWebhookEnabled(true), web(login)...)
	e.POST("/settings/webhooks/:id/disable", h.setWebhookEnabled(false), web(login)...)
	e.POST("/settings/webhooks/:id/rotate-secret", h.rotateWebhookSecret, web(login, sudo)...)
	e.POST("/settings/webhooks/:id/delete", h.deleteWebhook, web(login)...)
	e.POST("/settings/webhooks/:id/test", h.sendWebhookTest, web(login)...)
	e.POST("/workspaces/switch", h.switchWorkspace, web(login)...)
	// The consent screen of OAuth apps: a dashboard page, with its session
	// and CSRF protection.
	e.GET(tokens.AuthorizePath, h.oauthAuthorize, web(login)...)
	e.POST(tokens.AuthorizePath, h.oauthAuthorize, web(login)...)
	h.securityRoutes(e, web)

	if h.Mailbox != nil {
		e.GET("/dev/mailbox", h.mailbox, web()...)
		e.GET("/dev/mailbox/:id", h.mailboxMessage, web()...)
		e.GET("/dev/mailbox/:id/html", h.mailboxHTML, web()...)
	}
}

// router registers routes with their middleware composed once, at start:
// echo v4 applies a route's own middleware again on every request, which
// costs a closure per middleware per request on the API's hot path.
type router struct{ *echo.Echo }

func (r router) GET(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) *echo.Route {
	return r.Echo.GET(path, compose(h, m))
}

func (r router) POST(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) *echo.Route {
	return r.Echo.POST(path, compose(h, m))
}

func (r router) PATCH(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) *echo.Route {
	return r.Echo.PATCH(path, compose(h, m))
}

func (r router) DELETE(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) *echo.Route {
	return r.Echo.DELETE(path, compose(h, m))
}

func (r router) Add(method, path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) *echo.Route {
	return r.Echo.Add(method, path, compose(h, m))
}

// compose wraps h in m, the first middleware outermost, as echo would.
func compose(h echo.HandlerFunc, m []echo.MiddlewareFunc) echo.HandlerFunc {
	for i := len(m) - 1; i >= 0; i-- {
		h = m[i](h)
	}
	return h
}

// privatePage keeps every answer behind login out of every cache, the
// browser's back-forward cache included: after logout, Back must not show
// a key list, an audit log or a team's addresses.
func privatePage(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		noStore(c)
		return next(c)
	}
}

// serveAssets serves the embedded files; a URL carrying the file's current
// content hash (assets.Path) may be cached for a year.
func serveAssets() echo.HandlerFunc {
	files := http.StripPrefix("/assets/", http.FileServerFS(assets.FS))
	return func(c echo.Context) error {
		name := c.Param("*")
		if v := c.QueryParam("v"); v != "" && v == assets.Version(name) {
			c.Response().Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			c.Response().Header().Set("Cache-Control", "no-cache")
		}
		files.ServeHTTP(c.Response(), c.Request())
		return nil
	}
}

// serveFavicon answers the browsers that ask for /favicon.ico whatever the
// page's <link rel="icon"> says.
func serveFavicon(c echo.Context) error {
	b, err := assets.FS.ReadFile("favicon.ico")
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "public, max-age=86400")
	return c.Blob(http.StatusOK, "image/x-icon", b)
}

func (h *Handlers) home(c echo.Context) error {
	if h.Sessions.GetInt64(c.Request().Context(), sessUserID) == 0 {
		return c.Redirect(http.StatusSeeOther, "/login")
	}
	return c.Redirect(http.StatusSeeOther, "/settings/api-keys")
}

func (h *Handlers) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 503 while the database does not answer, else 200. Redis
// ("redis": "ok", "unreachable", or "off" without KEYSMITH_REDIS_URL)
// never makes it 503: without Redis the API still answers, each replica
// counting rate limits on its own, which the status calls "degraded". So
// for the identity provider ("oidc"): while it is unreachable, password
// sign-in still works.
func (h *Handlers) readyz(c echo.Context) error {
	body := map[string]string{"status": "ok", "database": "ok", "redis": "off", "oidc": "off"}
	if h.SSO != nil {
		if body["oidc"] = h.SSO.Status(); body["oidc"] != "ok" {
			body["status"] = "degraded"
		}
	}
	if h.SharedLimits != nil {
		body["redis"] = "ok"
		if err := h.SharedLimits.Ping(c.Request().Context()); err != nil {
			body["status"], body["redis"] = "degraded", "unreachable"
		}
	}
	if err := models.Ping(h.DB); err != nil {
		h.Log.Error("readiness: database unreachable", "err", err)
		body["status"], body["database"] = "unavailable", "unreachable"
		return c.JSON(http.StatusServiceUnavailable, body)
	}
	return c.JSON(http.StatusOK, body)
}
