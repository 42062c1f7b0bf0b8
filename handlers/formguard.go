package handlers

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"
)

// Session key of the one-time forms already used (create a key, register
// an app, add a webhook, rotate a secret): each entry is the form's nonce
// and a digest of what it submitted.
const sessUsedNonces = "used_form_nonces"

// formUsed says whether this very submission was already posted in this
// session: reloading the page that shows a secret re-posts its form, and
// must not create or rotate twice. Only a true double submission counts:
// a form restored from history (Back, then a new name) carries its old
// nonce with other values, and goes through.
func (h *Handlers) formUsed(c echo.Context, nonce string) bool {
	used, _ := h.Sessions.Get(c.Request().Context(), sessUsedNonces).([]string)
	return nonce != "" && slices.Contains(used, nonce+" "+formDigest(c))
}

// useForm records that the form carrying nonce has done its work.
func (h *Handlers) useForm(c echo.Context, nonce string) {
	ctx := c.Request().Context()
	used, _ := h.Sessions.Get(ctx, sessUsedNonces).([]string)
	h.Sessions.Put(ctx, sessUsedNonces, append(used[max(0, len(used)-19):], nonce+" "+formDigest(c)))
}

// formDigest is a digest of the submitted fields, the CSRF token aside
// (it changes at login, not with what was asked for).
func formDigest(c echo.Context) string {
	form, _ := c.FormParams()
	names := make([]string, 0, len(form))
	for name := range form {
		if name != "_csrf" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	d := sha256.New()
	for _, name := range names {
		vals := slices.Clone(form[name])
		slices.Sort(vals)
		d.Write([]byte(name + "=" + strings.Join(vals, "\x00") + "\n"))
	}
	return hex.EncodeToString(d.Sum(nil)[:12])
}
