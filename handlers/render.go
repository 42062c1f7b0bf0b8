package handlers

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/a-h/templ"
	"github.com/labstack/echo/v4"

	"keysmith/views"
)

// layout wraps a page body in a full HTML document.
type layout func(views.Shell, templ.Component) templ.Component

// render writes a page through templ's pooled buffer. A plain HTMX request
// (not a boosted navigation) gets the body fragment alone.
func (h *Handlers) render(c echo.Context, status int, wrap layout, s views.Shell, body templ.Component) error {
	whole := c.Request().Header.Get("HX-Request") != "true" || c.Request().Header.Get("HX-Boosted") == "true"
	return h.renderPage(c, status, wrap, s, body, whole)
}

// wholeApp renders a page behind login as a whole document even for a
// plain HTMX request, retargeted to replace the page: for an answer that
// is not the fragment the request expected (Confirm access).
func (h *Handlers) wholeApp(c echo.Context, status int, title string, body templ.Component) error {
	if c.Request().Header.Get("HX-Request") == "true" && c.Request().Header.Get("HX-Boosted") != "true" {
		header := c.Response().Header()
		header.Set("HX-Retarget", "body")
		header.Set("HX-Reswap", "innerHTML")
		header.Set("HX-Push-Url", "false")
	}
	return h.renderPage(c, status, views.AppPage, views.Shell{Title: title}, body, true)
}

func (h *Handlers) renderPage(c echo.Context, status int, wrap layout, s views.Shell, body templ.Component, whole bool) error {
	ctx := views.WithCSRF(c.Request().Context(), csrfTokenOf(c))
	page := body
	if whole {
		page = wrap(h.shell(c, s), body)
	}
	stayOnGetURL(c)
	buf := templ.GetBuffer()
	defer templ.ReleaseBuffer(buf)
	if err := page.Render(ctx, buf); err != nil {
		return err
	}
	return c.HTMLBlob(status, buf.Bytes())
}

// stayOnGetURL keeps a boosted form's POST URL out of the address bar when
// the answer is a page rather than a redirect (a refused form, a shown-once
// secret): htmx would push it, and a reload would ask for it with GET, a
// 405. The address stays at the page that held the form, unless the
// handler named a better one with pushURL.
func stayOnGetURL(c echo.Context) {
	r, h := c.Request(), c.Response().Header()
	if r.Method == http.MethodPost && r.Header.Get("HX-Boosted") == "true" && h.Get("HX-Push-Url") == "" {
		h.Set("HX-Push-Url", "false")
	}
}

// pushURL names the GET page a boosted POST's answer stands for, so that
// Reload shows it: after a shown-once secret, the new object's own page.
func pushURL(c echo.Context, url string) {
	if c.Request().Header.Get("HX-Boosted") == "true" {
		c.Response().Header().Set("HX-Push-Url", url)
	}
}

// app renders a page behind login, under the given navigation entry.
func (h *Handlers) app(c echo.Context, status int, nav, title string, body templ.Component) error {
	return h.render(c, status, views.AppPage, views.Shell{Title: title, Nav: nav}, body)
}

// public renders a logged-out page (login, sign-up, password reset).
func (h *Handlers) public(c echo.Context, status int, title string, body templ.Component) error {
	return h.render(c, status, views.AuthPage, views.Shell{Title: title}, body)
}

// shell fills in what the layout shows around every page: the flash
// message, the user and the workspace switcher.
func (h *Handlers) shell(c echo.Context, s views.Shell) views.Shell {
	s.Flash = h.popFlash(c)
	s.DevMailbox = h.Mailbox != nil
	if v := currentViewer(c); v != nil {
		s.User = &views.UserInfo{Name: v.User.DisplayName(), Email: v.User.Email}
		for _, m := range v.Memberships {
			s.Workspaces = append(s.Workspaces, views.WorkspaceOption{ID: m.WorkspaceID, Name: m.Workspace.Name, Role: string(m.Role)})
		}
		s.Current = views.WorkspaceOption{ID: v.Current.WorkspaceID, Name: v.Current.Workspace.Name, Role: string(v.Current.Role)}
		if d := v.TwoFactorDue; d != nil {
			s.Notice = views.Flash{
				Kind:    "warning",
				Message: fmt.Sprintf("%s requires two-step verification. Turn it on before %s, or you will be able to open only your Security page.", v.Current.Workspace.Name, views.Exact(d.Deadline)),
				Href:    "/settings/security", LinkText: "Set it up now",
			}
		}
	}
	return s
}

func csrfTokenOf(c echo.Context) string {
	s, _ := c.Get(csrfContextKey).(string)
	return s
}

// flash stores a message for the next page the user sees.
func (h *Handlers) flash(c echo.Context, kind, msg string) {
	h.flashLink(c, kind, msg, "", "")
}

// flashLink is a flash message that ends with a link to act on it.
func (h *Handlers) flashLink(c echo.Context, kind, msg, href, text string) {
	ctx := c.Request().Context()
	h.Sessions.Put(ctx, sessFlashKind, kind)
	h.Sessions.Put(ctx, sessFlashMsg, msg)
	if href != "" {
		h.Sessions.Put(ctx, sessFlashHref, href)
		h.Sessions.Put(ctx, sessFlashLinkText, text)
	}
}

func (h *Handlers) popFlash(c echo.Context) views.Flash {
	ctx := c.Request().Context()
	if !hasSession(c) || !h.Sessions.Exists(ctx, sessFlashMsg) {
		return views.Flash{}
	}
	return views.Flash{
		Kind: h.Sessions.PopString(ctx, sessFlashKind), Message: h.Sessions.PopString(ctx, sessFlashMsg),
		Href: h.Sessions.PopString(ctx, sessFlashHref), LinkText: h.Sessions.PopString(ctx, sessFlashLinkText),
	}
}

// redirect ends a successful POST: 303 for a normal form, HX-Redirect for
// a plain HTMX request so the whole page changes.
func redirect(c echo.Context, to string) error {
	if c.Request().Header.Get("HX-Request") == "true" && c.Request().Header.Get("HX-Boosted") != "true" {
		c.Response().Header().Set("HX-Redirect", to)
		return c.NoContent(http.StatusNoContent)
	}
	return c.Redirect(http.StatusSeeOther, to)
}

// safeNext keeps a post-login redirect on this site: a path, never
// "//evil.example" or "/\evil.example", which browsers treat as another host.
func safeNext(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Host != "" || u.Scheme != "" {
		return "/"
	}
	return next
}
