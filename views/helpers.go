package views

import "strconv"

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
const htmxConfig = `{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false,` +
	`"responseHandling":[{"code":"204","swap":false},{"code":"...","swap":true}]}`
