package handlers

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"keysmith/assets"
)

// csrfContextKey is where echo's CSRF middleware leaves the token for forms.
const csrfContextKey = "csrf"

// routes registers every route. Dashboard routes share sessions and CSRF
// protection (Sec-Fetch-Site for modern browsers, else the _csrf form field
// or X-CSRF-Token header against a cookie).
func (h *Handlers) routes(e *echo.Echo) {
	e.GET("/healthz", h.healthz)
	e.GET("/readyz", h.readyz)
	e.GET("/assets/*", serveAssets())
	// The API (SPEC §6) never touches sessions or CSRF cookies; its unknown
	// paths answer handleError's JSON 404.
	e.RouteNotFound("/v1/*", func(echo.Context) error { return echo.ErrNotFound })
	e.GET("/v1/openapi.json", serveOpenAPI)
	e.POST("/v1/keys/verify", h.verify, h.requireServiceToken)
	// Middleware per route, not per group: a group's middleware would also
	// run for unknown paths, answering 401 where 404 is the truth.
	key := h.requireKey
	e.GET("/v1/auth/test", h.authTest, key)
	e.GET("/v1/keys", h.apiListKeys, key, requireScope("keys:read"))
	e.POST("/v1/keys", h.apiCreateKey, key, requireScope("keys:write"))
	e.GET("/v1/keys/:id", h.apiGetKey, key, requireScope("keys:read"))
	e.POST("/v1/keys/:id/rotate", h.apiRotateKey, key, requireScope("keys:write"))
	e.DELETE("/v1/keys/:id", h.apiRevokeKey, key, requireScope("keys:write"))

	web := e.Group("",
		sessions(h.Sessions, h.Log),
		middleware.CSRFWithConfig(middleware.CSRFConfig{
			TokenLookup:    "header:X-CSRF-Token,form:_csrf",
			ContextKey:     csrfContextKey,
			CookieName:     "keysmith_csrf",
			CookiePath:     "/",
			CookieHTTPOnly: true,
			CookieSecure:   h.Config.SecureCookies(),
			CookieSameSite: http.SameSiteLaxMode,
		}),
	)
	guest, login := h.redirectIfLoggedIn, h.requireLogin

	web.GET("/", h.home)
	web.GET("/signup", h.signupForm, guest)
	web.POST("/signup", h.signup, guest)
	web.GET("/login", h.loginForm, guest)
	web.POST("/login", h.login, guest)
	web.POST("/logout", h.logout)
	web.GET("/forgot-password", h.forgotForm)
	web.POST("/forgot-password", h.forgot)
	web.GET("/reset-password", h.resetForm)
	web.POST("/reset-password", h.reset)

	web.GET("/settings", func(c echo.Context) error { return c.Redirect(http.StatusSeeOther, "/settings/api-keys") }, login)
	web.GET("/settings/api-keys", h.listKeys, login)
	web.GET("/settings/api-keys/new", h.newKey, login)
	web.POST("/settings/api-keys", h.createKey, login)
	web.GET("/settings/api-keys/:id", h.showKey, login)
	web.POST("/settings/api-keys/:id", h.renameKey, login)
	web.GET("/settings/api-keys/:id/edit", h.keyRowFragment(true), login)
	web.GET("/settings/api-keys/:id/row", h.keyRowFragment(false), login)
	web.POST("/settings/api-keys/:id/rotate", h.rotateKey, login)
	web.POST("/settings/api-keys/:id/revoke", h.revokeKey, login)
	web.GET("/settings/team", h.team, login)
	web.GET("/settings/notifications", h.notifications, login)
	web.GET("/settings/audit-log", h.auditLog, login)
	web.GET("/settings/account", h.account, login)
	web.POST("/settings/account/password", h.changePassword, login)
	web.POST("/workspaces/switch", h.switchWorkspace, login)

	if h.Mailbox != nil {
		web.GET("/dev/mailbox", h.mailbox)
		web.GET("/dev/mailbox/:id", h.mailboxMessage)
		web.GET("/dev/mailbox/:id/html", h.mailboxHTML)
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

func (h *Handlers) home(c echo.Context) error {
	if h.Sessions.GetInt64(c.Request().Context(), sessUserID) == 0 {
		return c.Redirect(http.StatusSeeOther, "/login")
	}
	return c.Redirect(http.StatusSeeOther, "/settings/api-keys")
}

func (h *Handlers) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

func (h *Handlers) readyz(c echo.Context) error {
	if err := pingDB(h.DB); err != nil {
		h.Log.Error("readiness: database unreachable", "err", err)
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "database": "unreachable"})
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ok", "database": "ok"})
}
