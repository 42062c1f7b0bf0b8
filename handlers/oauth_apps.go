package handlers

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/labstack/echo/v4"

	"keysmith/models"
	"keysmith/oauth"
	"keysmith/validate"
	"keysmith/views"
)

// Settings → OAuth apps (the workspace's registered apps, admins manage
// them) and Settings → Authorized apps (the apps a user let act for them).

// oauthAppError maps an oauth domain error to an HTTP error; err itself
// if it is not one.
func oauthAppError(err error) error {
	switch {
	case errors.Is(err, oauth.ErrNotFound):
		return echo.NewHTTPError(http.StatusNotFound, "No such OAuth app in this workspace.")
	case errors.Is(err, oauth.ErrForbidden):
		return echo.NewHTTPError(http.StatusForbidden, "Only workspace owners and admins can register, rotate or revoke OAuth apps.")
	}
	return err
}

func (h *Handlers) listOAuthApps(c echo.Context) error {
	v := currentViewer(c)
	apps, err := h.OAuth.Apps(c.Request().Context(), v.Current.WorkspaceID)
	if err != nil {
		return err
	}
	view := views.OAuthAppsView{Workspace: v.Current.Workspace.Name, CanManage: h.keyActor(c).Admin}
	now := h.Clock.Now()
	for _, a := range apps {
		view.Rows = append(view.Rows, oauthAppRow(a.App, a.Users, now))
	}
	return h.app(c, http.StatusOK, "oauth-apps", "OAuth apps", views.OAuthAppsPage(view))
}

func (h *Handlers) newOAuthApp(c echo.Context) error {
	if !h.keyActor(c).Admin {
		return oauthAppError(oauth.ErrForbidden)
	}
	f := h.oauthAppForm(oauth.AppInput{}, nil)
	f.Nonce = rand.Text()
	return h.app(c, http.StatusOK, "oauth-apps", "Register an OAuth app", views.OAuthAppFormPage(f))
}

func (h *Handlers) registerOAuthApp(c echo.Context) error {
	if !h.keyActor(c).Admin {
		return oauthAppError(oauth.ErrForbidden)
	}
	nonce := c.FormValue("nonce")
	if h.formUsed(c, nonce) {
		h.flash(c, "info", "That app was already registered, and its credentials were shown once. If you did not copy a confidential app's secret, rotate it on the app's page.")
		return redirect(c, "/settings/oauth-apps")
	}
	form, _ := c.FormParams()
	in := oauth.AppInput{
		Name:         c.FormValue("name"),
		LogoURL:      c.FormValue("logo_url"),
		RedirectURIs: []string{c.FormValue("redirect_uris")},
		Public:       c.FormValue("type") == "public",
		Scopes:       form["scopes"],
	}
	// The form always sends a type; a request without one is refused
	// before it could register a confidential app by default.
	err := error(validate.Errors{"type": "Choose whether the app can keep a secret."})
	var reg oauth.Registered
	if t := c.FormValue("type"); t == "public" || t == "confidential" {
		reg, err = h.OAuth.Register(c.Request().Context(), currentViewer(c).Current.WorkspaceID, h.keyActor(c), in)
	}
	var ve validate.Errors
	if errors.As(err, &ve) {
		f := h.oauthAppForm(in, views.FieldErrors(ve))
		f.Nonce = nonce
		return h.app(c, http.StatusUnprocessableEntity, "oauth-apps", "Register an OAuth app", views.OAuthAppFormPage(f))
	}
	if err != nil {
		return oauthAppError(err)
	}
	h.useForm(c, nonce)
	return h.showOAuthSecret(c, reg, false)
}

