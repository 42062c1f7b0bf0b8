package handlers

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/alexedwards/scs/v2"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"keysmith/accounts"
	"keysmith/models"
	"keysmith/teams"
	"keysmith/views"
)

// newRequestID is "req_" and 26 lowercase base32 characters (128 random
// bits and more): rand.Text's alphabet in lower case, built in one
// allocation since every request gets one.
func newRequestID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	var b [len("req_") + 26]byte
	copy(b[:], "req_")
	rand.Read(b[len("req_"):])
	for i := len("req_"); i < len(b); i++ {
		b[i] = alphabet[b[i]%32]
	}
	return string(b[:])
}

// contentSecurityPolicy forbids inline scripts and styles, framing and
// foreign origins: the dashboard loads only its own embedded assets.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"

// securityHeaders sets the headers every answer carries; over https, HSTS
// too. The values never change, so each answer gets them in one allocation
// rather than one per header (as echo's Secure middleware would).
//
// The API's answers (under /v1/) are JSON, never rendered, framed or
// followed as links: they carry nosniff (and HSTS) alone. The page headers
// would take an API answer past eight headers with its five RateLimit ones,
// where Go's header map outgrows its single group: measured, that alone
// cost the authenticated path a tenth of a no-op's throughput
// (docs/BENCHMARKS-notes.md).
func securityHeaders(https bool) echo.MiddlewareFunc {
	names := [...]string{
		echo.HeaderXContentTypeOptions, echo.HeaderXXSSProtection, echo.HeaderXFrameOptions,
		echo.HeaderContentSecurityPolicy, echo.HeaderReferrerPolicy,
	}
	values := [len(names)]string{"nosniff", "0", "DENY", contentSecurityPolicy, "same-origin"}
	for i, n := range names {
		names[i] = http.CanonicalHeaderKey(n)
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			set := names[:]
			if strings.HasPrefix(c.Request().URL.Path, "/v1/") {
				set = names[:1]
			}
			vals := values // a copy per answer: header values belong to their answer
			hd := c.Response().Header()
			for i, n := range set {
				hd[n] = vals[i : i+1 : i+1]
			}
			if https && c.Scheme() == "https" {
				hd.Set(echo.HeaderStrictTransportSecurity, "max-age=63072000; includeSubdomains")
			}
			return next(c)
		}
	}
}

// logRequests writes one structured line per request. It logs the path and
// never the query string, headers or body: those can hold API keys, reset
// tokens, passwords or session cookies. A path that carries a secret (an
// unsubscribe token) is logged as its route pattern.
func (h *Handlers) logRequests() echo.MiddlewareFunc {
	return middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		LogStatus:    true,
		LogMethod:    true,
		LogURIPath:   true,
		LogRoutePath: true,
		LogLatency:   true,
		LogRemoteIP:  true,
		LogRequestID: true,
		LogError:     true,
		HandleError:  true,
		LogValuesFunc: func(c echo.Context, v middleware.RequestLoggerValues) error {
			level := slog.LevelInfo
			if v.Status >= 500 {
				level = slog.LevelError
			}
			ctx := c.Request().Context()
			if !h.Log.Enabled(ctx, level) {
				return nil
			}
			path := v.URIPath
			if strings.Contains(v.RoutePath, ":token") {
				path = v.RoutePath
			}
			attrs := []slog.Attr{
				slog.String("method", v.Method),
				slog.String("path", path),
				slog.Int("status", v.Status),
				slog.Duration("latency", v.Latency),
				slog.String("ip", v.RemoteIP),
				slog.String("request_id", v.RequestID),
			}
			if v.Error != nil && v.Status >= 500 {
				attrs = append(attrs, slog.String("err", v.Error.Error()))
			}
			h.Log.LogAttrs(ctx, level, "request", attrs...)
			return nil
		},
	})
}

// sessions loads the scs session for the request and saves it just before
// the response headers go out. scs's own LoadAndSave is net/http middleware;
// under echo the handler may write through c.Response() after a wrapped
// middleware has returned (an error rendered by the error handler), so the
// commit hangs on echo's Before hook, which fires on whatever writes first.
func sessions(sm *scs.SessionManager, log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			var token string
			if cookie, err := r.Cookie(sm.Cookie.Name); err == nil {
				token = cookie.Value
			}
			ctx, err := sm.Load(r.Context(), token)
			if err != nil {
				return err
			}
			ctx = context.WithValue(ctx, sessionLoadedKey{}, true)
			c.SetRequest(r.WithContext(ctx))
			res := c.Response()
			res.Header().Add(echo.HeaderVary, echo.HeaderCookie)
			saved := false
			save := func() {
				if saved {
					return
				}
				saved = true
				switch sm.Status(ctx) {
				case scs.Modified:
					token, expiry, err := sm.Commit(ctx)
					if err != nil {
						log.Error("session commit failed", "err", err)
						return
					}
					sm.WriteSessionCookie(ctx, res.Writer, token, expiry)
				case scs.Destroyed:
					sm.WriteSessionCookie(ctx, res.Writer, "", time.Time{})
				}
			}
			res.Before(save)
			err = next(c)
			if !res.Committed && err == nil {
				save()
			}
			return err
		}
	}
}

