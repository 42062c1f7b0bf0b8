package handlers

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"keysmith/accounts"
	"keysmith/models"
	"keysmith/outbox"
	"keysmith/teams"
	"keysmith/views"
	"keysmith/views/emails"
)

// Session keys of a sign-in waiting for its second step. The session is
// not logged in (no sessUserID) until the step is done.
const (
	sessPendingUserID = "pending_user_id"
	sessPendingEpoch  = "pending_epoch"
	sessPendingAt     = "pending_at"
	sessPendingNext   = "pending_next"
)

// secondStepWithin is how long after the password the second step may
// come; after it, sign-in starts over.
const secondStepWithin = 10 * time.Minute

// securityRoutes registers Settings → Security and the second step of
// signing in (issue 17).
func (h *Handlers) securityRoutes(e router, web func(...echo.MiddlewareFunc) []echo.MiddlewareFunc) {
	guest, login, sudo := h.redirectIfLoggedIn, h.privateLogin, h.sudo
	e.GET("/login/two-factor", h.secondStepForm, web(guest)...)
	e.POST("/login/two-factor", h.secondStep, web(guest)...)
	e.GET("/settings/security", h.security, web(login)...)
	e.POST("/settings/security/two-factor", h.beginTOTP, web(login, sudo)...)
	e.GET("/settings/security/two-factor", h.totpSetup, web(login)...)
	e.POST("/settings/security/two-factor/confirm", h.confirmTOTP, web(login, sudo)...)
	e.POST("/settings/security/two-factor/disable", h.disableTOTP, web(login)...) // asks for the password (or a code) itself
	e.POST("/settings/security/recovery-codes", h.regenerateRecoveryCodes, web(login, sudo)...)
	e.POST("/settings/security/sessions/end-others", h.endOtherSessions, web(login)...)
	e.POST("/settings/security/sessions/:id/end", h.endSession, web(login)...)
	h.passkeyRoutes(e, web)
}

// privateLogin guards every page behind login: a live session, and an
// answer kept out of every cache (privatePage).
func (h *Handlers) privateLogin(next echo.HandlerFunc) echo.HandlerFunc {
	return privatePage(h.requireLiveSession(h.twoFactorPolicy(next)))
}

// twoFactorPolicy applies the current workspace's "Require two-step
// verification" to a member who has it off: during the grace period every
// page shows a banner; after it, only Settings → Security (and switching
// to another workspace) opens until they turn it on. Keys are unaffected:
// the API never comes here.
func (h *Handlers) twoFactorPolicy(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		v := currentViewer(c)
		w := v.Current.Workspace
		if w.TwoFactorRequiredAt == nil {
			return next(c)
		}
		on, err := h.TwoFactor.Enabled(c.Request().Context(), v.User.ID)
		if err != nil {
			return err
		}
		st := teams.StandingOf(w, on, h.Clock.Now())
		if !st.Required {
			return next(c)
		}
		path := c.Request().URL.Path
		open := path == "/settings/security" || strings.HasPrefix(path, "/settings/security/") || path == "/workspaces/switch"
		if st.Blocked && !open {
			h.flash(c, "error", w.Name+" requires two-step verification. Turn it on to open its other pages; your API keys keep working.")
			return redirect(c, "/settings/security")
		}
		v.TwoFactorDue = &st
		return next(c)
	}
}

// requireLiveSession is requireLogin, and the session must not have been
// ended from Settings → Security; it keeps the session's last-active time.
func (h *Handlers) requireLiveSession(next echo.HandlerFunc) echo.HandlerFunc {
	return h.requireLogin(h.trackSession(next))
}

func (h *Handlers) trackSession(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		v := currentViewer(c)
		ended, err := h.SessionList.Seen(ctx, v.User.ID, h.sessionHash(ctx), c.RealIP(), c.Request().UserAgent())
		if err != nil {
			return err
		}
		if ended {
			if err := h.Sessions.Destroy(ctx); err != nil {
				return err
			}
			return h.redirectToLogin(c, "Your session has ended. Please log in again.")
		}
		return next(c)
	}
}

// sessionHash is the hash this request's session is stored under; "" for
// a session not stored yet.
func (h *Handlers) sessionHash(ctx context.Context) string {
	if t := h.Sessions.Token(ctx); t != "" {
		return accounts.SessionTokenHash(t)
	}
	return ""
}

