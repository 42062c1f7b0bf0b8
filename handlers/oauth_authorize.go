package handlers

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/ory/fosite"

	"keysmith/keys"
	"keysmith/models"
	"keysmith/oauth"
	"keysmith/views"
)

// oauthAuthorize is GET and POST /oauth/authorize (SPEC §9, RFC 6749 §4.1
// with RFC 9700's rules): fosite checks the app, the exact redirect URI,
// response_type=code and state; Keysmith adds PKCE S256 before the user
// sees anything, shows the consent screen to a logged-in member, and on
// their decision redirects back with a code or access_denied.
func (h *Handlers) oauthAuthorize(c echo.Context) error {
	ctx := c.Request().Context()
	p := h.OAuth.Provider()
	ar, err := p.NewAuthorizeRequest(ctx, c.Request())
	if err != nil {
		return h.authorizeError(c, ar, err)
	}
	form := ar.GetRequestForm()
	switch {
	case form.Get("code_challenge") == "":
		return h.authorizeError(c, ar, fosite.ErrInvalidRequest.WithHint("PKCE is required: send code_challenge and code_challenge_method=S256."))
	case form.Get("code_challenge_method") != "S256":
		return h.authorizeError(c, ar, fosite.ErrInvalidRequest.WithHint("code_challenge_method must be S256; plain is not accepted."))
	case len(form["state"]) > 1 || len(form["code_challenge"]) > 1 || len(form["redirect_uri"]) > 1:
		return h.authorizeError(c, ar, fosite.ErrInvalidRequest.WithHint("A parameter is repeated."))
	}
	app, err := h.OAuth.LiveApp(ctx, ar.GetClient().GetID())
	if err != nil {
		return err
	}
	requested := []string(ar.GetRequestedScopes())
	if len(requested) == 0 {
		requested = app.ScopeList() // RFC 6749 §3.3: the app's registered scopes by default
	}
	v := currentViewer(c)
	view := h.consentView(c, app, v, requested)
	allowRedirectTo(c, ar.GetRedirectURI())
	if c.Request().Method != http.MethodPost {
		return h.public(c, http.StatusOK, "Allow "+app.Name+"?", views.ConsentPage(view))
	}

	if c.Request().PostForm.Get("decision") != "allow" {
		return h.writeAuthorizeError(c, ar, fosite.ErrAccessDenied.WithHint("The user denied the request."))
	}
	wid, _ := strconv.ParseInt(c.Request().PostForm.Get("workspace"), 10, 64)
	var m *models.Membership
	for i := range v.Memberships {
		if v.Memberships[i].WorkspaceID == wid {
			m = &v.Memberships[i]
		}
	}
	if m == nil {
		view.Error = "Choose one of your workspaces."
		return h.public(c, http.StatusUnprocessableEntity, "Allow "+app.Name+"?", views.ConsentPage(view))
	}
	actor := h.Keys.UserActor(v.User, m.Role, c.RealIP(), c.Request().UserAgent())
	sess, granted, err := h.OAuth.Consent(ctx, app, v.User, *m, requested, actor)
	if errors.Is(err, oauth.ErrNothingGrantable) {
		view.Selected = wid
		view.Error = "Your role in " + m.Workspace.Name + " (" + string(m.Role) + ") allows none of the scopes this app asks for. Choose another workspace, or ask an admin there."
		return h.public(c, http.StatusUnprocessableEntity, "Allow "+app.Name+"?", views.ConsentPage(view))
	}
	if err != nil {
		return err
	}
	for _, sc := range granted {
		ar.GrantScope(sc)
	}
	resp, err := p.NewAuthorizeResponse(ctx, ar, sess)
	if err != nil {
		return h.writeAuthorizeError(c, ar, err)
	}
	noStore(c)
	p.WriteAuthorizeResponse(ctx, c.Response(), ar, resp)
	return nil
}

// allowRedirectTo lets the consent screen's forms end at the app's
// redirect URI: browsers hold the redirect that answers a form to the
// page's CSP form-action too. fosite has matched the URI exactly by now.
func allowRedirectTo(c echo.Context, u *url.URL) {
	source := u.Scheme + ":"
	if u.Host != "" {
		source = u.Scheme + "://" + u.Host
	}
	c.Response().Header().Set(echo.HeaderContentSecurityPolicy,
		strings.Replace(contentSecurityPolicy, "form-action 'self'", "form-action 'self' "+source, 1))
}

// consentView fills the consent screen.
func (h *Handlers) consentView(c echo.Context, app models.OAuthClient, v *viewer, requested []string) views.ConsentView {
	view := views.ConsentView{
		AppName: app.Name, LogoURL: app.LogoURL, Owner: app.Workspace.Name, UserEmail: v.User.Email,
		Action: c.Request().URL.RequestURI(), Selected: v.Current.WorkspaceID,
	}
	if u, err := url.Parse(c.Request().URL.Query().Get("redirect_uri")); err == nil {
		view.RedirectTo = u.Scheme + "://" + u.Host
	}
	if view.RedirectTo == "://" || view.RedirectTo == "" {
		view.RedirectTo = "the app"
	}
	catalog := h.OAuth.Catalog()
	for _, sc := range requested {
		view.Scopes = append(view.Scopes, scopeInWords(catalog, sc))
	}
	for _, m := range v.Memberships {
		view.Workspaces = append(view.Workspaces, views.ConsentWorkspace{
			ID: m.WorkspaceID, Name: m.Workspace.Name, Role: string(m.Role), Grantable: h.OAuth.Grantable(app, m.Role, requested),
		})
	}
	return view
}

// scopeInWords is "files:read" as "Read files", with the resource's
// description from the catalog.
func scopeInWords(catalog keys.Catalog, scope string) views.ConsentScope {
	res, action, _ := strings.Cut(scope, ":")
	out := views.ConsentScope{Scope: scope}
	for _, r := range catalog.Resources {
		if r.Name == res {
			out.About = r.Description
		}
	}
	noun := res
	if res == "*" {
		noun = "everything"
	}
	switch action {
	case "read":
		out.Words = "Read " + noun
	case "write":
		out.Words = "Change " + noun
	case "*":
		out.Words = "Read and change " + noun
	default:
		out.Words = capitalize(action) + " " + noun
	}
	return out
}

// authorizeError answers a refused authorization request: back to the app
// when fosite validated its redirect URI, else a page here (RFC 9700
// §4.11: never redirect to an unverified address).
func (h *Handlers) authorizeError(c echo.Context, ar fosite.AuthorizeRequester, err error) error {
	if ar != nil && ar.IsRedirectURIValid() {
		return h.writeAuthorizeError(c, ar, err)
	}
	var rfc *fosite.RFC6749Error
	msg := "The authorization request is not valid."
	if errors.As(err, &rfc) {
		switch {
		case errors.Is(err, fosite.ErrInvalidClient):
			msg = "No app with this client_id is registered here, or it has been revoked."
		case rfc.HintField != "":
			msg = rfc.HintField
		case rfc.DescriptionField != "":
			msg = rfc.DescriptionField
		}
	}
	return h.public(c, http.StatusBadRequest, "This app's request cannot be completed", views.OAuthErrorPage("This app's request cannot be completed", msg))
}

// writeAuthorizeError redirects to the app's verified redirect URI with
// error, error_description and the unchanged state.
func (h *Handlers) writeAuthorizeError(c echo.Context, ar fosite.AuthorizeRequester, err error) error {
	noStore(c)
	h.OAuth.Provider().WriteAuthorizeError(c.Request().Context(), c.Response(), ar, err)
	return nil
}