// oauthAppForm is the registration form holding in, with errs.
func (h *Handlers) oauthAppForm(in oauth.AppInput, errs views.FieldErrors) views.OAuthAppFormView {
	f := views.OAuthAppFormView{
		Name: in.Name, LogoURL: in.LogoURL, Errors: errs,
		Types: []views.Choice{
			{Value: "confidential", Label: "Confidential", Hint: "Runs on a server that can keep a client secret; it authenticates with the secret and PKCE.", Selected: !in.Public},
			{Value: "public", Label: "Public", Hint: "A mobile, single-page or command-line app that cannot keep a secret; PKCE alone proves it.", Selected: in.Public},
		},
	}
	for _, u := range in.RedirectURIs {
		if f.RedirectURIs != "" {
			f.RedirectURIs += "\n"
		}
		f.RedirectURIs += u
	}
	for _, r := range h.OAuth.Catalog().Resources {
		g := views.ScopeGroup{Resource: r.Name, Description: r.Description}
		for _, a := range r.Actions {
			s := r.Name + ":" + a.Name
			g.Options = append(g.Options, views.ScopeOption{Value: s, Action: a.Name, Checked: slices.Contains(in.Scopes, s)})
		}
		f.Groups = append(f.Groups, g)
	}
	return f
}

// showOAuthSecret renders the one response that carries an app's client
// secret, kept out of every cache, like a key's.
func (h *Handlers) showOAuthSecret(c echo.Context, reg oauth.Registered, rotated bool) error {
	noStore(c)
	pushURL(c, fmt.Sprintf("/settings/oauth-apps/%d", reg.App.ID))
	title := "OAuth app registered"
	if rotated {
		title = "Client secret rotated"
	}
	view := views.OAuthAppSecretView{App: oauthAppRow(reg.App, 0, h.Clock.Now()), Secret: reg.Secret, Rotated: rotated}
	return h.app(c, http.StatusCreated, "oauth-apps", title, views.OAuthAppSecretPage(view))
}

func (h *Handlers) showOAuthApp(c echo.Context) error {
	ws := currentViewer(c).Current.WorkspaceID
	app, err := h.OAuth.App(c.Request().Context(), ws, pathID(c, "id"))
	if err != nil {
		return oauthAppError(err)
	}
	users, err := h.oauthAppUsers(c, app)
	if err != nil {
		return err
	}
	view := views.OAuthAppView{App: oauthAppRow(app, users, h.Clock.Now()), CanManage: h.keyActor(c).Admin, Nonce: rand.Text()}
	return h.app(c, http.StatusOK, "oauth-apps", app.Name, views.OAuthAppPage(view))
}

// oauthAppUsers is how many people have authorized app and not revoked it.
func (h *Handlers) oauthAppUsers(c echo.Context, app models.OAuthClient) (int64, error) {
	apps, err := h.OAuth.Apps(c.Request().Context(), app.WorkspaceID)
	for _, a := range apps {
		if a.App.ID == app.ID {
			return a.Users, err
		}
	}
	return 0, err
}

func (h *Handlers) rotateOAuthAppSecret(c echo.Context) error {
	id := pathID(c, "id")
	page := fmt.Sprintf("/settings/oauth-apps/%d", id)
	nonce := c.FormValue("nonce")
	if h.formUsed(c, nonce) {
		h.flash(c, "info", "The secret was already rotated, and the new one was shown once. Rotate it again if you did not copy it.")
		return redirect(c, page)
	}
	reg, err := h.OAuth.RotateSecret(c.Request().Context(), currentViewer(c).Current.WorkspaceID, h.keyActor(c), id)
	var ve validate.Errors
	switch {
	case errors.As(err, &ve):
		h.flash(c, "error", ve["secret"])
		return redirect(c, page)
	case errors.Is(err, oauth.ErrNotFound):
		if _, gerr := h.OAuth.App(c.Request().Context(), currentViewer(c).Current.WorkspaceID, id); gerr == nil {
			h.flash(c, "error", "This app is revoked, so its secret cannot be rotated.")
			return redirect(c, page)
		}
		return oauthAppError(err)
	case err != nil:
		return oauthAppError(err)
	}
	h.useForm(c, nonce)
	return h.showOAuthSecret(c, reg, true)
}

