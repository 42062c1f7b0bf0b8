package handlers

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"keysmith/accounts"
	"keysmith/identity"
	"keysmith/views"
)

// Session keys of single sign-on (issue 18).
const (
	// sessSSOAttempt is the authorization request under way (its state,
	// nonce and PKCE verifier, and what it is for); the callback pops it,
	// so a replayed callback finds none.
	sessSSOAttempt = "sso_attempt"
	// sessSSOPending is a provider's account waiting to be linked to the
	// existing account with its email, once that proves its password.
	sessSSOPending   = "sso_pending"
	sessSSOPendingAt = "sso_pending_at"
	// sessSSOIDToken is the ID token of this session's sign-in, the hint
	// of the provider's logout.
	sessSSOIDToken = "sso_id_token"
)

// Purposes of an authorization request.
const (
	ssoSignIn  = "sign-in"
	ssoLink    = "link"    // from Settings → Security, signed in
	ssoConfirm = "confirm" // a confirmation of access (sudo)
)

// ssoAttempt is what the session keeps of an authorization request.
type ssoAttempt struct {
	identity.Attempt
	Purpose string
	Next    string              // where a sign-in lands
	UserID  int64               // who linked or confirmed
	Action  string              // the sensitive action waiting on a confirmation
	Fields  []views.HiddenField // its input
}

// ssoRoutes registers single sign-on when it is configured.
func (h *Handlers) ssoRoutes(e router, web func(...echo.MiddlewareFunc) []echo.MiddlewareFunc) {
	if h.SSO == nil {
		return
	}
	guest, login, sudo := h.redirectIfLoggedIn, h.privateLogin, h.sudo
	e.GET("/login/oidc", h.ssoStart, web(guest)...)
	e.GET(identity.CallbackPath, h.ssoCallback, web()...)
	e.GET("/login/oidc/link", h.ssoLinkForm, web(guest)...)
	e.POST("/login/oidc/link", h.ssoLinkWithPassword, web(guest)...)
	e.POST("/sudo/oidc", h.ssoConfirmStart, web(login)...)
	e.POST("/settings/security/sso/link", h.ssoLinkStart, web(login, sudo)...)
	e.POST("/settings/security/sso/unlink", h.ssoUnlink, web(login, sudo)...)
}

// ssoBegin sends the browser to the provider with a new authorization
// request, kept in the session for the callback.
func (h *Handlers) ssoBegin(c echo.Context, at ssoAttempt) error {
	authURL, attempt, err := h.SSO.Begin(c.Request().Context(), at.Purpose == ssoConfirm)
	if errors.Is(err, identity.ErrSSOUnavailable) {
		h.Log.Warn("single sign-on: provider unavailable", "err", err)
		return h.ssoError(c, http.StatusServiceUnavailable, h.SSO.Name()+" is unavailable",
			"Keysmith cannot reach "+h.SSO.Name()+" right now. Try again in a minute"+h.orPassword()+".", c.Request().URL.RequestURI())
	}
	if err != nil {
		return err
	}
	at.Attempt = attempt
	b, err := json.Marshal(at)
	if err != nil {
		return err
	}
	h.Sessions.Put(c.Request().Context(), sessSSOAttempt, b)
	noStore(c)
	return c.Redirect(http.StatusSeeOther, authURL)
}

func (h *Handlers) orPassword() string {
	if h.Config.PasswordLogin {
		return ", or sign in with your password"
	}
	return ""
}

func (h *Handlers) ssoStart(c echo.Context) error {
	return h.ssoBegin(c, ssoAttempt{Purpose: ssoSignIn, Next: safeNext(c.QueryParam("next"))})
}

// ssoError renders a clear page about a sign-in that signed nobody in.
func (h *Handlers) ssoError(c echo.Context, status int, title, msg, retry string) error {
	noStore(c)
	return h.public(c, status, title, views.SSOErrorPage(views.SSOErrorView{Title: title, Message: msg, Retry: retry}))
}

