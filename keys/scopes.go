package keys

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
)

// Catalog is the operator's list of scopes (SPEC §4): resources, each with
// actions, some of which publishable keys may hold.
type Catalog struct {
	Resources []Resource `json:"resources"`
	// PublicRoutes are routes of the operator's API that need no key
	// (forward authentication; see RouteTable).
	PublicRoutes []string `json:"public_routes,omitempty"`
}

// Resource is one kind of thing the operator's API exposes.
type Resource struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Actions     []Action `json:"actions"`
}

// Action is one verb on a resource.
type Action struct {
	Name        string `json:"name"`
	Publishable bool   `json:"publishable"`
	// Routes are the routes of the operator's API this action's scope
	// grants, as net/http.ServeMux patterns ("GET /files/{id}").
	Routes []string `json:"routes,omitempty"`
}

// DemoCatalog is the built-in catalog: five resources with read and write;
// publishable keys may read files and projects. Its routes are those of an
// imagined API of files and projects, so that forward authentication can
// be tried as it comes (docs/PROXIES.md).
func DemoCatalog() Catalog {
	res := func(name, desc string, publishableRead bool) Resource {
		return Resource{Name: name, Description: desc, Actions: []Action{{Name: "read", Publishable: publishableRead}, {Name: "write"}}}
	}
	crud := func(r Resource, path string) Resource {
		r.Actions[0].Routes = []string{"GET /" + path, "GET /" + path + "/{id}"}
		r.Actions[1].Routes = []string{"POST /" + path, "PUT /" + path + "/{id}", "PATCH /" + path + "/{id}", "DELETE /" + path + "/{id}"}
		return r
	}
	return Catalog{
		Resources: []Resource{
			crud(res("files", "Upload, list and download files", true), "files"),
			crud(res("projects", "Projects and their settings", true), "projects"),
			crud(res("members", "People in the workspace", false), "members"),
			crud(res("webhooks", "Webhook endpoints and deliveries", false), "webhooks"),
			res("keys", "API keys themselves", false),
		},
		PublicRoutes: []string{"GET /status"},
	}
}