func (h *Handlers) revokeOAuthApp(c echo.Context) error {
	id := pathID(c, "id")
	ctx, ws := c.Request().Context(), currentViewer(c).Current.WorkspaceID
	app, err := h.OAuth.App(ctx, ws, id)
	if err != nil {
		return oauthAppError(err)
	}
	if app.RevokedAt != nil {
		h.flash(c, "info", "That app was already revoked.")
		return redirect(c, "/settings/oauth-apps")
	}
	if err := h.OAuth.RevokeApp(ctx, ws, h.keyActor(c), id); err != nil {
		return oauthAppError(err)
	}
	h.flash(c, "success", fmt.Sprintf("Revoked %s. Its authorizations and tokens have ended.", app.Name))
	return redirect(c, "/settings/oauth-apps")
}

// authorizedApps is Settings → Authorized apps: the user's own consents,
// in every workspace.
func (h *Handlers) authorizedApps(c echo.Context) error {
	grants, err := h.OAuth.Authorized(c.Request().Context(), currentViewer(c).User.ID)
	if err != nil {
		return err
	}
	now := h.Clock.Now()
	var view views.AuthorizedAppsView
	for _, g := range grants {
		r := views.AuthorizedAppRow{
			GrantID: g.ID, Name: g.Client.Name, Owner: g.Client.Workspace.Name, Workspace: g.Workspace.Name,
			Scopes: g.ScopeList(), Since: views.Relative(g.CreatedAt, now), SinceExact: views.Exact(g.CreatedAt),
		}
		if g.LastUsedAt != nil {
			r.LastUsed, r.LastUsedExact = views.Relative(*g.LastUsedAt, now), views.Exact(*g.LastUsedAt)
		}
		view.Rows = append(view.Rows, r)
	}
	return h.app(c, http.StatusOK, "authorized-apps", "Authorized apps", views.AuthorizedAppsPage(view))
}

func (h *Handlers) revokeAuthorizedApp(c echo.Context) error {
	id := pathID(c, "id")
	ctx := c.Request().Context()
	done := "The app can no longer act for you."
	if grants, err := h.OAuth.Authorized(ctx, currentViewer(c).User.ID); err == nil {
		for _, g := range grants {
			if g.ID == id {
				done = g.Client.Name + " can no longer act for you in " + g.Workspace.Name + "."
			}
		}
	}
	err := h.OAuth.RevokeGrant(ctx, h.keyActor(c), id)
	switch {
	case errors.Is(err, oauth.ErrNotFound):
		h.flash(c, "info", "That app no longer had access.")
	case err != nil:
		return err
	default:
		h.flash(c, "success", done)
	}
	return redirect(c, "/settings/authorized-apps")
}

// oauthAppRow turns an app into what the list and its page show.
func oauthAppRow(a models.OAuthClient, users int64, now time.Time) views.OAuthAppRow {
	r := views.OAuthAppRow{
		ID: a.ID, Name: a.Name, ClientID: a.ClientID, LogoURL: a.LogoURL, Type: "Confidential", Public: a.Public,
		Scopes: a.ScopeList(), RedirectURIs: a.RedirectURIList(), Users: usersLabel(users),
		Created: views.Relative(a.CreatedAt, now), CreatedExact: views.Exact(a.CreatedAt), Revoked: a.RevokedAt != nil,
	}
	if a.Public {
		r.Type = "Public"
	}
	if a.LastUsedAt != nil {
		r.LastUsed, r.LastUsedExact = views.Relative(*a.LastUsedAt, now), views.Exact(*a.LastUsedAt)
	}
	if a.RevokedAt != nil {
		r.RevokedExact = views.Exact(*a.RevokedAt)
	}
	return r
}

func usersLabel(n int64) string {
	if n == 1 {
		return "1 user"
	}
	return fmt.Sprintf("%d users", n)
}
