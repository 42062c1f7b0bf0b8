package handlers

import (
	"errors"
	"fmt"
	"math"
	"net/http"

	"github.com/labstack/echo/v4"

	"keysmith/accounts"
	"keysmith/models"
	"keysmith/validate"
	"keysmith/views"
)

func (h *Handlers) signupForm(c echo.Context) error {
	return h.public(c, http.StatusOK, "Sign up", views.SignupPage(views.SignupForm{Email: c.QueryParam("email"), Next: c.QueryParam("next")}))
}

func (h *Handlers) signup(c echo.Context) error {
	form := views.SignupForm{Email: c.FormValue("email"), Name: c.FormValue("name"), Next: c.FormValue("next")}
	user, err := h.Accounts.SignUp(c.Request().Context(), accounts.SignUpInput{
		Email: form.Email, Name: form.Name, Password: c.FormValue("password"),
	})
	var fieldErrs validate.Errors
	switch {
	case errors.As(err, &fieldErrs):
		form.Errors = views.FieldErrors(fieldErrs)
		return h.public(c, http.StatusUnprocessableEntity, "Sign up", views.SignupPage(form))
	case errors.Is(err, accounts.ErrEmailTaken):
		form.Errors = views.FieldErrors{"email": "An account with this email already exists. Log in instead, or reset your password."}
		return h.public(c, http.StatusUnprocessableEntity, "Sign up", views.SignupPage(form))
	case err != nil:
		return err
	}
	if err := h.Mailer.SendWelcome(c.Request().Context(), user.Email, user.DisplayName()); err != nil {
		// The account exists; a lost welcome mail must not undo the sign-up.
		h.Log.Error("welcome email not sent", "user_id", user.ID, "err", err)
	}
	if err := h.startSession(c, user); err != nil {
		return err
	}
	h.flash(c, "success", "Welcome to Keysmith! Your account and personal workspace are ready.")
	if form.Next != "" {
		return redirect(c, safeNext(form.Next))
	}
	return redirect(c, "/settings/api-keys")
}

func (h *Handlers) loginForm(c echo.Context) error {
	return h.public(c, http.StatusOK, "Log in", views.LoginPage(views.LoginForm{Next: c.QueryParam("next")}))
}

func (h *Handlers) login(c echo.Context) error {
	form := views.LoginForm{Email: c.FormValue("email"), Next: c.FormValue("next")}
	password := c.FormValue("password")
	if form.Email == "" || password == "" {
		form.Errors = views.FieldErrors{}
		if form.Email == "" {
			form.Errors["email"] = "Enter your email address."
		}
		if password == "" {
			form.Errors["password"] = "Enter your password."
		}
		return h.public(c, http.StatusUnprocessableEntity, "Log in", views.LoginPage(form))
	}
	user, err := h.Accounts.Authenticate(c.Request().Context(), form.Email, password, c.RealIP())
	var throttled *accounts.ThrottledError
	switch {
	case errors.As(err, &throttled):
		minutes := int(math.Ceil(throttled.RetryAfter.Minutes()))
		c.Response().Header().Set("Retry-After", fmt.Sprint(int(math.Ceil(throttled.RetryAfter.Seconds()))))
		form.Error = fmt.Sprintf("Too many failed attempts. Try again in %d minute%s, or reset your password.", minutes, plural(minutes))
		return h.public(c, http.StatusTooManyRequests, "Log in", views.LoginPage(form))
	case errors.Is(err, accounts.ErrInvalidCredentials):
		form.Error = "That email and password do not match an account."
		return h.public(c, http.StatusUnauthorized, "Log in", views.LoginPage(form))
	case err != nil:
		return err
	}
	if err := h.startSession(c, user); err != nil {
		return err
	}
	return redirect(c, safeNext(form.Next))
}

// startSession logs the user in with a fresh session token (no fixation).
func (h *Handlers) startSession(c echo.Context, user models.User) error {
	ctx := c.Request().Context()
	if err := h.Sessions.RenewToken(ctx); err != nil {
		return err
	}
	h.Sessions.Put(ctx, sessUserID, user.ID)
	h.Sessions.Put(ctx, sessEpoch, user.SessionEpoch)
	return nil
}

func (h *Handlers) logout(c echo.Context) error {
	ctx := c.Request().Context()
	// Destroy deletes the stored session; the flash below then lives in a
	// new, empty session with a new token.
	if err := h.Sessions.Destroy(ctx); err != nil {
		return err
	}
	h.flash(c, "info", "You have been logged out.")
	return redirect(c, "/login")
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
