package handlers

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"keysmith/views"
)

// apiError is SPEC §6's error body.
type apiError struct {
	Error apiErrorBody `json:"error"`
}

type apiErrorBody struct {
	Type      string `json:"type"`
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

// handleError is echo's one error handler: JSON in SPEC §6's shape under
// /v1/, in OAuth's (RFC 6749 §5.2) under /oauth/ and /.well-known/, an
// HTML page elsewhere. A 500 never shows internals; the error is
// logged (by the request logger) with the request id the user sees.
func (h *Handlers) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status := http.StatusInternalServerError
	msg := ""
	var he *echo.HTTPError
	if errors.As(err, &he) {
		status = he.Code
		if s, ok := he.Message.(string); ok {
			msg = s
		}
	}
	requestID := c.Response().Header().Get(echo.HeaderXRequestID)

	if oauthPath(c.Request().URL.Path) {
		code, desc := "invalid_request", msg
		switch {
		case status == http.StatusNotFound:
			desc = "No such endpoint."
		case status == http.StatusMethodNotAllowed:
			desc = "This endpoint does not accept " + c.Request().Method + "."
		case status >= 500:
			code, desc = "server_error", "Something went wrong on our side. Quote the request id ("+requestID+") if you contact support."
		}
		_ = oauthFail(c, status, code, desc)
		return
	}
	if strings.HasPrefix(c.Request().URL.Path, "/v1/") {
		body := apiErrorBody{Type: "invalid_request_error", Code: "not_found", Message: msg, RequestID: requestID}
		switch {
		case status == http.StatusNotFound:
			body.Message = "No such endpoint."
		case status == http.StatusMethodNotAllowed:
			body.Code, body.Message = "method_not_allowed", "This endpoint does not accept "+c.Request().Method+"."
		case status >= 500:
			body.Type, body.Code, body.Message = "api_error", "internal_error", "Something went wrong on our side. Quote the request id if you contact support."
		default:
			body.Code = "invalid_request"
		}
		h.Metrics.APIRequest(body.Code)
		_ = c.JSON(status, apiError{Error: body})
		return
	}

	view := views.ErrorView{Code: status}
	switch {
	case status == http.StatusNotFound:
		view.Title, view.Message = "Page not found", "The page you asked for does not exist or has moved."
	case (status == http.StatusForbidden || status == http.StatusBadRequest) && strings.Contains(msg, "csrf"):
		view.Title, view.Message = "This form has expired", "Go back, reload the page and try again."
	case status >= 500:
		view.Title = "Something went wrong"
		view.Message = fmt.Sprintf("We could not finish your request. Try again in a moment; if it keeps happening, quote request id %s.", requestID)
	default:
		view.Title, view.Message = http.StatusText(status), msg
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(status)
		return
	}
	if rerr := h.render(c, status, views.BarePage, views.Shell{Title: view.Title}, views.ErrorPage(view)); rerr != nil {
		h.Log.Error("render error page", "err", rerr)
		_ = c.String(status, view.Title)
	}
}
