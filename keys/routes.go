package keys

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Routes of the operator's own API, in the catalog: each action may list
// the routes it grants, and PublicRoutes those that need no key. A
// reverse proxy asks Keysmith about every request to that API (forward
// authentication, /v1/authz), and a request's route says which scope the
// key must hold. Patterns are net/http.ServeMux patterns ("GET /files",
// "DELETE /files/{id}", "/static/{rest...}"): methods, wildcards, and the
// most specific match wins, as Go's documentation says.

// Route is the rule a request matched.
type Route struct {
	Pattern string // as the catalog writes it
	Scope   string // the scope it needs; "" for a public route
}

// Public reports whether the route needs no key.
func (r Route) Public() bool { return r.Scope == "" }

// RouteTable matches requests to the catalog's routes.
type RouteTable struct {
	mux   *http.ServeMux
	rules []Route // in catalog order: public routes, then each action's
}

// rule is what the table's ServeMux holds for a pattern: never served,
// only found.
type rule struct{ Route }

func (rule) ServeHTTP(http.ResponseWriter, *http.Request) {}

// Routes builds the catalog's route table; an invalid pattern, or one
// claimed twice or in conflict with another (two patterns that match the
// same requests with neither more specific), is an error that names it.
func (c Catalog) Routes() (*RouteTable, error) {
	t := &RouteTable{mux: http.NewServeMux()}
	owner := map[string]string{} // pattern → who claimed it, for the message
	add := func(pattern, scope string) error {
		who := "public_routes"
		if scope != "" {
			who = scope
		}
		if prev, ok := owner[pattern]; ok {
			return fmt.Errorf("route %q is claimed twice: by %s and by %s", pattern, prev, who)
		}
		if err := register(t.mux, pattern, rule{Route{Pattern: pattern, Scope: scope}}); err != nil {
			return fmt.Errorf("route %q of %s: %w", pattern, who, err)
		}
		owner[pattern] = who
		t.rules = append(t.rules, Route{Pattern: pattern, Scope: scope})
		return nil
	}
	for _, p := range c.PublicRoutes {
		if err := add(p, ""); err != nil {
			return nil, err
		}
	}
	for _, r := range c.Resources {
		for _, a := range r.Actions {
			for _, p := range a.Routes {
				if err := add(p, r.Name+":"+a.Name); err != nil {
					return nil, err
				}
			}
		}
	}
	return t, nil
}

// register is ServeMux.Handle, which panics on a bad or conflicting
// pattern, turned into an error.
func register(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	if strings.TrimSpace(pattern) != pattern || pattern == "" {
		return fmt.Errorf("a pattern is a method and a path, like \"GET /files/{id}\", without spaces around it")
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

// Match finds the rule for a request to the operator's API: its method
// and its request URI (path and query, as the client sent it). A URI that
// is not in its canonical form (dot segments, doubled slashes), that the
// API may read otherwise than ServeMux does (see ambiguous), or that no
// rule matches, has no rule: deny by default. So has a path that,
// lower-cased, another rule matches.
func (t *RouteTable) Match(method, uri string) (Route, bool) {
	if t == nil || len(t.rules) == 0 {
		return Route{}, false
	}
	u, err := url.ParseRequestURI(uri)
	if err != nil || u.Path == "" || u.Host != "" {
		return Route{}, false
	}
	if path, _, _ := strings.Cut(uri, "?"); ambiguous(path) {
		return Route{}, false
	}
	r, ok := t.lookup(method, u)
	if lower := strings.ToLower(u.Path); ok && lower != u.Path {
		// An API that routes without regard to case (Express, ASP.NET)
		// serves /files/EXPORT as /files/export: if that is another
		// rule's, neither is the request's.
		lu := *u
		lu.Path, lu.RawPath = lower, strings.ToLower(u.RawPath)
		if other, found := t.lookup(method, &lu); found && other.Pattern != r.Pattern {
			return Route{}, false
		}
	}
	return r, ok
}

// lookup is the rule ServeMux finds for method and u.
func (t *RouteTable) lookup(method string, u *url.URL) (Route, bool) {
	h, _ := t.mux.Handler(&http.Request{Method: method, URL: u, Host: ""}) // ServeMux reads no header
	r, ok := h.(rule)
	return r.Route, ok
}

// ambiguous reports a path that the API behind the proxy may read
// otherwise than ServeMux, which would match it by its letters:
//   - a raw "#", "\" or ";": nginx passes them on as they are, and an API
//     may cut the path at "#" (Node's url.parse, Express), read "\" as "/"
//     (WHATWG URL, IIS) or drop ";x" from a segment (Tomcat, Spring,
//     Jetty), serving DELETE /files/1 for "DELETE /files/1#/tags/x" or
//     /files/export for "/files/export;x";
//   - an escaped slash or backslash (%2F, %5C): ServeMux keeps
//     "/files/42%2Fversions%2F3" in one segment, GET /files/{id}, while an
//     API that decodes before routing (Flask, PHP, Rails) serves
//     /files/42/versions/3, which another rule may guard. An API whose
//     names hold slashes must take them otherwise (a query parameter);
//   - a dot segment in disguise, escaped ("%2e%2e") or with escaped
//     parameters ("..%3Bx"): "/files/1/%2e%2e/admin" would be judged by a
//     rule for /files while such an API serves /admin.
func ambiguous(rawPath string) bool {
	if strings.ContainsAny(rawPath, `#\;`) {
		return true
	}
	if !strings.ContainsAny(rawPath, ".%") {
		return false
	}
	for seg := range strings.SplitSeq(rawPath, "/") {
		if !strings.ContainsAny(seg, ".%") {
			continue
		}
		dec, err := url.PathUnescape(seg)
		if err != nil || strings.ContainsAny(dec, `/\`) {
			return true
		}
		if dec, _, _ = strings.Cut(dec, ";"); dec == "." || dec == ".." {
			return true
		}
	}
	return false
}

// Rules lists every route in catalog order.
func (t *RouteTable) Rules() []Route {
	if t == nil {
		return nil
	}
	return t.rules
}

// ScopeRoutes lists the routes that scope grants, for the dashboard's
// scope picker and the API reference.
func (t *RouteTable) ScopeRoutes(scope string) []string {
	var out []string
	for _, r := range t.Rules() {
		if r.Scope == scope {
			out = append(out, r.Pattern)
		}
	}
	return out
}
