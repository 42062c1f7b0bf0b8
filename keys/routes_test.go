package keys

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRouteRulesMatchAsServeMuxDoes(t *testing.T) {
	c := Catalog{
		Resources: []Resource{
			{Name: "files", Actions: []Action{
				{Name: "read", Routes: []string{"GET /files/{id}", "GET /files/{id}/content"}},
				{Name: "write", Routes: []string{"POST /files", "GET /files/export", "/files/{id}/{rest...}"}},
			}},
			{Name: "admin", Actions: []Action{{Name: "all", Routes: []string{"/admin/"}}}},
		},
		PublicRoutes: []string{"GET /status", "GET /docs/{page...}"},
	}
	rt, err := c.Routes()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ method, uri, scope, pattern string }{
		{"GET", "/files/42", "files:read", "GET /files/{id}"},
		{"HEAD", "/files/42", "files:read", "GET /files/{id}"},                      // GET patterns match HEAD
		{"GET", "/files/export", "files:write", "GET /files/export"},                // a literal beats a wildcard
		{"GET", "/files/42/content", "files:read", "GET /files/{id}/content"},       // more specific than {rest...}
		{"DELETE", "/files/42/content", "files:write", "/files/{id}/{rest...}"},     // any method
		{"GET", "/files/42/versions/3?x=1", "files:write", "/files/{id}/{rest...}"}, // the query is not matched
		{"POST", "/admin/users/1", "admin:all", "/admin/"},                          // a subtree
		{"GET", "/status", "", "GET /status"},                                       // public
		{"GET", "/docs/a/b", "", "GET /docs/{page...}"},                             // public wildcard
		{"GET", "/files/v1.2", "files:read", "GET /files/{id}"},                     // dots in a name
		{"GET", "/files/a%20b%41", "files:read", "GET /files/{id}"},                 // other escapes
		{"GET", "/files/42/...", "files:write", "/files/{id}/{rest...}"},            // three dots are a name
	} {
		r, ok := rt.Match(tc.method, tc.uri)
		if !ok || r.Scope != tc.scope || r.Pattern != tc.pattern {
			t.Errorf("%s %s: %+v %v, want %s by %q", tc.method, tc.uri, r, ok, tc.scope, tc.pattern)
		}
	}
	for _, tc := range []struct{ method, uri string }{
		{"GET", "/files"},            // only POST /files
		{"PUT", "/files/42"},         // no PUT rule
		{"GET", "/other"},            // no rule at all: deny by default
		{"GET", "/files/../admin/x"}, // not canonical
		{"GET", "//files/42"},        // not canonical
		// Dot segments in disguise, which an API behind the proxy may
		// resolve to /admin while ServeMux would match /files/{id}/{rest...}:
		{"GET", "/files/%2e%2e/admin/x"},        // escaped
		{"GET", "/files/1/.%2E/admin"},          // half escaped
		{"GET", "/files/1/..;/..;/admin/users"}, // with parameters (Tomcat, Spring)
		{"GET", "/files/1/..%3Bx/admin"},        // with escaped parameters
		{"GET", "/files/1/..%2fadmin"},          // before an escaped slash
		{"GET", "/files/1/%2E%2E%5Cadmin"},      // before an escaped backslash
		{"GET", `/files/1/..\admin`},            // before a backslash
		{"DELETE", "/files/1#/content"},         // a raw #: an API may cut the path there (DELETE /files/1)
		{"GET", "/files/1#/../../admin/x"},      // nor may it hide a dot segment
		{"GET", `/files/42\versions\3`},         // a raw backslash: an API may read it as a slash
		// An escaped slash or backslash: ServeMux keeps it in its segment
		// (GET /files/{id}); an API that decodes before routing serves
		// /files/42/versions/3, which needs files:write here.
		{"GET", "/files/42%2Fversions%2F3"},
		{"GET", "/files/42%2fversions%2f3"},
		{"GET", "/files/42%5Cversions%5c3"},
		{"GET", "/files/42%2F"},        // the escape last
		{"GET", "/files/export;x"},     // Tomcat, Spring and Jetty serve /files/export (files:write)
		{"GET", "/files/EXPORT"},       // Express and ASP.NET serve /files/export
		{"GET", "http://evil/files/1"}, // not a request URI of this API
		{"GET", ""},
		{"GET", "files/1"},
	} {
		if r, ok := rt.Match(tc.method, tc.uri); ok {
			t.Errorf("%s %q matched %+v; want no rule", tc.method, tc.uri, r)
		}
	}
	if got := strings.Join(rt.ScopeRoutes("files:read"), ", "); got != "GET /files/{id}, GET /files/{id}/content" {
		t.Errorf("files:read opens %s", got)
	}
}

func TestBadRouteRulesStopTheCatalog(t *testing.T) {
	base := func(publicRoutes []string, routes ...string) Catalog {
		return Catalog{Resources: []Resource{{Name: "files", Actions: []Action{
			{Name: "read", Routes: routes}, {Name: "write", Routes: []string{"POST /files"}},
		}}}, PublicRoutes: publicRoutes}
	}
	for _, tc := range []struct {
		name string
		c    Catalog
		want string
	}{
		{"claimed by two actions", base(nil, "POST /files"), `route "POST /files" is claimed twice: by files:read and by files:write`},
		{"public and an action", base([]string{"POST /files"}), `claimed twice: by public_routes and by files:write`},
		{"not a pattern", base(nil, "GET files"), `route "GET files" of files:read`},
		{"a bad wildcard", base(nil, "GET /files/{id"), `route "GET /files/{id" of files:read`},
		{"spaces around it", base(nil, " GET /files"), `without spaces around it`},
		{"in conflict", base(nil, "GET /files/{id}/x", "GET /files/y/{name}"), `conflicts with`},
	} {
		_, err := tc.c.Routes()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	// LoadCatalog refuses such a file, naming it and the route.
	path := filepath.Join(t.TempDir(), "scopes.json")
	os.WriteFile(path, []byte(`{"resources":[{"name":"files","actions":[{"name":"read","routes":["GET /files"]},{"name":"write","routes":["GET /files"]}]}]}`), 0o600)
	if _, err := LoadCatalog(path); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `"GET /files" is claimed twice`) {
		t.Errorf("LoadCatalog: %v", err)
	}
	if _, err := DemoCatalog().Routes(); err != nil {
		t.Errorf("the demo catalog's routes: %v", err)
	}
}
