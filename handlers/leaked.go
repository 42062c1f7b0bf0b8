package handlers

import (
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"keysmith/keys"
)

// leakReport is one match in the body of GitHub's secret-scanning partner
// program, which other scanners can send as well.
type leakReport struct {
	Token  string `json:"token"`
	Type   string `json:"type"`
	URL    string `json:"url"`
	Source string `json:"source"`
}

// leakVerdict is the partner program's answer to one report.
type leakVerdict struct {
	TokenRaw  string `json:"token_raw"`
	TokenType string `json:"token_type"`
	Label     string `json:"label"` // true_positive or false_positive
}

const leakExample = `[{"token":"ks_sk_live_…","type":"keysmith_api_key","url":"https://github.com/…","source":"content"}]`

// leakedKeys is POST /v1/keys/leaked, for a secret scanner the operator
// wired with the service token: every active key it reports is revoked at
// once, and each report is answered true_positive (one of our keys) or
// false_positive, in the order sent. Tokens are never logged.
func (h *Handlers) leakedKeys(c echo.Context) error {
	var body []leakReport
	if ok, err := decodeJSON(c, &body, leakExample); !ok {
		return err
	}
	if body == nil {
		return apiFail(c, http.StatusBadRequest, errInvalidRequest, "invalid_body", "Send a JSON array of reports like "+leakExample+".")
	}
	if len(body) > keys.MaxLeakReports {
		return apiFail(c, http.StatusRequestEntityTooLarge, errInvalidRequest, "too_many_reports",
			fmt.Sprintf("Send at most %d reports per request; this one has %d.", keys.MaxLeakReports, len(body)))
	}
	reports := make([]keys.LeakReport, len(body))
	for i, r := range body {
		if r.Token == "" {
			return apiFail(c, http.StatusBadRequest, errInvalidRequest, "invalid_body",
				fmt.Sprintf("Report %d has no token. Send a JSON array of reports like %s.", i, leakExample))
		}
		reports[i] = keys.LeakReport{Token: r.Token, Type: r.Type, URL: r.URL, Source: r.Source}
	}
	results, err := h.Keys.RevokeLeaked(c.Request().Context(), reports)
	if err != nil {
		return err
	}
	out := make([]leakVerdict, len(results))
	var ours, revoked []int64
	for i, r := range results {
		out[i] = leakVerdict{TokenRaw: r.TokenRaw, TokenType: r.TokenType, Label: r.Label}
		if r.Key != nil {
			ours = append(ours, r.Key.ID)
		}
		if r.Revoked {
			revoked = append(revoked, r.Key.ID)
		}
	}
	h.Log.Info("secret scanning report", "reports", len(results), "true_positive_key_ids", ours, "revoked_key_ids", revoked,
		"request_id", c.Response().Header().Get(echo.HeaderXRequestID))
	return c.JSON(http.StatusOK, out)
}