// ssoCallback is where the provider sends the browser back. The request
// it answers is popped from the session before anything else, so a
// callback works once; its state must match, and the ID token must
// verify, before anyone is signed in.
func (h *Handlers) ssoCallback(c echo.Context) error {
	ctx := c.Request().Context()
	raw := h.Sessions.PopBytes(ctx, sessSSOAttempt)
	name := h.SSO.Name()
	var at ssoAttempt
	if len(raw) == 0 || json.Unmarshal(raw, &at) != nil {
		return h.ssoError(c, http.StatusBadRequest, "Sign-in expired",
			"This answer from "+name+" does not belong to a sign-in under way in this browser: it was used already, or it expired. Start again.", "/login/oidc")
	}
	retry := "/login/oidc?next=" + url.QueryEscape(at.Next)
	if at.Purpose != ssoSignIn {
		retry = "/settings/security"
	}
	q := c.QueryParams()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(at.State)) != 1 {
		return h.ssoError(c, http.StatusBadRequest, "Sign-in refused",
			"This answer from "+name+" does not match the sign-in this browser started, so it was refused. Start again.", retry)
	}
	if e := q.Get("error"); e != "" {
		msg := name + " did not sign you in"
		if e == "access_denied" {
			msg = "The sign-in was cancelled at " + name
		}
		if d := q.Get("error_description"); d != "" {
			msg += ": " + d
		}
		return h.ssoError(c, http.StatusUnauthorized, "Not signed in", msg+".", retry)
	}
	id, err := h.SSO.Finish(ctx, at.Attempt, q.Get("code"))
	switch {
	case errors.Is(err, identity.ErrSSOUnavailable):
		return h.ssoError(c, http.StatusServiceUnavailable, name+" is unavailable", "Keysmith cannot reach "+name+" right now. Try again in a minute.", retry)
	case errors.Is(err, identity.ErrReauthTooOld):
		return h.ssoError(c, http.StatusUnauthorized, "Access not confirmed", name+" did not ask you to sign in again, so access was not confirmed. Try again.", "")
	case errors.Is(err, identity.ErrSSORefused):
		h.Log.Warn("single sign-on: answer refused", "err", err)
		return h.ssoError(c, http.StatusUnauthorized, "Sign-in refused", "The answer from "+name+" could not be verified, so nobody was signed in. Start again; if it happens again, tell your administrator.", retry)
	case err != nil:
		return err
	}
	switch at.Purpose {
	case ssoLink:
		return h.ssoFinishLink(c, at, id)
	case ssoConfirm:
		return h.ssoFinishConfirm(c, at, id)
	}
	return h.ssoSignIn(c, id, at.Next)
}

// ssoSignIn signs in the user the provider's account is linked to (or
// makes them), through the second step when they have one.
func (h *Handlers) ssoSignIn(c echo.Context, id identity.Identity, next string) error {
	ctx := c.Request().Context()
	name := h.SSO.Name()
	res, err := h.SSO.SignIn(ctx, id, actorOf(c))
	var link *identity.LinkRequiredError
	switch {
	case errors.Is(err, identity.ErrEmailUnverified):
		return h.ssoError(c, http.StatusForbidden, "Email not verified",
			name+" has not verified the email address "+id.Email+", and Keysmith makes accounts only for verified addresses. Verify it at "+name+", then sign in again.", "")
	case errors.Is(err, identity.ErrNoEmail):
		return h.ssoError(c, http.StatusForbidden, "No email address",
			name+" did not share an email address, which Keysmith needs for your account. Ask your administrator to allow the email scope.", "")
	case errors.As(err, &link):
		b, err := json.Marshal(id)
		if err != nil {
			return err
		}
		h.Sessions.Put(ctx, sessSSOPending, b)
		h.Sessions.Put(ctx, sessSSOPendingAt, h.Clock.Now().Unix())
		h.Sessions.Put(ctx, sessPendingNext, next)
		return redirect(c, "/login/oidc/link")
	case err != nil:
		return err
	}
	return h.ssoSignedIn(c, res, id, next)
}

