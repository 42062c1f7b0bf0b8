package handlers

import (
	"bytes"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"keysmith/keys"
	"keysmith/views"
)

// AuthzPath is the forward-authentication decision endpoint: a reverse
// proxy in front of the operator's own API asks it about every request
// (nginx auth_request, Caddy forward_auth, Traefik ForwardAuth, Envoy
// ext_authz with path_prefix AuthzPath). docs/PROXIES.md ships each
// proxy's configuration.
const AuthzPath = "/v1/authz"

// The headers of a decision. A proxy passes the identity headers of an
// allowed request to the upstream, and must drop the client's own.
const (
	hdrKeyID       = "X-Keysmith-Key-Id"
	hdrWorkspaceID = "X-Keysmith-Workspace-Id"
	hdrEnvironment = "X-Keysmith-Environment"
	hdrScopes      = "X-Keysmith-Scopes"
	hdrTokenType   = "X-Keysmith-Token-Type"
	hdrError       = "X-Keysmith-Error" // a refusal's code

	// nginx's auth_request takes only 2xx, 401 and 403 from the auth
	// service and drops its body. Its subrequest says hdrProxy: nginx;
	// then a refusal answers 401 or 403, and carries its true status and
	// its JSON body in these headers for the shipped config to answer with.
	hdrProxy  = "X-Keysmith-Proxy"
	hdrStatus = "X-Keysmith-Status"
	hdrBody   = "X-Keysmith-Body"
)

// authz decides whether the request a proxy forwards may reach the
// operator's API: its route (the catalog's route rules; deny by default),
// then the key or token, checked as Keysmith's own API checks it (state,
// allowlist, rate limits and quotas, usage recorded), and the route's
// scope. Allowed: 200, no body, the RateLimit and identity headers.
// Refused: SPEC §6's status and JSON, and the code in X-Keysmith-Error.
func (h *Handlers) authz(c echo.Context) error {
	w := &decisionWriter{ResponseWriter: c.Response().Writer}
	c.Response().Writer = w
	err := h.decide(c)
	c.Response().Writer = w.ResponseWriter
	if !c.Response().Committed { // nothing answered: the error handler will
		return err
	}
	w.finish(c, c.Request().Header.Get(hdrProxy) == "nginx")
	return err
}

func (h *Handlers) decide(c echo.Context) error {
	method, uri, ok := forwardedRequest(c.Request())
	if !ok {
		return apiFail(c, http.StatusForbidden, errPermission, "route_not_allowed",
			"The proxy's question names more than one request (X-Forwarded-Method, X-Forwarded-Uri, X-Original-Method, X-Original-URI, X-Original-URL disagree): no route matches it.")
	}
	if m := overridden(c.Request().Header, method, uri); m != "" {
		return apiFail(c, http.StatusForbidden, errPermission, "route_not_allowed",
			"The request asks the API to take it as "+m+" (a method override), not "+method+": no route matches it.")
	}
	route, matched := h.Keys.Routes().Match(method, uri)
	if matched && route.Public() {
		c.Set(apiCodeKey, "public")
		setIdentity(c.Response().Header(), nil)
		return c.NoContent(http.StatusOK)
	}
	_, rawQuery, _ := strings.Cut(uri, "?")
	k, err := h.admit(c, rawQuery)
	if k == nil {
		return err
	}
	switch {
	case !matched:
		h.Verifier.Count(k, keys.OutcomeForbidden)
		path, _, _ := strings.Cut(uri, "?")
		return apiFail(c, http.StatusForbidden, errPermission, "route_not_allowed",
			"No API key may call "+method+" "+path+": no route of the API's scope catalog matches it.")
	case !k.Allows(route.Scope):
		h.Verifier.Count(k, keys.OutcomeForbidden)
		return apiFail(c, http.StatusForbidden, errPermission, "insufficient_scope",
			"API key lacks scope: "+route.Scope+" (the route "+route.Pattern+" needs it).")
	}
	h.Verifier.Count(k, keys.OutcomeSuccess)
	setIdentity(c.Response().Header(), k)
	return c.NoContent(http.StatusOK)
}

// setIdentity writes who made an allowed request for the upstream: all
// five headers, empty where there is nothing to say (a public route, an
// OAuth app's token, which names no key), so that a proxy that copies
// them (Envoy, Traefik) replaces whatever a client sent under those names.
func setIdentity(hd http.Header, k *keys.Authenticated) {
	var vals [5]string // one allocation for the five values of this answer
	if k != nil {
		copy(vals[:], k.MemoValues(func() []string {
			id := ""
			if k.ID != 0 {
				id = strconv.FormatInt(k.ID, 10)
			}
			return []string{id, strconv.FormatInt(k.WorkspaceID, 10), string(k.Env), strings.Join(k.Scopes, " "), string(k.Type())}
		}))
	}
	hd[hdrKeyID], hd[hdrWorkspaceID], hd[hdrEnvironment] = vals[0:1:1], vals[1:2:2], vals[2:3:3]
	hd[hdrScopes], hd[hdrTokenType] = vals[3:4:4], vals[4:5:5]
}