// sessionLoadedKey marks a request whose session loaded: error pages are
// also rendered for requests that never reached (or failed in) sessions.
type sessionLoadedKey struct{}

func hasSession(c echo.Context) bool {
	ok, _ := c.Request().Context().Value(sessionLoadedKey{}).(bool)
	return ok
}

// Session keys.
const (
	sessUserID         = "user_id"
	sessEpoch          = "epoch"
	sessWorkspaceID    = "workspace_id"
	sessFlashKind      = "flash_kind"
	sessFlashMsg       = "flash_msg"
	sessFlashHref      = "flash_href"
	sessFlashLinkText  = "flash_link_text"
	sessResetTokenHash = "reset_token_hash"
)

// viewer is who is logged in, and in which workspace, for this request.
type viewer struct {
	User        models.User
	Memberships []models.Membership
	Current     models.Membership
	// TwoFactorDue is set while the current workspace requires two-step
	// verification that the user has off, within its grace period.
	TwoFactorDue *teams.TwoFactorStanding
}

type viewerKey struct{}

func currentViewer(c echo.Context) *viewer {
	v, _ := c.Request().Context().Value(viewerKey{}).(*viewer)
	return v
}

// requireLogin lets a request through only with a live session: the user
// exists and has not changed password since the session logged in.
// Everyone else goes to the login page, and comes back after.
func (h *Handlers) requireLogin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		uid := h.Sessions.GetInt64(ctx, sessUserID)
		if uid == 0 {
			return h.redirectToLogin(c, "")
		}
		user, err := h.Accounts.User(ctx, uid)
		if errors.Is(err, accounts.ErrNotFound) || (err == nil && user.SessionEpoch != h.Sessions.GetInt(ctx, sessEpoch)) {
			if err := h.Sessions.Destroy(ctx); err != nil {
				return err
			}
			return h.redirectToLogin(c, "Your session has ended. Please log in again.")
		}
		if err != nil {
			return err
		}
		ms, err := h.Accounts.Memberships(ctx, uid)
		if err != nil {
			return err
		}
		if len(ms) == 0 {
			return echo.NewHTTPError(http.StatusForbidden, "You are not a member of any workspace.")
		}
		v := &viewer{User: user, Memberships: ms, Current: ms[0]}
		wid := h.Sessions.GetInt64(ctx, sessWorkspaceID)
		for _, m := range ms {
			if m.WorkspaceID == wid {
				v.Current = m
			}
		}
		c.SetRequest(c.Request().WithContext(context.WithValue(ctx, viewerKey{}, v)))
		// A link from an email names the workspace it belongs to
		// (?workspace=ID). A GET changes nothing: if that is another of the
		// member's workspaces, the page asks before switching (by POST).
		if q, err := strconv.ParseInt(c.QueryParam("workspace"), 10, 64); err == nil && q != v.Current.WorkspaceID && c.Request().Method == http.MethodGet {
			for _, m := range ms {
				if m.WorkspaceID == q {
					u := *c.Request().URL
					query := u.Query()
					query.Del("workspace")
					u.RawQuery = query.Encode()
					return h.app(c, http.StatusOK, "", "Switch workspace?", views.SwitchWorkspacePage(views.SwitchWorkspaceView{
						TargetID: q, TargetName: m.Workspace.Name, Current: v.Current.Workspace.Name, Next: u.RequestURI(),
					}))
				}
			}
		}
		return next(c)
	}
}

// redirectOnLogin sends logged-in users away from the login and sign-up pages.
func (h *Handlers) redirectIfLoggedIn(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if h.Sessions.GetInt64(c.Request().Context(), sessUserID) != 0 {
			return c.Redirect(http.StatusSeeOther, "/")
		}
		return next(c)
	}
}