// ssoSignedIn starts the session of a user the provider vouched for, in
// the workspace the claims name; a user with an authenticator app or a
// passkey gives it first, as after a password.
func (h *Handlers) ssoSignedIn(c echo.Context, res identity.SignInResult, id identity.Identity, next string) error {
	ctx := c.Request().Context()
	if res.WorkspaceID != 0 {
		h.Sessions.Put(ctx, sessWorkspaceID, res.WorkspaceID)
	}
	h.Sessions.Put(ctx, sessSSOIDToken, id.IDToken)
	if next == "" {
		next = "/settings/api-keys"
	}
	if on, err := h.TwoFactor.Enabled(ctx, res.User.ID); err != nil {
		return err
	} else if on {
		return h.beginSecondStep(c, res.User, next)
	}
	if err := h.startSession(c, res.User); err != nil {
		return err
	}
	if res.Created {
		h.flash(c, "success", "Welcome to Keysmith! You signed in with "+h.SSO.Name()+".")
	}
	return redirect(c, safeNext(next))
}

// ssoPending is the provider's account waiting for the existing account's
// password, if it came recently enough.
func (h *Handlers) ssoPending(c echo.Context) (identity.Identity, bool) {
	ctx := c.Request().Context()
	var id identity.Identity
	at := time.Unix(h.Sessions.GetInt64(ctx, sessSSOPendingAt), 0)
	if h.Clock.Now().Sub(at) > secondStepWithin || json.Unmarshal(h.Sessions.GetBytes(ctx, sessSSOPending), &id) != nil || id.Subject == "" {
		return id, false
	}
	return id, true
}

func (h *Handlers) ssoLinkForm(c echo.Context) error {
	id, ok := h.ssoPending(c)
	if !ok {
		return redirect(c, "/login")
	}
	noStore(c)
	return h.public(c, http.StatusOK, "Link your account", views.SSOLinkPage(views.SSOLinkForm{Provider: h.SSO.Name(), Email: id.Email}))
}

// ssoLinkWithPassword links the provider's account to the existing one
// whose password was just given, and signs in.
func (h *Handlers) ssoLinkWithPassword(c echo.Context) error {
	ctx := c.Request().Context()
	id, ok := h.ssoPending(c)
	if !ok {
		h.flash(c, "info", "Your sign-in took too long. Please sign in again.")
		return redirect(c, "/login")
	}
	form := views.SSOLinkForm{Provider: h.SSO.Name(), Email: id.Email}
	page := func(status int) error {
		noStore(c)
		return h.public(c, status, "Link your account", views.SSOLinkPage(form))
	}
	password := c.FormValue("password")
	if password == "" {
		form.Errors = views.FieldErrors{"password": "Enter your Keysmith password."}
		return page(http.StatusUnprocessableEntity)
	}
	user, err := h.Accounts.Authenticate(ctx, id.Email, password, c.RealIP())
	var throttled *accounts.ThrottledError
	switch {
	case errors.As(err, &throttled):
		minutes := int(math.Ceil(throttled.RetryAfter.Minutes()))
		setRetryAfter(c, throttled.RetryAfter)
		form.Error = fmt.Sprintf("Too many failed attempts. Try again in %d minute%s.", minutes, plural(minutes))
		return page(http.StatusTooManyRequests)
	case errors.Is(err, accounts.ErrInvalidCredentials):
		form.Errors = views.FieldErrors{"password": "That is not the password of this account."}
		return page(http.StatusUnauthorized)
	case err != nil:
		return err
	}
	if err := h.SSO.Link(ctx, user, id, actorOf(c)); err != nil {
		return h.ssoLinkError(c, err)
	}
	h.Sessions.Remove(ctx, sessSSOPending)
	h.Sessions.Remove(ctx, sessSSOPendingAt)
	next := h.Sessions.PopString(ctx, sessPendingNext)
	if err := h.securityMail(c, user, h.SSO.Name()+" was linked to your Keysmith account",
		"Your Keysmith account can now be signed in to with "+h.SSO.Name()+" ("+id.Email+").",
		"If this was not you, change your password and unlink it on the Security page now."); err != nil {
		return err
	}
	res, err := h.SSO.SignIn(ctx, id, actorOf(c))
	if err != nil {
		return err
	}
	h.flash(c, "success", h.SSO.Name()+" is linked: from now on, sign in with it.")
	return h.ssoSignedIn(c, res, id, next)
}

