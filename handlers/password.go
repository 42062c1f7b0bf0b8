package handlers

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"keysmith/accounts"
	"keysmith/outbox"
	"keysmith/validate"
	"keysmith/views"
)

func (h *Handlers) forgotForm(c echo.Context) error {
	return h.public(c, http.StatusOK, "Reset password", views.ForgotPage(views.ForgotForm{}))
}

// forgot answers the same whether or not the email has an account, even
// when it refuses a request past the address's or the IP's limit.
func (h *Handlers) forgot(c echo.Context) error {
	form := views.ForgotForm{Email: accounts.NormalizeEmail(c.FormValue("email"))}
	if form.Email == "" {
		form.Errors = views.FieldErrors{"email": "Enter your email address."}
		return h.public(c, http.StatusUnprocessableEntity, "Reset password", views.ForgotPage(form))
	}
	ctx := c.Request().Context()
	user, token, err := h.Accounts.RequestPasswordReset(ctx, form.Email, c.RealIP())
	var throttled *accounts.ThrottledError
	switch {
	case errors.As(err, &throttled):
		form.Error = mailThrottledMessage(c, throttled)
		return h.public(c, http.StatusTooManyRequests, "Reset password", views.ForgotPage(form))
	case err != nil:
		return err
	}
	if token != "" {
		msg, err := h.Mailer.PasswordReset(ctx, user.Email, user.DisplayName(), token, accounts.ResetLinkLifetime)
		if err == nil {
			err = h.Outbox.SendMail(ctx, outbox.Mail{Message: msg, UserID: user.ID})
		}
		if err != nil {
			return err
		}
	}
	form.Sent = true
	return h.public(c, http.StatusOK, "Reset password", views.ForgotPage(form))
}

// resetForm takes the token from the emailed link, keeps it in the session
// and redirects to a URL without it, so the token never sits in the browser
// history, a Referer header or a later access log line. The session keeps
// only the token's hash: the session row is in the database, and a hash
// read from there cannot be replayed as the link.
func (h *Handlers) resetForm(c echo.Context) error {
	ctx := c.Request().Context()
	if token := c.QueryParam("token"); token != "" {
		h.Sessions.Put(ctx, sessResetTokenHash, accounts.HashToken(token))
		return c.Redirect(http.StatusSeeOther, "/reset-password")
	}
	err := h.Accounts.CheckReset(ctx, h.Sessions.GetString(ctx, sessResetTokenHash))
	if errors.Is(err, accounts.ErrResetLinkInvalid) {
		return h.public(c, http.StatusGone, "Reset password", views.ResetPage(views.ResetForm{Invalid: true}))
	}
	if err != nil {
		return err
	}
	return h.public(c, http.StatusOK, "Reset password", views.ResetPage(views.ResetForm{}))
}

func (h *Handlers) reset(c echo.Context) error {
	ctx := c.Request().Context()
	user, err := h.Accounts.ResetPasswordByHash(ctx, h.Sessions.GetString(ctx, sessResetTokenHash), c.FormValue("password"))
	var fieldErrs validate.Errors
	switch {
	case errors.As(err, &fieldErrs):
		return h.public(c, http.StatusUnprocessableEntity, "Reset password", views.ResetPage(views.ResetForm{Errors: views.FieldErrors(fieldErrs)}))
	case errors.Is(err, accounts.ErrResetLinkInvalid):
		return h.public(c, http.StatusGone, "Reset password", views.ResetPage(views.ResetForm{Invalid: true}))
	case err != nil:
		return err
	}
	// Every session of the user ended with the password change, including
	// any this browser had; start clean and ask for the new password (and
	// the second step, for a user with two-step verification on).
	if err := h.passwordChanged(c, user, true); err != nil {
		return err
	}
	if err := h.Sessions.Destroy(ctx); err != nil {
		return err
	}
	h.flash(c, "success", "Your password has been changed. Log in with your new password.")
	return redirect(c, "/login")
}

func (h *Handlers) account(c echo.Context) error {
	v := currentViewer(c)
	return h.app(c, http.StatusOK, "account", "Account", views.AccountPage(views.AccountForm{Email: v.User.Email, Name: v.User.Name}))
}

func (h *Handlers) changePassword(c echo.Context) error {
	v := currentViewer(c)
	ctx := c.Request().Context()
	form := views.AccountForm{Email: v.User.Email, Name: v.User.Name}
	user, err := h.Accounts.ChangePassword(ctx, v.User.ID, c.FormValue("current_password"), c.FormValue("new_password"))
	var fieldErrs validate.Errors
	switch {
	case errors.As(err, &fieldErrs):
		form.Errors = views.FieldErrors(fieldErrs)
		return h.app(c, http.StatusUnprocessableEntity, "account", "Account", views.AccountPage(form))
	case errors.Is(err, accounts.ErrWrongPassword):
		form.Errors = views.FieldErrors{"current_password": "That is not your current password."}
		return h.app(c, http.StatusUnprocessableEntity, "account", "Account", views.AccountPage(form))
	case err != nil:
		return err
	}
	// This session carries on under a new token at the new epoch; every
	// other session of the user now fails requireLogin's epoch check.
	if err := h.startSession(c, user); err != nil {
		return err
	}
	if err := h.passwordChanged(c, user, false); err != nil {
		return err
	}
	h.flash(c, "success", "Password changed. Every other session has been logged out.")
	return redirect(c, "/settings/account")
}
