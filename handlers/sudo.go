package handlers

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"keysmith/accounts"
	"keysmith/identity"
	"keysmith/views"
)

// sessSudoAt is when this session last confirmed access (Unix seconds):
// at sign-in, or on the Confirm access page. It lives in the server-side
// session only.
const sessSudoAt = "sudo_at"

// sudo guards a sensitive action (issue 17's sudo mode). Within the window
// since the session last confirmed access, the action runs. Otherwise the
// answer is the Confirm access page, whose form posts every field the user
// submitted back to the same action with their password, a code or a
// passkey (whose request /sudo/passkey/options makes); when
// that confirmation is right, the action runs on the original input. The
// page's own fields never reach the action.
func (h *Handlers) sudo(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		r := c.Request()
		if _, err := c.FormParams(); err != nil {
			return echo.NewHTTPError(http.StatusBadRequest, "The form body could not be read.")
		}
		password, code, passkey := r.PostForm.Get(views.SudoPasswordField), r.PostForm.Get(views.SudoCodeField), r.PostForm.Get(views.SudoPasskeyField)
		confirming := false
		for _, name := range []string{views.SudoPasswordField, views.SudoCodeField, views.SudoPasskeyField} {
			confirming = confirming || r.PostForm.Has(name)
			r.Form.Del(name)
			r.PostForm.Del(name)
			if r.MultipartForm != nil {
				delete(r.MultipartForm.Value, name)
			}
		}
		var last time.Time
		if at := h.Sessions.GetInt64(ctx, sessSudoAt); at != 0 {
			last = time.Unix(at, 0)
		}
		if h.Sudo.Fresh(last) {
			return next(c)
		}
		if !confirming {
			return h.sudoPage(c, http.StatusOK, "", nil)
		}
		user := currentViewer(c).User
		var at time.Time
		var err error
		if passkey != "" {
			ceremony := h.Sessions.PopBytes(ctx, sessSudoCeremony)
			if _, err = h.Passkeys.FinishConfirm(ctx, user, ceremony, []byte(passkey), c.RealIP(), actorOf(c)); err == nil {
				at, err = h.Sudo.Confirmed(ctx, user, accounts.SudoByPasskey, actorOf(c))
			}
		} else {
			at, err = h.Sudo.Confirm(ctx, user.ID, password, code, c.RealIP(), actorOf(c))
		}
		var throttled *accounts.ThrottledError
		switch {
		case errors.As(err, &throttled):
			minutes := int(math.Ceil(throttled.RetryAfter.Minutes()))
			setRetryAfter(c, throttled.RetryAfter)
			return h.sudoPage(c, http.StatusTooManyRequests, fmt.Sprintf("Too many failed attempts. Try again in %d minute%s.", minutes, plural(minutes)), nil)
		case errors.Is(err, accounts.ErrNeedsPassword):
			return h.sudoPage(c, http.StatusUnprocessableEntity, "", views.FieldErrors{views.SudoPasswordField: "Enter your password."})
		case errors.Is(err, accounts.ErrWrongPassword):
			return h.sudoPage(c, http.StatusUnauthorized, "", views.FieldErrors{views.SudoPasswordField: "That is not your password."})
		case errors.Is(err, accounts.ErrWrongCode):
			return h.sudoPage(c, http.StatusUnauthorized, "", views.FieldErrors{views.SudoCodeField: "That code is wrong or was already used."})
		case errors.Is(err, identity.ErrPasskeyRefused), errors.Is(err, identity.ErrCeremonyExpired),
			errors.Is(err, identity.ErrSignCountWentBack), errors.Is(err, identity.ErrUnavailable):
			return h.sudoPage(c, http.StatusUnauthorized, passkeyMessage(err), nil)
		case err != nil:
			return err
		}
		h.Sessions.Put(ctx, sessSudoAt, at.Unix())
		return next(c)
	}
}

// sudoPage renders Confirm access with the submitted fields (the CSRF
// token aside: the page carries the current one) as hidden inputs.
func (h *Handlers) sudoPage(c echo.Context, status int, errMsg string, errs views.FieldErrors) error {
	r := c.Request()
	v := currentViewer(c)
	app, err := h.TwoFactor.Status(r.Context(), v.User.ID) // the authenticator app, not any second step
	if err != nil {
		return err
	}
	view := views.SudoView{
		Action: r.URL.RequestURI(), TwoFactor: app.Enabled, Window: views.Duration(h.Sudo.Window()), Error: errMsg, Errors: errs,
		NoPassword: v.User.PasswordHash == "",
	}
	if h.SSO != nil {
		link, err := h.SSO.Linked(r.Context(), v.User.ID)
		if err != nil {
			return err
		}
		if link != nil {
			view.SSO = h.SSO.Name()
		}
	}
	if h.Passkeys.Unavailable() == nil {
		keys, err := h.Passkeys.List(r.Context(), v.User.ID)
		if err != nil {
			return err
		}
		view.Passkey = len(keys) > 0
	}
	names := make([]string, 0, len(r.PostForm))
	for name := range r.PostForm {
		if name != "_csrf" && !strings.Contains(name, "password") { // never written back into a page
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		for _, value := range r.PostForm[name] {
			view.Fields = append(view.Fields, views.HiddenField{Name: name, Value: value})
		}
	}
	noStore(c)
	return h.wholeApp(c, status, "Confirm access", views.SudoPage(view))
}