func (h *Handlers) ssoLinkError(c echo.Context, err error) error {
	name := h.SSO.Name()
	switch {
	case errors.Is(err, identity.ErrIdentityTaken):
		return h.ssoError(c, http.StatusConflict, "Already linked", "That "+name+" account is linked to another Keysmith account.", "")
	case errors.Is(err, identity.ErrAlreadyLinked):
		return h.ssoError(c, http.StatusConflict, "Already linked", "This Keysmith account is linked to another "+name+" account already. Unlink it under Settings → Security first.", "")
	}
	return err
}

// ssoLinkStart links the signed-in user's account to the provider's:
// the provider says which account, by signing in.
func (h *Handlers) ssoLinkStart(c echo.Context) error {
	return h.ssoBegin(c, ssoAttempt{Purpose: ssoLink, UserID: currentViewer(c).User.ID})
}

// ssoSessionUser is the user signed in to this session, who must be the
// one who started the request.
func (h *Handlers) ssoSessionUser(c echo.Context, at ssoAttempt) (int64, bool) {
	uid := h.Sessions.GetInt64(c.Request().Context(), sessUserID)
	return uid, uid != 0 && uid == at.UserID
}

func (h *Handlers) ssoFinishLink(c echo.Context, at ssoAttempt, id identity.Identity) error {
	ctx := c.Request().Context()
	uid, ok := h.ssoSessionUser(c, at)
	if !ok {
		return h.ssoError(c, http.StatusForbidden, "Not linked", "You are no longer signed in as the user who asked to link "+h.SSO.Name()+".", "")
	}
	user, err := h.Accounts.User(ctx, uid)
	if err != nil {
		return err
	}
	if err := h.SSO.Link(ctx, user, id, actorOf(c)); err != nil {
		return h.ssoLinkError(c, err)
	}
	if err := h.securityMail(c, user, h.SSO.Name()+" was linked to your Keysmith account",
		"Your Keysmith account can now be signed in to with "+h.SSO.Name()+" ("+id.Email+").",
		"If this was not you, change your password and unlink it on the Security page now."); err != nil {
		return err
	}
	h.flash(c, "success", h.SSO.Name()+" is linked: you can sign in with it.")
	return redirect(c, "/settings/security")
}

func (h *Handlers) ssoUnlink(c echo.Context) error {
	v := currentViewer(c)
	err := h.SSO.Unlink(c.Request().Context(), v.User, actorOf(c))
	switch {
	case errors.Is(err, identity.ErrLastSignIn):
		h.flash(c, "error", h.SSO.Name()+" is the only way you sign in. Add a passkey first.")
		return redirect(c, "/settings/security")
	case errors.Is(err, identity.ErrNotLinked):
		return redirect(c, "/settings/security")
	case err != nil:
		return err
	}
	if err := h.securityMail(c, v.User, h.SSO.Name()+" was unlinked from your Keysmith account",
		h.SSO.Name()+" no longer signs in to your Keysmith account.",
		"If this was not you, change your password now."); err != nil {
		return err
	}
	h.flash(c, "success", h.SSO.Name()+" is unlinked.")
	return redirect(c, "/settings/security")
}

