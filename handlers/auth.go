package handlers

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"keysmith/accounts"
	"keysmith/models"
	"keysmith/outbox"
	"keysmith/validate"
	"keysmith/views"
)

func (h *Handlers) signupForm(c echo.Context) error {
	return h.public(c, http.StatusOK, "Sign up", views.SignupPage(views.SignupForm{Email: c.QueryParam("email"), Next: c.QueryParam("next")}))
}

// signup answers alike whether or not the address has an account: a new
// address gets a confirmation link, a registered one a note to its owner,
// both mailed in the background. A request past the address's or the IP's
// limit is refused alike for both.
func (h *Handlers) signup(c echo.Context) error {
	form := views.SignupForm{Email: c.FormValue("email"), Name: c.FormValue("name"), Next: c.FormValue("next")}
	if form.Next != "" {
		form.Next = safeNext(form.Next)
	}
	ctx := c.Request().Context()
	req, err := h.Accounts.RequestSignUp(ctx, accounts.SignUpInput{
		Email: form.Email, Name: form.Name, Password: c.FormValue("password"),
	}, c.RealIP())
	var fieldErrs validate.Errors
	var throttled *accounts.ThrottledError
	switch {
	case errors.As(err, &fieldErrs):
		form.Errors = views.FieldErrors(fieldErrs)
		return h.public(c, http.StatusUnprocessableEntity, "Sign up", views.SignupPage(form))
	case errors.As(err, &throttled):
		form.Error = mailThrottledMessage(c, throttled)
		return h.public(c, http.StatusTooManyRequests, "Sign up", views.SignupPage(form))
	case err != nil:
		return err
	}
	switch {
	case req.Existing != nil:
		user := *req.Existing
		msg, err := h.Mailer.AccountExists(ctx, user.Email, user.DisplayName())
		if err == nil {
			err = h.Outbox.SendMail(ctx, outbox.Mail{Message: msg, UserID: user.ID})
		}
		if err != nil {
			return err
		}
	case req.Token != "":
		msg, err := h.Mailer.SignUpLink(ctx, req.Email, cmp.Or(req.Name, req.Email), req.Token, form.Next, accounts.SignUpLinkLifetime)
		if err == nil {
			err = h.Outbox.SendMail(ctx, outbox.Mail{Message: msg})
		}
		if err != nil {
			return err
		}
	}
	form.Email, form.Sent = req.Email, true
	return h.public(c, http.StatusOK, "Check your email", views.SignupPage(form))
}

// signupConfirmForm is where the emailed link lands: it shows a button,
// and only the button's POST creates the account.
func (h *Handlers) signupConfirmForm(c echo.Context) error {
	token := c.QueryParam("token")
	email, err := h.Accounts.CheckSignUpToken(c.Request().Context(), token)
	if errors.Is(err, accounts.ErrSignUpLinkInvalid) {
		return h.public(c, http.StatusGone, "Confirm your email", views.SignupConfirmPage(views.SignupConfirmForm{Invalid: true}))
	}
	if err != nil {
		return err
	}
	c.Response().Header().Set("Referrer-Policy", "no-referrer")
	return h.public(c, http.StatusOK, "Confirm your email", views.SignupConfirmPage(views.SignupConfirmForm{Token: token, Email: email, Next: c.QueryParam("next")}))
}

func (h *Handlers) signupConfirm(c echo.Context) error {
	ctx := c.Request().Context()
	next := safeNext(cmp.Or(c.FormValue("next"), "/settings/api-keys"))
	if inv, ok := h.invitationFor(c, next); ok {
		return h.signupAndJoin(c, inv, strings.TrimPrefix(next, "/invitations/"))
	}
	user, err := h.Accounts.ConfirmSignUp(ctx, c.FormValue("token"))
	switch {
	case errors.Is(err, accounts.ErrSignUpLinkInvalid):
		return h.public(c, http.StatusGone, "Confirm your email", views.SignupConfirmPage(views.SignupConfirmForm{Invalid: true}))
	case errors.Is(err, accounts.ErrEmailTaken):
		return h.public(c, http.StatusConflict, "Confirm your email", views.SignupConfirmPage(views.SignupConfirmForm{Taken: true}))
	case err != nil:
		return err
	}
	if err := h.startSession(c, user); err != nil {
		return err
	}
	h.flash(c, "success", "Welcome to Keysmith! Your account and personal workspace are ready.")
	return redirect(c, next)
}