// sessionStarted lists a session that startSession just logged in or
// renewed (from oldToken) on the user's Security page.
func (h *Handlers) sessionStarted(c echo.Context, user models.User, oldToken string) error {
	ctx := c.Request().Context()
	oldHash := ""
	if oldToken != "" {
		oldHash = accounts.SessionTokenHash(oldToken)
	}
	return h.SessionList.Started(ctx, user.ID, oldHash, h.sessionHash(ctx), c.RealIP(), c.Request().UserAgent())
}

func actorOf(c echo.Context) accounts.Actor {
	return accounts.Actor{IP: c.RealIP(), UserAgent: c.Request().UserAgent()}
}

// beginSecondStep is where a right password leads when the user has
// two-step verification on: the session, under a fresh token, remembers
// who is signing in but is not logged in.
func (h *Handlers) beginSecondStep(c echo.Context, user models.User, next string) error {
	ctx := c.Request().Context()
	if err := h.Sessions.RenewToken(ctx); err != nil {
		return err
	}
	h.Sessions.Put(ctx, sessPendingUserID, user.ID)
	h.Sessions.Put(ctx, sessPendingEpoch, user.SessionEpoch)
	h.Sessions.Put(ctx, sessPendingAt, h.Clock.Now().Unix())
	h.Sessions.Put(ctx, sessPendingNext, next)
	return redirect(c, "/login/two-factor")
}

func (h *Handlers) clearSecondStep(ctx context.Context) {
	for _, k := range []string{sessPendingUserID, sessPendingEpoch, sessPendingAt, sessPendingNext} {
		h.Sessions.Remove(ctx, k)
	}
}

// pendingUser is the user whose password this session gave, if it was
// recently enough.
func (h *Handlers) pendingUser(c echo.Context) (int64, bool) {
	ctx := c.Request().Context()
	uid := h.Sessions.GetInt64(ctx, sessPendingUserID)
	at := time.Unix(h.Sessions.GetInt64(ctx, sessPendingAt), 0)
	if uid == 0 || h.Clock.Now().Sub(at) > secondStepWithin {
		return 0, false
	}
	return uid, true
}

func (h *Handlers) secondStepForm(c echo.Context) error {
	uid, ok := h.pendingUser(c)
	if !ok {
		h.clearSecondStep(c.Request().Context())
		return redirect(c, "/login")
	}
	return h.secondStepPage(c, http.StatusOK, uid, "")
}

// secondStepPage offers the pending user's second steps: a code, a
// passkey, or both.
func (h *Handlers) secondStepPage(c echo.Context, status int, uid int64, msg string) error {
	ctx := c.Request().Context()
	form := views.TwoFactorLoginForm{Error: msg}
	st, err := h.TwoFactor.Status(ctx, uid)
	if err != nil {
		return err
	}
	passkeys, err := h.Passkeys.List(ctx, uid)
	if err != nil {
		return err
	}
	form.Passkey = len(passkeys) > 0 && h.Passkeys.Unavailable() == nil
	form.PasskeyOnly = form.Passkey && !st.Enabled
	return h.public(c, status, "Two-step verification", views.TwoFactorLoginPage(form))
}

func (h *Handlers) secondStep(c echo.Context) error {
	ctx := c.Request().Context()
	uid, ok := h.pendingUser(c)
	if !ok {
		h.clearSecondStep(ctx)
		h.flash(c, "info", "Your sign-in took too long. Please log in again.")
		return redirect(c, "/login")
	}
	page := func(status int, msg string) error { return h.secondStepPage(c, status, uid, msg) }
	code := c.FormValue("code")
	if code == "" {
		return page(http.StatusUnprocessableEntity, "Enter the code from your authenticator app, or a recovery code.")
	}
	method, err := h.TwoFactor.VerifySecondStep(ctx, uid, code, c.RealIP(), actorOf(c))
	var throttled *accounts.ThrottledError
	switch {
	case errors.As(err, &throttled):
		minutes := int(math.Ceil(throttled.RetryAfter.Minutes()))
		setRetryAfter(c, throttled.RetryAfter)
		return page(http.StatusTooManyRequests, fmt.Sprintf("Too many failed attempts. Try again in %d minute%s.", minutes, plural(minutes)))
	case errors.Is(err, accounts.ErrWrongCode), errors.Is(err, accounts.ErrTwoFactorOff):
		return page(http.StatusUnauthorized, "That code is wrong or was already used.")
	case err != nil:
		return err
	}
	return h.finishSecondStep(c, uid, method)
}

