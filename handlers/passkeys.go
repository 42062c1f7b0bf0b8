package handlers

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"

	"github.com/labstack/echo/v4"

	"keysmith/accounts"
	"keysmith/identity"
	"keysmith/views"
)

// sessPasskeyCeremony keeps the one passkey request of a session between
// its options and the browser's answer; the answer pops it (single use).
// A confirmation of access keeps its own (sessSudoCeremony): it may stand
// in front of adding a passkey, whose request must outlive it.
const (
	sessPasskeyCeremony = "passkey_ceremony"
	sessSudoCeremony    = "sudo_passkey_ceremony"
)

// methodPasskey is a second step done with a passkey.
const methodPasskey accounts.Method = "passkey"

// passkeyRoutes registers passkeys (issue 17): Settings → Security's list,
// the second step of signing in, and passwordless sign-in. Each ceremony
// has an options endpoint answering JSON for navigator.credentials, and a
// form the browser's answer is posted with, answered like any form.
func (h *Handlers) passkeyRoutes(e router, web func(...echo.MiddlewareFunc) []echo.MiddlewareFunc) {
	guest, login, sudo := h.redirectIfLoggedIn, h.privateLogin, h.sudo
	e.POST("/settings/security/passkeys/options", h.passkeyRegisterOptions, web(login)...)
	e.POST("/settings/security/passkeys", h.addPasskey, web(login, sudo)...) // the browser's answer waits on Confirm access
	e.POST("/settings/security/passkeys/:id", h.renamePasskey, web(login)...)
	e.POST("/settings/security/passkeys/:id/remove", h.removePasskey, web(login, sudo)...)
	e.POST("/sudo/passkey/options", h.passkeyConfirmOptions, web(login)...) // the answer goes to the action, through h.sudo
	e.POST("/login/two-factor/passkey/options", h.passkeySecondStepOptions, web(guest)...)
	e.POST("/login/two-factor/passkey", h.passkeySecondStep, web(guest)...)
	e.POST("/login/passkey/options", h.passkeySignInOptions, web(guest)...)
	e.POST("/login/passkey", h.passkeySignIn, web(guest)...)
}

func (h *Handlers) passkeysView(ctx context.Context, userID int64) (views.PasskeysView, error) {
	var v views.PasskeysView
	if err := h.Passkeys.Unavailable(); err != nil {
		v.Unavailable = unavailableReason(err)
	}
	rows, err := h.Passkeys.List(ctx, userID)
	if err != nil {
		return v, err
	}
	now := h.Clock.Now()
	for _, r := range rows {
		row := views.PasskeyRow{ID: r.ID, Name: r.Name, Added: views.Relative(r.CreatedAt, now), LastUsed: "Never", Synced: r.BackupState}
		if r.LastUsedAt != nil {
			row.LastUsed = views.Relative(*r.LastUsedAt, now)
		}
		v.Rows = append(v.Rows, row)
	}
	return v, nil
}

// unavailableReason is ErrUnavailable's explanation, for the page.
func unavailableReason(err error) string {
	msg := err.Error()
	prefix := identity.ErrUnavailable.Error() + ": "
	if len(msg) > len(prefix) && msg[:len(prefix)] == prefix {
		msg = msg[len(prefix):]
	}
	return msg + "."
}

// passkeyOptions answers a ceremony's options as JSON and keeps the
// ceremony in the session under key.
func (h *Handlers) passkeyOptions(c echo.Context, key string, options []byte, ceremony identity.Ceremony, err error) error {
	switch {
	case errors.Is(err, identity.ErrUnavailable):
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"error": "Passkeys are unavailable on this server."})
	case errors.Is(err, identity.ErrPasskeyNotFound):
		return c.JSON(http.StatusNotFound, map[string]string{"error": "You have no passkey. Use a code instead."})
	case err != nil:
		return err
	}
	h.Sessions.Put(c.Request().Context(), key, []byte(ceremony))
	noStore(c)
	return c.JSONBlob(http.StatusOK, options)
}

func (h *Handlers) popCeremony(c echo.Context) identity.Ceremony {
	return h.Sessions.PopBytes(c.Request().Context(), sessPasskeyCeremony)
}

func (h *Handlers) passkeyConfirmOptions(c echo.Context) error {
	opts, ceremony, err := h.Passkeys.BeginConfirm(c.Request().Context(), currentViewer(c).User)
	return h.passkeyOptions(c, sessSudoCeremony, opts, ceremony, err)
}