// ssoConfirmStart confirms access through the provider: the action and
// its input wait in the session while the provider signs the user in
// again (prompt=login, max_age=0).
func (h *Handlers) ssoConfirmStart(c echo.Context) error {
	r := c.Request()
	if _, err := c.FormParams(); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "The form body could not be read.")
	}
	action := r.PostForm.Get(views.SudoActionField)
	if u, err := url.Parse(action); err != nil || action == "" || u.IsAbs() || u.Host != "" || action[0] != '/' || (len(action) > 1 && action[1] == '/') {
		return echo.NewHTTPError(http.StatusBadRequest, "Nothing waits for a confirmation.")
	}
	at := ssoAttempt{Purpose: ssoConfirm, UserID: currentViewer(c).User.ID, Action: action}
	for name, values := range r.PostForm {
		if name == "_csrf" || name == views.SudoActionField {
			continue
		}
		for _, v := range values {
			at.Fields = append(at.Fields, views.HiddenField{Name: name, Value: v})
		}
	}
	return h.ssoBegin(c, at)
}

// ssoFinishConfirm confirms access when the provider signed in again,
// just now, the account linked to this user; the page then posts the
// kept input on to the action.
func (h *Handlers) ssoFinishConfirm(c echo.Context, at ssoAttempt, id identity.Identity) error {
	ctx := c.Request().Context()
	uid, ok := h.ssoSessionUser(c, at)
	if !ok {
		return h.ssoError(c, http.StatusForbidden, "Access not confirmed", "You are no longer signed in as the user who asked to confirm access.", "")
	}
	link, err := h.SSO.Linked(ctx, uid)
	if err != nil {
		return err
	}
	if link == nil || link.Issuer != id.Issuer || link.Subject != id.Subject {
		return h.ssoError(c, http.StatusForbidden, "Access not confirmed",
			"You signed in to "+h.SSO.Name()+" as another account than the one linked to yours, so access was not confirmed.", "")
	}
	user, err := h.Accounts.User(ctx, uid)
	if err != nil {
		return err
	}
	confirmed, err := h.Sudo.Confirmed(ctx, user, accounts.SudoBySSO, actorOf(c))
	if err != nil {
		return err
	}
	h.Sessions.Put(ctx, sessSudoAt, confirmed.Unix())
	noStore(c)
	return h.wholeApp(c, http.StatusOK, "Access confirmed", views.SudoPage(views.SudoView{
		Action: at.Action, Fields: at.Fields, Confirmed: true, SSO: h.SSO.Name(),
	}))
}

// ssoLogoutURL is the provider's logout for the session being ended, ""
// when the provider has none or the session did not sign in through it.
func (h *Handlers) ssoLogoutURL(c echo.Context) string {
	if h.SSO == nil {
		return ""
	}
	idToken := h.Sessions.GetString(c.Request().Context(), sessSSOIDToken)
	if idToken == "" {
		return ""
	}
	return h.SSO.LogoutURL(idToken, h.Config.BaseURL+"/login")
}

// ssoSecurityView is the provider's card on Settings → Security.
func (h *Handlers) ssoSecurityView(c echo.Context, passkeys int) (*views.SSOView, error) {
	if h.SSO == nil {
		return nil, nil
	}
	v := currentViewer(c)
	link, err := h.SSO.Linked(c.Request().Context(), v.User.ID)
	if err != nil {
		return nil, err
	}
	view := &views.SSOView{Provider: h.SSO.Name()}
	if link != nil {
		view.Linked, view.Email, view.Since = true, link.Email, views.Relative(link.CreatedAt, h.Clock.Now())
		view.CanUnlink = v.User.PasswordHash != "" || passkeys > 0
	}
	return view, nil
}

// allowFormsTo lets a page's forms lead on to the provider: a form
// answered by a redirect is held to the CSP form-action of the page it
// was in, which htmx may have swapped in under another page's CSP.
func allowFormsTo(issuer string) echo.MiddlewareFunc {
	u, err := url.Parse(issuer)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		if err != nil {
			return next
		}
		return func(c echo.Context) error {
			allowRedirectTo(c, u)
			return next(c)
		}
	}
}