// forwardedRequest is the method and request URI of the request a proxy
// asks about. Envoy's path_prefix puts it in the request line: its own
// method, and its URI after AuthzPath; Envoy sets none of the headers
// below, so any a client sent must agree with the line (a proxy pointed at
// "/v1/authz/" by mistake is refused, not judged as "GET /"). Other proxies
// put it in headers: X-Forwarded-Method and X-Forwarded-Uri (Traefik,
// Caddy, the shipped nginx config), X-Original-Method and X-Original-URL
// (ingress-nginx) or X-Original-URI. A proxy overwrites the headers it
// sets, but passes on any other header a client sent: so every one of
// them that is present must say the same, or ok is false and the request
// is refused. Otherwise a client behind ingress-nginx could send its own
// X-Forwarded-Uri: /status, and have Keysmith judge that while the API
// serves the request line.
func forwardedRequest(r *http.Request) (method, uri string, ok bool) {
	line := strings.TrimPrefix(r.RequestURI, AuthzPath)
	envoy := strings.HasPrefix(line, "/")
	hd := r.Header
	method, ok = agreed(r.Method, hd.Values("X-Forwarded-Method"), hd.Values("X-Original-Method"))
	if !ok {
		return "", "", false
	}
	forwardedURIs, originalURIs := hd.Values("X-Forwarded-Uri"), hd.Values("X-Original-Uri")
	uri, ok = agreed(line, forwardedURIs, originalURIs)
	named := len(forwardedURIs)+len(originalURIs) > 0
	for _, full := range hd.Values("X-Original-Url") {
		u := originalURI(full) // "" if it is no URL: refused below
		ok = ok && (!named || u == uri)
		uri, named = u, true
	}
	if !ok || uri == "" && named || envoy && (method != r.Method || uri != line) {
		return "", "", false
	}
	if uri == "" || uri[0] == '?' {
		uri = "/" + uri
	}
	return method, uri, true
}

// overridden is the method a request asks the API behind the proxy to
// take it as, in place of its own: the headers and the query parameter
// that frameworks read (Rails, Laravel, Symfony, Express's
// method-override, ASP.NET, gorilla/handlers). Keysmith judges the method
// the proxy names, so a POST of a scope a key holds, read as a DELETE of
// a scope it lacks, is refused. A _method in a form body, which Keysmith
// never sees, is the API's to turn off.
func overridden(hd http.Header, method, uri string) string {
	for _, name := range overrideHeaders {
		if m := otherMethod(hd[name], method); m != "" {
			return m
		}
	}
	for name, vals := range hd { // X_HTTP_Method_Override: a CGI-style API reads it as the header
		if strings.ContainsRune(name, '_') && slices.ContainsFunc(overrideHeaders, func(o string) bool {
			return strings.EqualFold(strings.ReplaceAll(name, "_", "-"), o)
		}) {
			if m := otherMethod(vals, method); m != "" {
				return m
			}
		}
	}
	_, q, _ := strings.Cut(uri, "?")
	if !strings.Contains(q, "method") && !strings.Contains(q, "%") {
		return ""
	}
	for pair := range strings.FieldsFuncSeq(q, func(r rune) bool { return r == '&' || r == ';' }) {
		k, v, _ := strings.Cut(pair, "=")
		k, _ = url.QueryUnescape(k)
		// PHP reads "_method", ".method", " method" and "[method" alike.
		if len(k) == len("_method") && strings.ContainsRune("_. [", rune(k[0])) && k[1:] == "method" {
			v, _ = url.QueryUnescape(v)
			if m := otherMethod([]string{v}, method); m != "" {
				return m
			}
		}
	}
	return ""
}

// overrideHeaders name another method for the request (canonical keys).
var overrideHeaders = []string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"}

// otherMethod is the first of vals that names a method other than method.
func otherMethod(vals []string, method string) string {
	for _, m := range vals {
		if m = strings.TrimSpace(m); m != "" && !strings.EqualFold(m, method) {
			return m
		}
	}
	return ""
}

// agreed is the one value the lists hold (def if they hold none); ok is
// false if two differ.
func agreed(def string, lists ...[]string) (v string, ok bool) {
	v, seen := def, false
	for _, l := range lists {
		for _, s := range l {
			if seen && s != v {
				return "", false
			}
			v, seen = s, true
		}
	}
	return v, true
}

// originalURI is the request URI in ingress-nginx's X-Original-URL,
// $scheme://$http_host$request_uri: everything from the first slash after
// the scheme, taken as it is. nginx refuses a Host with a slash, but not
// one with "?" or "#", which url.Parse would read as the start of a query
// or a fragment, and $request_uri may hold a raw "#", which url.Parse
// would cut off. "" if full is not such a URL.
func originalURI(full string) string {
	_, rest, ok := strings.Cut(full, "://")
	if !ok {
		return ""
	}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		return rest[i:]
	}
	return ""
}

// decisionWriter holds a decision's answer until finish, which adds the
// refusal's headers (they depend on the code apiFail chose and the body
// it wrote) before anything is sent.
type decisionWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (w *decisionWriter) WriteHeader(status int) { w.status = status }

func (w *decisionWriter) Write(b []byte) (int, error) { return w.body.Write(b) }

func (w *decisionWriter) finish(c echo.Context, nginx bool) {
	status, hd := w.status, w.ResponseWriter.Header()
	code, _ := c.Get(apiCodeKey).(string)
	if status >= http.StatusBadRequest {
		hd.Set(hdrError, code)
		if nginx {
			hd.Set(hdrStatus, strconv.Itoa(status))
			hd.Set(hdrBody, strings.TrimSpace(w.body.String()))
			if status != http.StatusUnauthorized {
				status = http.StatusForbidden
			}
		}
	}
	w.ResponseWriter.WriteHeader(status)
	_, _ = w.ResponseWriter.Write(w.body.Bytes())
}

// routeTable is the catalog's routes by scope, public ones first, for the
// API reference page.
func (h *Handlers) routeTable() []views.ScopeRoutes {
	var out []views.ScopeRoutes
	at := map[string]int{}
	for _, r := range h.Keys.Routes().Rules() {
		i, ok := at[r.Scope]
		if !ok {
			i, at[r.Scope] = len(out), len(out)
			out = append(out, views.ScopeRoutes{Scope: r.Scope})
		}
		out[i].Routes = append(out[i].Routes, r.Pattern)
	}
	return out
}