// finishSecondStep signs in the pending user after their second step,
// under a fresh session token, unless their account changed meanwhile.
func (h *Handlers) finishSecondStep(c echo.Context, uid int64, method accounts.Method) error {
	ctx := c.Request().Context()
	user, err := h.Accounts.User(ctx, uid)
	if err != nil {
		return err
	}
	next := h.Sessions.GetString(ctx, sessPendingNext)
	if user.SessionEpoch != h.Sessions.GetInt(ctx, sessPendingEpoch) {
		// The password changed (or a factor) since it was given.
		h.clearSecondStep(ctx)
		h.flash(c, "info", "Your account changed while you signed in. Please log in again.")
		return redirect(c, "/login")
	}
	h.clearSecondStep(ctx)
	if err := h.startSession(c, user); err != nil {
		return err
	}
	if method == accounts.MethodRecovery {
		st, err := h.TwoFactor.Status(ctx, user.ID)
		if err != nil {
			return err
		}
		if err := h.securityMail(c, user, "A recovery code was used to sign in to Keysmith",
			"Someone signed in to your Keysmith account with one of your recovery codes.",
			fmt.Sprintf("Recovery codes left: %d. If this was not you, change your password and make new recovery codes now.", st.RecoveryLeft)); err != nil {
			return err
		}
		h.flash(c, "warning", fmt.Sprintf("You signed in with a recovery code (recovery codes left: %d). Lost your phone? Set up your authenticator app again on the Security page.", st.RecoveryLeft))
	}
	return redirect(c, safeNext(next))
}

func (h *Handlers) security(c echo.Context) error {
	return h.securityPage(c, http.StatusOK, nil)
}

// securityPage renders Settings → Security; adjust sets what a form being
// shown again keeps (the passkey forms').
func (h *Handlers) securityPage(c echo.Context, status int, errs views.FieldErrors, adjust ...func(*views.SecurityView)) error {
	ctx := c.Request().Context()
	v := currentViewer(c)
	st, err := h.TwoFactor.Status(ctx, v.User.ID)
	if err != nil {
		return err
	}
	list, err := h.SessionList.List(ctx, v.User.ID)
	if err != nil {
		return err
	}
	now, current := h.Clock.Now(), h.sessionHash(ctx)
	view := views.SecurityView{
		Email: v.User.Email, TwoFactor: st.Enabled, RecoveryLeft: st.RecoveryLeft, RecoveryTotal: st.RecoveryTotal, Errors: errs,
	}
	if st.Enabled {
		view.EnabledAt = views.Exact(st.EnabledAt)
	}
	for _, s := range list {
		view.Sessions = append(view.Sessions, views.SessionRow{
			ID: s.ID, Device: views.DeviceName(s.UserAgent), IP: s.IP,
			SignedIn: views.Relative(s.CreatedAt, now), LastActive: views.Relative(s.LastSeenAt, now),
			Current: s.TokenHash == current,
		})
	}
	if view.Passkeys, err = h.passkeysView(ctx, v.User.ID); err != nil {
		return err
	}
	view.NoPassword = v.User.PasswordHash == ""
	if view.SSO, err = h.ssoSecurityView(c, len(view.Passkeys.Rows)); err != nil {
		return err
	}
	for _, f := range adjust {
		f(&view)
	}
	return h.app(c, status, "security", "Security", views.SecurityPage(view))
}

func (h *Handlers) beginTOTP(c echo.Context) error {
	_, err := h.TwoFactor.BeginTOTP(c.Request().Context(), currentViewer(c).User)
	if errors.Is(err, accounts.ErrTwoFactorOn) {
		h.flash(c, "info", "Two-step verification is already on.")
		return redirect(c, "/settings/security")
	}
	if err != nil {
		return err
	}
	return redirect(c, "/settings/security/two-factor")
}

func (h *Handlers) totpSetup(c echo.Context) error {
	return h.totpSetupPage(c, http.StatusOK, "")
}

// totpSetupPage shows the pending secret: as a QR code and as text.
func (h *Handlers) totpSetupPage(c echo.Context, status int, errMsg string) error {
	enr, err := h.TwoFactor.PendingTOTP(c.Request().Context(), currentViewer(c).User)
	if errors.Is(err, accounts.ErrNoEnrollment) {
		return redirect(c, "/settings/security")
	}
	if err != nil {
		return err
	}
	qr, err := views.QRDataURL(enr.URL)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return h.app(c, status, "security", "Set up an authenticator app", views.TOTPSetupPage(views.TOTPSetupView{QR: qr, Secret: enr.Secret, Error: errMsg}))
}