var namePattern = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,39}$`)

// LoadCatalog reads an operator's catalog from a JSON file shaped like
// {"resources":[{"name":"files","description":"…","actions":[{"name":"read","publishable":true}]}]}.
func LoadCatalog(path string) (Catalog, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Catalog{}, err
	}
	var c Catalog
	if err := json.Unmarshal(b, &c); err != nil {
		return Catalog{}, fmt.Errorf("scopes file %s: %w", path, err)
	}
	if err := c.check(); err != nil {
		return Catalog{}, fmt.Errorf("scopes file %s: %w", path, err)
	}
	return c, nil
}

func (c Catalog) check() error {
	if len(c.Resources) == 0 {
		return fmt.Errorf("no resources")
	}
	seen := map[string]bool{}
	for _, r := range c.Resources {
		if !namePattern.MatchString(r.Name) || seen[r.Name] {
			return fmt.Errorf("resource name %q is invalid or repeated", r.Name)
		}
		seen[r.Name] = true
		if len(r.Actions) == 0 {
			return fmt.Errorf("resource %q has no actions", r.Name)
		}
		acts := map[string]bool{}
		for _, a := range r.Actions {
			if !namePattern.MatchString(a.Name) || acts[a.Name] {
				return fmt.Errorf("action %q of %q is invalid or repeated", a.Name, r.Name)
			}
			acts[a.Name] = true
		}
	}
	_, err := c.Routes()
	return err
}

// Scopes lists every concrete scope of the catalog, in catalog order.
func (c Catalog) Scopes() []string {
	var out []string
	for _, r := range c.Resources {
		for _, a := range r.Actions {
			out = append(out, r.Name+":"+a.Name)
		}
	}
	return out
}

// IsPublishable reports whether a publishable key may hold scope, which
// must be concrete: a wildcard could grow into a secret scope later.
func (c Catalog) IsPublishable(scope string) bool {
	res, act, ok := strings.Cut(scope, ":")
	if !ok {
		return false
	}
	for _, r := range c.Resources {
		for _, a := range r.Actions {
			if r.Name == res && a.Name == act {
				return a.Publishable
			}
		}
	}
	return false
}

func (c Catalog) hasResource(name string) bool {
	return slices.ContainsFunc(c.Resources, func(r Resource) bool { return r.Name == name })
}

func (c Catalog) hasAction(name string) bool {
	for _, r := range c.Resources {
		if slices.ContainsFunc(r.Actions, func(a Action) bool { return a.Name == name }) {
			return true
		}
	}
	return false
}

// Permission is a preset of scopes, or custom.
type Permission string

const (
	PermRead   Permission = "read"
	PermWrite  Permission = "write"
	PermAdmin  Permission = "admin"
	PermCustom Permission = "custom"
)

// Valid reports whether p is one of the four.
func (p Permission) Valid() bool {
	switch p {
	case PermRead, PermWrite, PermAdmin, PermCustom:
		return true
	}
	return false
}

// Preset expands a preset for a key kind (SPEC §4): read is every
// *:read; write adds every *:write but keys:write and members:write; admin
// is *. Publishable keys get only publishable scopes, so only read, and
// only its publishable part.
func (c Catalog) Preset(p Permission, kind Kind) ([]string, error) {
	switch p {
	case PermAdmin:
		if kind == Publishable {
			return nil, fmt.Errorf("publishable keys cannot have the admin permission")
		}
		return []string{"*"}, nil
	case PermRead, PermWrite:
		if kind == Publishable && p == PermWrite {
			return nil, fmt.Errorf("publishable keys can only read")
		}
		var out []string
		for _, s := range c.Scopes() {
			_, act, _ := strings.Cut(s, ":")
			switch {
			case kind == Publishable && !c.IsPublishable(s):
			case act == "read":
				out = append(out, s)
			case p == PermWrite && act == "write" && s != "keys:write" && s != "members:write":
				out = append(out, s)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown permission %q", p)
}

// NormalizeScope checks a scope pattern's grammar against the catalog and
// returns its canonical form ("*:*" becomes "*").
func (c Catalog) NormalizeScope(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "*" || s == "*:*" {
		return "*", nil
	}
	res, act, ok := strings.Cut(s, ":")
	if !ok {
		return "", fmt.Errorf("scope %q is not resource:action", s)
	}
	if res != "*" && !c.hasResource(res) {
		return "", fmt.Errorf("scope %q names an unknown resource", s)
	}
	if act != "*" && !c.hasAction(act) {
		return "", fmt.Errorf("scope %q names an unknown action", s)
	}
	if res != "*" && act != "*" && !slices.Contains(c.Scopes(), s) {
		return "", fmt.Errorf("scope %q is not in the catalog", s)
	}
	return s, nil
}

// Normalize checks, canonicalises, de-duplicates and sorts scopes.
func (c Catalog) Normalize(scopes []string) ([]string, error) {
	out := make([]string, 0, len(scopes))
	for _, s := range scopes {
		n, err := c.NormalizeScope(s)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// matches reports whether pattern p grants pattern q: each side of p is *
// or equal to q's. A concrete q asks "may I do this?", a wildcard q asks "is
// p at least as broad?", which is what the escalation rule needs.
func matches(p, q string) bool {
	if p == "*" {
		return true
	}
	if q == "*" {
		return false
	}
	pr, pa, _ := strings.Cut(p, ":")
	qr, qa, _ := strings.Cut(q, ":")
	return (pr == "*" || pr == qr) && (pa == "*" || pa == qa)
}

// Allows reports whether held scopes grant one concrete scope, as a request
// needing "files:write" asks.
func Allows(held []string, scope string) bool {
	return slices.ContainsFunc(held, func(h string) bool { return matches(h, scope) })
}

// Covers reports whether held grants everything requested: every requested
// pattern is matched by one held pattern at least as broad. A key or user
// can never hand out more than it holds, now or when the catalog grows.
func Covers(held, requested []string) bool {
	for _, q := range requested {
		if !Allows(held, q) {
			return false
		}
	}
	return true
}