func (h *Handlers) redirectToLogin(c echo.Context, msg string) error {
	if msg != "" {
		h.flash(c, "info", msg)
	}
	target := "/login"
	if c.Request().Method == http.MethodGet {
		target += "?next=" + url.QueryEscape(c.Request().URL.RequestURI())
	}
	return redirect(c, target)
}

// storableText refuses, at the edge, text no database column can hold: a
// NUL byte (PostgreSQL rejects it in TEXT) or invalid UTF-8, in the path,
// the query string or a form body. JSON bodies are checked where they are
// decoded (decodeJSON).
func storableText(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		ok := validText(r.URL.Path) && (r.URL.RawQuery == "" || validValues(r.URL.Query()))
		if ok && r.Body != nil && r.Method != http.MethodGet && r.Method != http.MethodHead {
			// Media types are case-insensitive, and Go parses a form
			// whatever case its Content-Type is in: so must this check.
			mt, _, _ := mime.ParseMediaType(r.Header.Get(echo.HeaderContentType))
			switch mt {
			case echo.MIMEApplicationForm:
				if err := r.ParseForm(); err != nil {
					return badText(c, "The form body could not be read.")
				}
				ok = validValues(r.PostForm)
			case echo.MIMEMultipartForm:
				if err := r.ParseMultipartForm(1 << 20); err != nil {
					return badText(c, "The form body could not be read.")
				}
				ok = validValues(r.PostForm)
			}
		}
		if !ok {
			return badText(c, "The request contains characters that cannot be stored: a NUL byte or invalid UTF-8.")
		}
		return next(c)
	}
}

func badText(c echo.Context, msg string) error {
	if oauthPath(c.Request().URL.Path) {
		return oauthFail(c, http.StatusBadRequest, "invalid_request", msg)
	}
	if strings.HasPrefix(c.Request().URL.Path, "/v1/") {
		return apiFail(c, http.StatusBadRequest, errInvalidRequest, "invalid_encoding", msg)
	}
	return echo.NewHTTPError(http.StatusBadRequest, msg)
}

// validText is UTF-8 without NUL.
func validText(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

func validValues(v url.Values) bool {
	for k, vs := range v {
		if !validText(k) {
			return false
		}
		for _, s := range vs {
			if !validText(s) {
				return false
			}
		}
	}
	return true
}

// csrfTokenFromBodyOnly hides a _csrf in the query string from echo's CSRF
// check, which reads the merged form: a token belongs in the body or the
// X-CSRF-Token header, never in a URL that logs and Referer headers keep.
func csrfTokenFromBodyOnly(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.Method != http.MethodGet && r.Method != http.MethodHead && r.URL.Query().Has("_csrf") {
			if r.Form == nil {
				if err := r.ParseMultipartForm(1 << 20); err != nil && !errors.Is(err, http.ErrNotMultipart) {
					return echo.NewHTTPError(http.StatusBadRequest, "The form body could not be read.")
				}
			}
			if body, ok := r.PostForm["_csrf"]; ok {
				r.Form["_csrf"] = body
			} else {
				delete(r.Form, "_csrf")
			}
		}
		return next(c)
	}
}

// renewCSRF gives the browser a new CSRF token, replacing any cookie the
// CSRF middleware set on this response: at login and logout, so a token
// seen before never outlives the session it was issued in.
func (h *Handlers) renewCSRF(c echo.Context) {
	token := rand.Text()
	header := c.Response().Header()
	header["Set-Cookie"] = slices.DeleteFunc(header["Set-Cookie"], func(v string) bool {
		return strings.HasPrefix(v, csrfCookieName+"=")
	})
	c.SetCookie(&http.Cookie{
		Name: csrfCookieName, Value: token, Path: "/", MaxAge: 86400, HttpOnly: true,
		Secure: h.Config.SecureCookies(), SameSite: http.SameSiteLaxMode,
	})
	c.Set(csrfContextKey, token)
}

// countAPI counts each API answer by its outcome for the metrics: the code
// apiFail gave, or "ok". Errors returned to echo are counted where they
// are rendered (handleError).
func (h *Handlers) countAPI(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		if err != nil || !strings.HasPrefix(c.Request().URL.Path, "/v1/") {
			return err
		}
		code, _ := c.Get(apiCodeKey).(string)
		if strings.HasPrefix(c.Path(), AuthzPath) { // a proxy's question, not a call of the API
			if code == "" {
				code = "allowed"
			}
			h.Metrics.Decision(code)
			return nil
		}
		if code == "" {
			code = "ok"
		}
		h.Metrics.APIRequest(code)
		return nil
	}
}