// invitationFor is the invitation a sign-up confirmation came from: next
// is its page, it is still open, and it invites the address being
// confirmed.
func (h *Handlers) invitationFor(c echo.Context, next string) (models.Invitation, bool) {
	token, ok := strings.CutPrefix(next, "/invitations/")
	if !ok || token == "" || strings.ContainsAny(token, "/?#") {
		return models.Invitation{}, false
	}
	ctx := c.Request().Context()
	email, err := h.Accounts.CheckSignUpToken(ctx, c.FormValue("token"))
	if err != nil {
		return models.Invitation{}, false
	}
	inv, err := h.Teams.Invitation(ctx, token)
	if err != nil || inv.Email != email {
		return models.Invitation{}, false
	}
	return inv, true
}

// signupAndJoin creates the account of someone who signed up from an
// invitation and joins them to its workspace at once: no personal
// workspace, no second "Join" click. Should the invitation be cancelled
// in between, they get a personal workspace after all.
func (h *Handlers) signupAndJoin(c echo.Context, inv models.Invitation, token string) error {
	ctx := c.Request().Context()
	user, err := h.Accounts.ConfirmInvitedSignUp(ctx, c.FormValue("token"))
	switch {
	case errors.Is(err, accounts.ErrSignUpLinkInvalid):
		return h.public(c, http.StatusGone, "Confirm your email", views.SignupConfirmPage(views.SignupConfirmForm{Invalid: true}))
	case errors.Is(err, accounts.ErrEmailTaken):
		return h.public(c, http.StatusConflict, "Confirm your email", views.SignupConfirmPage(views.SignupConfirmForm{Taken: true}))
	case err != nil:
		return err
	}
	joined, err := h.Teams.Accept(ctx, token, user, c.RealIP(), c.Request().UserAgent())
	if err != nil {
		if perr := h.Accounts.CreatePersonalWorkspace(ctx, user); perr != nil {
			return perr
		}
		if err := h.startSession(c, user); err != nil {
			return err
		}
		h.flash(c, "info", "Your account is ready, but the invitation to "+inv.Workspace.Name+" is no longer valid. Ask for a new one; meanwhile you have a personal workspace.")
		return redirect(c, "/settings/api-keys")
	}
	if err := h.startSession(c, user); err != nil {
		return err
	}
	h.Sessions.Put(ctx, sessWorkspaceID, joined.WorkspaceID)
	h.flash(c, "success", fmt.Sprintf("Welcome to Keysmith! You joined %s as %s.", inv.Workspace.Name, inv.Role))
	return redirect(c, "/settings/api-keys")
}

// loginForm is the sign-in page. Without password sign-in, the provider
// is the way in: the page sends the browser there at once, unless it has
// something to say first (a sign-out, a refusal), when it shows the button.
func (h *Handlers) loginForm(c echo.Context) error {
	next := c.QueryParam("next")
	if !h.Config.PasswordLogin && h.SSO != nil && !h.Sessions.Exists(c.Request().Context(), sessFlashMsg) {
		return c.Redirect(http.StatusSeeOther, "/login/oidc?next="+url.QueryEscape(next))
	}
	return h.loginPage(c, http.StatusOK, views.LoginForm{Next: next})
}

// breakGlassForm is the password form for the users the CLI made while
// password sign-in is off; with it on, it is /login.
func (h *Handlers) breakGlassForm(c echo.Context) error {
	if h.Config.PasswordLogin {
		return c.Redirect(http.StatusSeeOther, "/login")
	}
	return h.loginPage(c, http.StatusOK, views.LoginForm{Next: c.QueryParam("next")})
}

