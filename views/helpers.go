package views

import (
	"fmt"
	"strconv"
	"strings"
)

func int64String(n int64) string { return strconv.FormatInt(n, 10) }

func flashRole(kind string) string {
	if kind == "error" {
		return "alert"
	}
	return "status"
}

// htmxConfig keeps htmx inside the CSP (no injected styles, no eval) and
// swaps every response but 204: an invalid form (422), a throttled login
// (429) and an error page must reach the user as they do without htmx.
// No page is kept in htmx's history cache (sessionStorage): Back after
// logout must not show keys or members, and a form restored from history
// must not carry a used one-time token. Back and Forward reload the page
// from the server instead.
const htmxConfig = `{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false,` +
	`"historyCacheSize":0,"refreshOnHistoryMiss":true,` +
	`"responseHandling":[{"code":"204","swap":false},{"code":"...","swap":true}]}`

func joinScopes(s []string) string { return strings.Join(s, " ") }

// scopeSummary shortens a long scope list for a table cell.
func scopeSummary(s []string) string {
	if len(s) <= 3 {
		return strings.Join(s, " ")
	}
	return fmt.Sprintf("%s %s +%d more", s[0], s[1], len(s)-2)
}

// joinList lists values with commas, for a title.
func joinList(s []string) string { return strings.Join(s, ", ") }
