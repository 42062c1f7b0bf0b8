package handlers

import (
	"cmp"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
)

func (h *Handlers) switchWorkspace(c echo.Context) error {
	v := currentViewer(c)
	id, err := strconv.ParseInt(c.FormValue("workspace_id"), 10, 64)
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "Choose a workspace.")
	}
	for _, m := range v.Memberships {
		if m.WorkspaceID == id {
			h.Sessions.Put(c.Request().Context(), sessWorkspaceID, id)
			h.flash(c, "info", "Switched to "+m.Workspace.Name+".")
			return redirect(c, safeNext(cmp.Or(c.FormValue("next"), "/settings/api-keys")))
		}
	}
	return echo.NewHTTPError(http.StatusNotFound, "You are not a member of that workspace.")
}