func (h *Handlers) passkeyRegisterOptions(c echo.Context) error {
	opts, ceremony, err := h.Passkeys.BeginRegistration(c.Request().Context(), currentViewer(c).User)
	return h.passkeyOptions(c, sessPasskeyCeremony, opts, ceremony, err)
}

// passkeyMessage says why a browser's answer was not accepted.
func passkeyMessage(err error) string {
	switch {
	case errors.Is(err, identity.ErrCeremonyExpired):
		return "That passkey request expired. Please try again."
	case errors.Is(err, identity.ErrAlreadyRegistered):
		return "That passkey is already registered."
	case errors.Is(err, identity.ErrSignCountWentBack):
		return "That passkey was refused: its signature counter went back, as when it has been copied. Use another passkey or a code, and remove this one."
	case errors.Is(err, identity.ErrUnavailable):
		return "Passkeys are unavailable on this server."
	default:
		return "That passkey was not accepted. Please try again."
	}
}

func (h *Handlers) addPasskey(c echo.Context) error {
	ctx := c.Request().Context()
	v := currentViewer(c)
	name := c.FormValue("name")
	ceremony := h.popCeremony(c)
	again := func(errs views.FieldErrors) error {
		return h.securityPage(c, http.StatusUnprocessableEntity, nil, func(sv *views.SecurityView) {
			sv.Passkeys.Name, sv.Passkeys.Errors = name, errs
		})
	}
	if c.FormValue("credential") == "" {
		return again(views.FieldErrors{"passkey": "Adding a passkey needs JavaScript and a browser that supports passkeys."})
	}
	key, user, err := h.Passkeys.FinishRegistration(ctx, v.User, ceremony, []byte(c.FormValue("credential")), name, actorOf(c))
	switch {
	case errors.Is(err, identity.ErrNameTooLong):
		return again(views.FieldErrors{"name": fmt.Sprintf("At most %d characters.", identity.MaxNameLength)})
	case errors.Is(err, identity.ErrPasskeyRefused), errors.Is(err, identity.ErrCeremonyExpired),
		errors.Is(err, identity.ErrAlreadyRegistered), errors.Is(err, identity.ErrUnavailable):
		return again(views.FieldErrors{"passkey": passkeyMessage(err)})
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
	if err := h.securityMail(c, user, "A passkey was added to your Keysmith account",
		"A passkey named “"+key.Name+"” was added to your Keysmith account.",
		"It can now sign in to your account, alone or as the second step after your password. Every other session was signed out. If this was not you, remove it on the Security page and "+advice+" now."); err != nil {
		return err
	}
	h.flash(c, "success", "Passkey “"+key.Name+"” added. Every other session has been signed out.")
	return redirect(c, "/settings/security")
}

func (h *Handlers) renamePasskey(c echo.Context) error {
	v := currentViewer(c)
	id := pathID(c, "id")
	err := h.Passkeys.Rename(c.Request().Context(), v.User.ID, id, c.FormValue("name"))
	switch {
	case errors.Is(err, identity.ErrPasskeyNotFound):
		return echo.NewHTTPError(http.StatusNotFound, "That passkey has been removed.")
	case errors.Is(err, identity.ErrNameTooLong):
		name := c.FormValue("name")
		return h.securityPage(c, http.StatusUnprocessableEntity, nil, func(sv *views.SecurityView) {
			for i := range sv.Passkeys.Rows {
				if sv.Passkeys.Rows[i].ID == id {
					sv.Passkeys.Rows[i].Name = name
					sv.Passkeys.Rows[i].Error = fmt.Sprintf("At most %d characters.", identity.MaxNameLength)
				}
			}
		})
	case err != nil:
		return err
	}
	h.flash(c, "success", "Passkey renamed.")
	return redirect(c, "/settings/security")
}

func (h *Handlers) removePasskey(c echo.Context) error {
	v := currentViewer(c)
	key, user, err := h.Passkeys.Remove(c.Request().Context(), v.User.ID, pathID(c, "id"), actorOf(c))
	if errors.Is(err, identity.ErrPasskeyNotFound) {
		return echo.NewHTTPError(http.StatusNotFound, "That passkey has been removed already.")
	}
	if err != nil {
		return err
	}
	if err := h.afterFactorChange(c, user); err != nil {
		return err
	}
	advice, err := h.notYou(c.Request().Context(), user)
	if err != nil {
		return err
	}
	if err := h.securityMail(c, user, "A passkey was removed from your Keysmith account",
		"The passkey named “"+key.Name+"” was removed from your Keysmith account.",
		"It no longer signs in to your account. Every other session was signed out. If this was not you, "+advice+" now."); err != nil {
		return err
	}
	h.flash(c, "success", "Passkey “"+key.Name+"” removed. Every other session has been signed out.")
	return redirect(c, "/settings/security")
}

func (h *Handlers) passkeySecondStepOptions(c echo.Context) error {
	uid, ok := h.pendingUser(c)
	if !ok {
		return c.JSON(http.StatusUnauthorized, map[string]string{"error": "Your sign-in took too long. Please log in again."})
	}
	ctx := c.Request().Context()
	user, err := h.Accounts.User(ctx, uid)
	if err != nil {
		return err
	}
	opts, ceremony, err := h.Passkeys.BeginSecondStep(ctx, user)
	return h.passkeyOptions(c, sessPasskeyCeremony, opts, ceremony, err)
}

func (h *Handlers) passkeySecondStep(c echo.Context) error {
	ctx := c.Request().Context()
	ceremony := h.popCeremony(c)
	uid, ok := h.pendingUser(c)
	if !ok {
		h.clearSecondStep(ctx)
		h.flash(c, "info", "Your sign-in took too long. Please log in again.")
		return redirect(c, "/login")
	}
	user, err := h.Accounts.User(ctx, uid)
	if err != nil {
		return err
	}
	_, err = h.Passkeys.FinishSecondStep(ctx, user, ceremony, []byte(c.FormValue("credential")), c.RealIP(), actorOf(c))
	var throttled *accounts.ThrottledError
	switch {
	case errors.As(err, &throttled):
		minutes := int(math.Ceil(throttled.RetryAfter.Minutes()))
		setRetryAfter(c, throttled.RetryAfter)
		return h.secondStepPage(c, http.StatusTooManyRequests, uid, fmt.Sprintf("Too many failed attempts. Try again in %d minute%s.", minutes, plural(minutes)))
	case errors.Is(err, identity.ErrPasskeyRefused), errors.Is(err, identity.ErrCeremonyExpired),
		errors.Is(err, identity.ErrSignCountWentBack), errors.Is(err, identity.ErrUnavailable):
		return h.secondStepPage(c, http.StatusUnauthorized, uid, passkeyMessage(err))
	case err != nil:
		return err
	}
	return h.finishSecondStep(c, uid, methodPasskey)
}

func (h *Handlers) passkeySignInOptions(c echo.Context) error {
	opts, ceremony, err := h.Passkeys.BeginSignIn(c.Request().Context(), c.QueryParam("mediation") == "conditional")
	return h.passkeyOptions(c, sessPasskeyCeremony, opts, ceremony, err)
}

// passkeySignIn signs in with a passkey alone: its user verification
// stands for both steps, so the session starts at once, under a fresh
// token.
func (h *Handlers) passkeySignIn(c echo.Context) error {
	ctx := c.Request().Context()
	ceremony := h.popCeremony(c)
	form := views.LoginForm{Next: c.FormValue("next")}
	user, _, err := h.Passkeys.FinishSignIn(ctx, ceremony, []byte(c.FormValue("credential")), c.RealIP(), actorOf(c))
	var throttled *accounts.ThrottledError
	switch {
	case errors.As(err, &throttled):
		minutes := int(math.Ceil(throttled.RetryAfter.Minutes()))
		setRetryAfter(c, throttled.RetryAfter)
		form.Error = fmt.Sprintf("Too many failed attempts. Try again in %d minute%s.", minutes, plural(minutes))
		return h.loginPage(c, http.StatusTooManyRequests, form)
	case errors.Is(err, identity.ErrPasskeyRefused), errors.Is(err, identity.ErrCeremonyExpired),
		errors.Is(err, identity.ErrSignCountWentBack), errors.Is(err, identity.ErrUnavailable):
		form.Error = passkeyMessage(err)
		return h.loginPage(c, http.StatusUnauthorized, form)
	case err != nil:
		return err
	}
	// A sign-in under way with a password gives way to this one.
	h.clearSecondStep(ctx)
	if err := h.startSession(c, user); err != nil {
		return err
	}
	return redirect(c, safeNext(form.Next))
}
