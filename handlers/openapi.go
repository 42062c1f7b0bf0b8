package handlers

import (
	_ "embed"
	"encoding/json"
	"net/http"
	"sort"
	"strings"

	"github.com/labstack/echo/v4"

	"keysmith/views"
)

// openAPI is the API's OpenAPI 3 description, served at /v1/openapi.json
// and rendered as the dashboard's API reference. A test checks that it
// names every /v1 route and no other.
//
//go:embed openapi.json
var openAPI []byte

func serveOpenAPI(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/json", openAPI)
}

// The parts of the OpenAPI document the reference page shows.
type openAPIDoc struct {
	Paths map[string]map[string]json.RawMessage `json:"paths"`
}

type openAPIOperation struct {
	Summary     string                        `json:"summary"`
	Description string                        `json:"description"`
	Scope       string                        `json:"x-scope"`
	GoExample   string                        `json:"x-go-example"`
	Security    *[]map[string][]string        `json:"security"` // nil: the document's (a key); empty: none
	Responses   map[string]openAPIResponseRef `json:"responses"`
}

type openAPIResponseRef struct {
	Ref         string `json:"$ref"`
	Description string `json:"description"`
}

// referenceEndpoints turns the OpenAPI document into the reference page's
// list, in a reading order: check a key, verify, keys, then tokens.
func referenceEndpoints(baseURL string) ([]views.Endpoint, error) {
	var doc openAPIDoc
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		return nil, err
	}
	var out []views.Endpoint
	for path, ops := range doc.Paths {
		summaries := map[string]int{} // an operation's summary → its methods on this path
		for method, raw := range ops {
			var op openAPIOperation
			if method != "parameters" && json.Unmarshal(raw, &op) == nil {
				summaries[op.Summary]++
			}
		}
		seen := map[string]bool{}
		for method, raw := range ops {
			if method == "parameters" {
				continue
			}
			var op openAPIOperation
			if err := json.Unmarshal(raw, &op); err != nil {
				return nil, err
			}
			if summaries[op.Summary] > 2 { // one operation under every method (/v1/authz): one entry, ANY
				if seen[op.Summary] {
					continue
				}
				seen[op.Summary], method = true, "any"
			}
			ep := views.Endpoint{Method: strings.ToUpper(method), Path: path, Summary: op.Summary, Description: op.Description, Scope: op.Scope, GoExample: op.GoExample}
			if op.Security != nil {
				ep.Public = len(*op.Security) == 0
				ep.ServiceToken = !ep.Public && (*op.Security)[0]["serviceToken"] != nil
			}
			for code := range op.Responses {
				ep.Statuses = append(ep.Statuses, code)
			}
			sort.Strings(ep.Statuses)
			ep.Curl = curlExample(baseURL, ep)
			out = append(out, ep)
		}
	}
	order := map[string]int{"ANY": -1, "GET": 0, "POST": 1, "PATCH": 2, "DELETE": 3}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return pathRank(out[i].Path) < pathRank(out[j].Path)
		}
		return order[out[i].Method] < order[out[j].Method]
	})
	return out, nil
}

func pathRank(p string) string {
	switch p {
	case "/v1/auth/test":
		return "0"
	case "/v1/keys/verify":
		return "1"
	case "/v1/authz":
		return "11"
	case "/oauth/token":
		return "3"
	case "/oauth/authorize":
		return "31"
	case "/oauth/revoke":
		return "32"
	case "/oauth/introspect":
		return "33"
	}
	if strings.HasPrefix(p, "/.well-known/") {
		return "4" + p
	}
	return "2" + p
}

func curlExample(base string, ep views.Endpoint) string {
	path := strings.ReplaceAll(ep.Path, "{id}", "42")
	if strings.HasSuffix(ep.Path, "/usage") {
		path += "?granularity=day&from=2026-03-01"
	}
	auth := " \\\n  -H \"Authorization: Bearer $KEYSMITH_KEY\""
	switch {
	case ep.ServiceToken:
		auth = " \\\n  -H \"Authorization: Bearer $KEYSMITH_SERVICE_TOKEN\""
	case ep.Public:
		auth = ""
	}
	cmd := "curl"
	if ep.Method == "ANY" { // a proxy's question (/v1/authz): about GET /files/42
		return cmd + " " + base + path + auth + " \\\n  -H 'X-Forwarded-Method: GET' -H 'X-Forwarded-Uri: /files/42'"
	}
	if ep.Method != "GET" {
		cmd += " -X " + ep.Method
	}
	url := base + path
	if strings.Contains(path, "?") {
		url = "\"" + url + "\"" // & would end the command in a shell
	}
	cmd += " " + url + auth
	switch {
	case ep.Path == "/oauth/token":
		cmd += " \\\n  -d grant_type=urn:ietf:params:oauth:grant-type:token-exchange \\\n  -d subject_token_type=urn:keysmith:token-type:api-key \\\n" +
			"  --data-urlencode \"subject_token=$KEYSMITH_KEY\" \\\n  -d scope=files:read -d expires_in=600"
	case ep.Path == "/v1/keys/verify":
		cmd += " \\\n  -H 'Content-Type: application/json' \\\n  -d '{\"key\":\"ks_sk_live_…\",\"scopes\":[\"files:write\"],\"ip\":\"203.0.113.7\"}'"
	case ep.Path == "/v1/keys" && ep.Method == "POST":
		cmd += " \\\n  -H 'Content-Type: application/json' \\\n  -d '{\"name\":\"uploader\",\"scopes\":[\"files:read\"],\"expires_in\":\"30\"}'"
	case ep.Path == "/v1/webhook-endpoints" && ep.Method == "POST":
		cmd += " \\\n  -H 'Content-Type: application/json' \\\n  -d '{\"url\":\"https://ci.example.com/hooks/keysmith\",\"events\":[\"key.revoked\",\"key.leaked\"]}'"
	case ep.Method == "PATCH":
		cmd += " \\\n  -H 'Content-Type: application/json' \\\n  -d '{\"name\":\"uploader\",\"rate_limit\":500,\"allowed_ips\":[\"203.0.113.7\",\"10.0.0.0/8\"]}'"
	case strings.HasSuffix(ep.Path, "/rotate"):
		cmd += " \\\n  -H 'Content-Type: application/json' \\\n  -d '{\"grace_period\":\"24h\"}'"
	}
	return cmd
}

func (h *Handlers) apiReference(c echo.Context) error {
	return h.app(c, http.StatusOK, "api-reference", "API reference", views.APIReferencePage(h.reference, h.routeTable()))
}