func (h *Handlers) confirmTOTP(c echo.Context) error {
	ctx := c.Request().Context()
	v := currentViewer(c)
	codes, user, err := h.TwoFactor.ConfirmTOTP(ctx, v.User.ID, c.FormValue("code"), actorOf(c))
	switch {
	case errors.Is(err, accounts.ErrWrongCode):
		return h.totpSetupPage(c, http.StatusUnprocessableEntity, "That code is not right. Enter the six digits the app shows now.")
	case errors.Is(err, accounts.ErrNoEnrollment), errors.Is(err, accounts.ErrTwoFactorOn):
		return redirect(c, "/settings/security")
	case err != nil:
		return err
	}
	if err := h.afterFactorChange(c, user); err != nil {
		return err
	}
	advice, err := h.notYou(c.Request().Context(), user)
	if err != nil {
		return err
	}
	if err := h.securityMail(c, user, "Two-step verification is on for your Keysmith account",
		"Two-step verification was turned on for your Keysmith account.",
		"Signing in now asks for a code from your authenticator app. Every other session was signed out. If this was not you, "+advice+" now."); err != nil {
		return err
	}
	h.flash(c, "success", "Two-step verification is on. Every other session has been signed out.")
	return h.showRecoveryCodes(c, user, codes)
}

// showRecoveryCodes renders the one response that carries recovery codes.
func (h *Handlers) showRecoveryCodes(c echo.Context, user models.User, codes []string) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	return h.app(c, http.StatusCreated, "security", "Recovery codes", views.RecoveryCodesPage(views.RecoveryCodesView{
		Email: user.Email, Codes: codes, File: views.RecoveryCodesFile(user.Email, codes),
	}))
}

func (h *Handlers) disableTOTP(c echo.Context) error {
	ctx := c.Request().Context()
	v := currentViewer(c)
	user, err := h.TwoFactor.DisableTOTP(ctx, v.User.ID, c.FormValue("password"), c.FormValue("code"), actorOf(c))
	switch {
	case errors.Is(err, accounts.ErrWrongPassword):
		return h.securityPage(c, http.StatusUnprocessableEntity, views.FieldErrors{"password": "That is not your password."})
	case errors.Is(err, accounts.ErrWrongCode):
		return h.securityPage(c, http.StatusUnprocessableEntity, views.FieldErrors{"code": "That code is wrong or was already used."})
	case errors.Is(err, accounts.ErrNeedsPassword) && v.User.PasswordHash == "": // no password: the form asks for a code only
		return h.securityPage(c, http.StatusUnprocessableEntity, views.FieldErrors{"code": "Enter a code from your authenticator app, or a recovery code."})
	case errors.Is(err, accounts.ErrNeedsPassword):
		return h.securityPage(c, http.StatusUnprocessableEntity, views.FieldErrors{"password": "Enter your password, or a code below."})
	case errors.Is(err, accounts.ErrTwoFactorOff):
		return redirect(c, "/settings/security")
	case err != nil:
		return err
	}
	if err := h.afterFactorChange(c, user); err != nil {
		return err
	}
	provider, err := h.providerOnly(ctx, user)
	if err != nil {
		return err
	}
	rest := "Signing in now asks only for your password. Every other session was signed out. If this was not you, reset your password and turn it on again."
	if provider != "" {
		rest = "Signing in now asks only for your " + provider + " account. Every other session was signed out. If this was not you, sign in and turn it on again, and tell whoever runs " + provider + "."
	}
	if err := h.securityMail(c, user, "Two-step verification is off for your Keysmith account",
		"Two-step verification was turned off for your Keysmith account.", rest); err != nil {
		return err
	}
	h.flash(c, "success", "Two-step verification is off. Every other session has been signed out.")
	return redirect(c, "/settings/security")
}

// afterFactorChange keeps this session at the user's new epoch, under a
// new token, and takes the others off the list (the epoch ended them).
func (h *Handlers) afterFactorChange(c echo.Context, user models.User) error {
	if err := h.startSession(c, user); err != nil {
		return err
	}
	ctx := c.Request().Context()
	return h.SessionList.Unlist(ctx, user.ID, h.sessionHash(ctx))
}

