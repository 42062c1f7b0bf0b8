package handlers

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"keysmith/views"
)

func (h *Handlers) team(c echo.Context) error {
	v := currentViewer(c)
	members, err := h.Accounts.Members(c.Request().Context(), v.Current.WorkspaceID)
	if err != nil {
		return err
	}
	rows := make([]views.MemberRow, 0, len(members))
	for _, m := range members {
		rows = append(rows, views.MemberRow{
			Name:   m.User.DisplayName(),
			Email:  m.User.Email,
			Role:   string(m.Role),
			Joined: m.CreatedAt.Format("2 Jan 2006"),
			IsYou:  m.UserID == v.User.ID,
		})
	}
	return h.app(c, http.StatusOK, "team", "Team", views.TeamPage(v.Current.Workspace.Name, rows))
}

// switchWorkspace makes another of the user's workspaces the current one.
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
			return redirect(c, "/settings/api-keys")
		}
	}
	return echo.NewHTTPError(http.StatusNotFound, "You are not a member of that workspace.")
}
