package handlers

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/labstack/echo/v4"

	"keysmith/keys"
	"keysmith/tokens"
	"keysmith/validate"
	"keysmith/views"
)

// issueToken is POST /settings/api-keys/:id/token: a temporary token
// derived from the key (SPEC §9), with some of its scopes, for minutes or
// hours, shown once. The member needs no secret: managing the key is
// enough, and the token never holds more than they or the key do.
func (h *Handlers) issueToken(c echo.Context) error {
	id := pathID(c, "id")
	form, _ := c.FormParams()
	scopes := slices.DeleteFunc(form["token_scopes"], func(s string) bool { return s == "" })
	lifetime, err := time.ParseDuration(c.FormValue("token_lifetime"))
	if err != nil || !slices.Contains(keys.TokenLifetimes, lifetime) {
		err = validate.Errors{"token_lifetime": "Choose how long the token works."}
	} else {
		var k *keys.Authenticated
		var t tokens.Issued
		if k, t, err = h.deriveToken(c, id, scopes, lifetime); err == nil {
			return h.showToken(c, k, t)
		}
	}
	var ve validate.Errors
	switch {
	case errors.As(err, &ve):
		return h.keyPage(c, http.StatusUnprocessableEntity, id, ve, func(v *views.KeyDetailView) {
			v.TokenLifetimes = tokenLifetimeChoices(lifetime)
			v.TokenScopes = map[string]bool{}
			for _, s := range scopes {
				v.TokenScopes[s] = true
			}
		})
	case errors.Is(err, keys.ErrNotActive), errors.Is(err, tokens.ErrKeyExpired):
		h.flash(c, "error", "This key no longer works, so no token can be derived from it.")
		return redirect(c, fmt.Sprintf("/settings/api-keys/%d", id))
	}
	return keyError(err)
}

// deriveToken checks the member may derive the token, issues it and
// records it in the audit log.
func (h *Handlers) deriveToken(c echo.Context, id int64, scopes []string, lifetime time.Duration) (*keys.Authenticated, tokens.Issued, error) {
	ctx, actor := c.Request().Context(), h.keyActor(c)
	k, scopes, err := h.Keys.GrantToken(ctx, currentViewer(c).Current.WorkspaceID, actor, id, scopes)
	if err != nil {
		return nil, tokens.Issued{}, err
	}
	t, err := h.Tokens.Issue(ctx, tokens.Parent{KeyID: k.ID, WorkspaceID: k.WorkspaceID, Environment: string(k.Env),
		Scopes: k.Scopes, ExpiresAt: k.ExpiresAt}, tokens.Request{Scopes: scopes, Lifetime: lifetime})
	if err != nil {
		return nil, t, err
	}
	return k, t, h.Keys.RecordExchange(ctx, actor, k.Ref(), exchangeOf(t))
}

// showToken renders the one page that shows a derived token, kept out of
// every cache, like a key's secret.
func (h *Handlers) showToken(c echo.Context, k *keys.Authenticated, t tokens.Issued) error {
	noStore(c)
	pushURL(c, fmt.Sprintf("/settings/api-keys/%d", k.ID))
	now := h.Clock.Now()
	return h.app(c, http.StatusCreated, "api-keys", "Temporary token", views.TokenPage(views.TokenView{
		KeyID: k.ID, KeyName: k.Name, KeyHint: k.Hint, Token: t.Token, Scopes: t.Scopes,
		Expires: views.Exact(t.ExpiresAt) + " (" + views.Relative(t.ExpiresAt, now) + ")",
	}))
}

// tokenLifetimeChoices are the lifetimes a token may have, with chosen
// selected (15 minutes when none is).
func tokenLifetimeChoices(chosen time.Duration) []views.Choice {
	if !slices.Contains(keys.TokenLifetimes, chosen) {
		chosen = tokens.DefaultLifetime
	}
	out := make([]views.Choice, 0, len(keys.TokenLifetimes))
	for _, d := range keys.TokenLifetimes {
		out = append(out, views.Choice{Value: d.String(), Label: views.Duration(d), Selected: d == chosen})
	}
	return out
}