// loginPage renders the login form, with the demo account's login while
// the demo account is on and keeps its documented password.
func (h *Handlers) loginPage(c echo.Context, status int, form views.LoginForm) error {
	form.PasswordOff = !h.Config.PasswordLogin
	if form.PasswordOff && c.Request().URL.Path == "/login/password" {
		form.Action = "/login/password"
	}
	if h.SSO != nil {
		form.SSO = h.SSO.Name()
	}
	form.Passkeys = h.Passkeys.Unavailable() == nil
	if h.Config.Demo {
		on, err := h.Accounts.DemoActive(c.Request().Context())
		if err != nil {
			return err
		}
		if on {
			form.Demo = &views.DemoInfo{Email: accounts.DemoEmail, Password: accounts.DemoPassword}
		}
	}
	return h.public(c, status, "Log in", views.LoginPage(form))
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
		return h.loginPage(c, http.StatusUnprocessableEntity, form)
	}
	user, err := h.Accounts.Authenticate(c.Request().Context(), form.Email, password, c.RealIP())
	var throttled *accounts.ThrottledError
	switch {
	case errors.As(err, &throttled):
		minutes := int(math.Ceil(throttled.RetryAfter.Minutes()))
		setRetryAfter(c, throttled.RetryAfter)
		form.Error = fmt.Sprintf("Too many failed attempts. Try again in %d minute%s, or reset your password.", minutes, plural(minutes))
		return h.loginPage(c, http.StatusTooManyRequests, form)
	case errors.Is(err, accounts.ErrInvalidCredentials):
		form.Error = "That email and password do not match an account."
		return h.loginPage(c, http.StatusUnauthorized, form)
	case err != nil:
		return err
	}
	if on, err := h.TwoFactor.Enabled(c.Request().Context(), user.ID); err != nil {
		return err
	} else if on {
		return h.beginSecondStep(c, user, form.Next)
	}
	if err := h.startSession(c, user); err != nil {
		return err
	}
	return redirect(c, safeNext(form.Next))
}

// startSession logs the user in with a fresh session token (no fixation)
// and a fresh CSRF token. Signing in confirms access for sudo mode.
func (h *Handlers) startSession(c echo.Context, user models.User) error {
	ctx := c.Request().Context()
	old := h.Sessions.Token(ctx)
	if err := h.Sessions.RenewToken(ctx); err != nil {
		return err
	}
	h.Sessions.Put(ctx, sessUserID, user.ID)
	h.Sessions.Put(ctx, sessEpoch, user.SessionEpoch)
	h.Sessions.Put(ctx, sessSudoAt, h.Clock.Now().Unix())
	h.renewCSRF(c)
	return h.sessionStarted(c, user, old)
}

func (h *Handlers) logout(c echo.Context) error {
	ctx := c.Request().Context()
	providerLogout := h.ssoLogoutURL(c)
	if hash := h.sessionHash(ctx); hash != "" {
		if err := h.SessionList.Ended(ctx, hash); err != nil {
			return err
		}
	}
	// Destroy deletes the stored session; the flash below then lives in a
	// new, empty session with a new token.
	if err := h.Sessions.Destroy(ctx); err != nil {
		return err
	}
	h.renewCSRF(c)
	if providerLogout != "" {
		// RP-initiated logout, offered: a link, so no form is answered by
		// a redirect to the provider (the pages' CSP keeps forms here).
		h.flashLink(c, "info", "You have been logged out of Keysmith.", providerLogout, "Also sign out of "+h.SSO.Name())
	} else {
		h.flash(c, "info", "You have been logged out.")
	}
	return redirect(c, "/login")
}

// mailThrottledMessage says why a public form sends no mail for now, and
// sets Retry-After. The limits count requests whether or not the address
// has an account, so the message tells nothing about accounts.
func mailThrottledMessage(c echo.Context, t *accounts.ThrottledError) string {
	setRetryAfter(c, t.RetryAfter)
	from := "for this address"
	if t.By == accounts.ByIP {
		from = "from your network"
	}
	return fmt.Sprintf("Too many emails have been requested %s. Try again in %s.", from, waitFor(t.RetryAfter))
}

func setRetryAfter(c echo.Context, d time.Duration) {
	c.Response().Header().Set("Retry-After", fmt.Sprint(int(math.Ceil(d.Seconds()))))
}

// waitFor says how long to wait, rounded up: in minutes under two hours,
// else in hours.
func waitFor(d time.Duration) string {
	if m := int(math.Ceil(d.Minutes())); m < 120 {
		return fmt.Sprintf("%d minute%s", m, plural(m))
	}
	return fmt.Sprintf("%d hours", int(math.Ceil(d.Hours())))
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
