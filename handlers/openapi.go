package handlers

import (
	_ "embed"
	"net/http"

	"github.com/labstack/echo/v4"
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