func (h *Handlers) regenerateRecoveryCodes(c echo.Context) error {
	v := currentViewer(c)
	codes, err := h.TwoFactor.RegenerateRecoveryCodes(c.Request().Context(), v.User.ID, actorOf(c))
	if errors.Is(err, accounts.ErrTwoFactorOff) {
		return redirect(c, "/settings/security")
	}
	if err != nil {
		return err
	}
	h.flash(c, "success", "New recovery codes made. The old ones no longer work.")
	return h.showRecoveryCodes(c, v.User, codes)
}

func (h *Handlers) endSession(c echo.Context) error {
	ctx := c.Request().Context()
	v := currentViewer(c)
	err := h.SessionList.End(ctx, v.User.ID, pathID(c, "id"))
	if errors.Is(err, accounts.ErrNotFound) {
		return echo.NewHTTPError(http.StatusNotFound, "That session has ended already.")
	}
	if err != nil {
		return err
	}
	if err := h.Accounts.RecordSecurityEvent(ctx, v.User, actorOf(c), accounts.ActionSessionEnded); err != nil {
		return err
	}
	h.flash(c, "success", "That session has been signed out.")
	return redirect(c, "/settings/security")
}

func (h *Handlers) endOtherSessions(c echo.Context) error {
	ctx := c.Request().Context()
	v := currentViewer(c)
	n, err := h.SessionList.EndOthers(ctx, v.User.ID, h.sessionHash(ctx))
	if err != nil {
		return err
	}
	if n > 0 {
		if err := h.Accounts.RecordSecurityEvent(ctx, v.User, actorOf(c), accounts.ActionSessionEnded); err != nil {
			return err
		}
	}
	h.flash(c, "success", fmt.Sprintf("Signed out %d other session%s.", n, plural(n)))
	return redirect(c, "/settings/security")
}

// passwordChanged follows a password change (reset is true for a reset
// link): the other sessions leave the list (the epoch ended them), the
// workspaces' audit logs record it, and the user gets an email.
func (h *Handlers) passwordChanged(c echo.Context, user models.User, reset bool) error {
	ctx := c.Request().Context()
	keep, action := h.sessionHash(ctx), accounts.ActionPasswordChanged
	if reset {
		keep, action = "", accounts.ActionPasswordReset
	}
	if err := h.SessionList.Unlist(ctx, user.ID, keep); err != nil {
		return err
	}
	if err := h.Accounts.RecordSecurityEvent(ctx, user, actorOf(c), action); err != nil {
		return err
	}
	how := "changed on the Account page"
	if reset {
		how = "reset with an emailed link"
	}
	return h.securityMail(c, user, "Your Keysmith password was changed",
		"The password of your Keysmith account was "+how+".",
		"Every other session was signed out. If this was not you, reset your password now and check your two-step verification.")
}

// providerOnly is the provider that signs in a user who has no password
// (it signed them up and they are linked to it), or "".
func (h *Handlers) providerOnly(ctx context.Context, user models.User) (string, error) {
	if user.PasswordHash != "" || h.SSO == nil {
		return "", nil
	}
	link, err := h.SSO.Linked(ctx, user.ID)
	if err != nil || link == nil {
		return "", err
	}
	return h.SSO.Name(), nil
}

// notYou is what a security mail tells a user who did not make the change
// to do first: reset their password, or secure their account at the
// provider that alone signs them in.
func (h *Handlers) notYou(ctx context.Context, user models.User) (string, error) {
	provider, err := h.providerOnly(ctx, user)
	if provider == "" {
		return "reset your password", err
	}
	return "secure your " + provider + " account", nil
}

// securityMail tells the user of a change to their account's security,
// with when and from where.
func (h *Handlers) securityMail(c echo.Context, user models.User, subject, headline, body string) error {
	ctx := c.Request().Context()
	msg, err := h.Mailer.Notice(ctx, user.Email, subject, emails.Notice{
		Name: user.DisplayName(), Headline: headline, Body: body,
		Facts: []string{
			"When: " + views.Exact(h.Clock.Now()),
			"IP address: " + c.RealIP(),
			"Browser: " + views.DeviceName(c.Request().UserAgent()),
		},
		Link: h.Mailer.URL("/settings/security"), LinkLabel: "Review your security settings",
	})
	if err != nil {
		return err
	}
	return h.Outbox.SendMail(ctx, outbox.Mail{Message: msg, UserID: user.ID})
}
