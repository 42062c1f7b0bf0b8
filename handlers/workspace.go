package handlers

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"keysmith/keys"
	"keysmith/validate"
	"keysmith/views"
)

func (h *Handlers) workspaceView(c echo.Context) views.WorkspaceView {
	v := currentViewer(c)
	w := v.Current.Workspace
	view := views.WorkspaceView{Name: w.Name, Prefix: h.Config.KeyPrefix, CanEdit: v.Current.Role.IsAdmin(), OperatorMax: h.Teams.OperatorMaxDays(), DefaultDays: "90"}
	if w.DefaultExpiryDays != nil {
		view.DefaultDays = fmt.Sprint(*w.DefaultExpiryDays)
	}
	if w.MaxLifetimeDays != nil {
		view.MaxDays = fmt.Sprint(*w.MaxLifetimeDays)
	}
	for _, d := range keys.ExpiryChoices {
		view.ExpiryChoice = append(view.ExpiryChoice, views.Choice{Value: fmt.Sprint(d), Label: fmt.Sprintf("%d days", d), Selected: fmt.Sprint(d) == view.DefaultDays})
	}
	p := keys.PolicyOf(w)
	view.Inactivity = views.InactivityView{On: p.On(), Action: string(p.Action), Days: fmt.Sprint(p.Days), Min: keys.MinInactivityDays, Max: keys.MaxInactivityDays}
	return view
}

func (h *Handlers) workspaceSettings(c echo.Context) error {
	return h.app(c, http.StatusOK, "workspace", "Workspace", views.WorkspacePage(h.workspaceView(c)))
}

func (h *Handlers) renameWorkspace(c echo.Context) error {
	v := currentViewer(c)
	name := c.FormValue("name")
	err := h.Teams.Rename(c.Request().Context(), v.Current.WorkspaceID, h.teamActor(c), name)
	if err != nil {
		return h.workspaceError(c, err, func(w *views.WorkspaceView) { w.Name = name })
	}
	h.flash(c, "success", "Workspace renamed.")
	return redirect(c, "/settings/workspace")
}

func optionalInt(s string) (*int, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, true
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return nil, false
	}
	return &n, true
}

func (h *Handlers) saveKeyPolicy(c echo.Context) error {
	v := currentViewer(c)
	def, ok1 := optionalInt(c.FormValue("default_expiry_days"))
	maxDays, ok2 := optionalInt(c.FormValue("max_lifetime_days"))
	var err error
	if !ok1 || !ok2 {
		err = validate.Errors{"max_lifetime_days": "Enter a whole number of days, or leave it empty."}
	} else {
		err = h.Teams.SetKeyPolicy(c.Request().Context(), v.Current.WorkspaceID, h.teamActor(c), def, maxDays)
	}
	if err != nil {
		return h.workspaceError(c, err, func(w *views.WorkspaceView) { w.MaxDays = c.FormValue("max_lifetime_days") })
	}
	h.flash(c, "success", "Key policy saved. It applies to keys created from now on.")
	return redirect(c, "/settings/workspace")
}

// saveInactivityPolicy switches the workspace's inactivity policy on
// (disable, the default, or revoke) or off.
func (h *Handlers) saveInactivityPolicy(c echo.Context) error {
	v := currentViewer(c)
	on, action, daysIn := c.FormValue("inactivity_on") != "", c.FormValue("inactivity_action"), c.FormValue("inactivity_days")
	choice := keys.InactivityOff
	if on {
		choice = keys.InactivityAction(cmp.Or(action, string(keys.InactivityDisable)))
	}
	days, _ := strconv.Atoi(strings.TrimSpace(daysIn)) // not a number: 0, out of range
	p, err := h.Keys.SetInactivityPolicy(c.Request().Context(), v.Current.WorkspaceID, h.keyActor(c), choice, days)
	if err != nil {
		if fe := (*keys.ForbiddenError)(nil); errors.As(err, &fe) {
			return keyError(err)
		}
		return h.workspaceError(c, err, func(w *views.WorkspaceView) {
			w.Inactivity.On, w.Inactivity.Action, w.Inactivity.Days = on, action, daysIn
		})
	}
	h.flash(c, "success", "Inactivity policy saved: "+views.InactivitySummary(p.On(), string(p.Action), fmt.Sprint(p.Days)))
	return redirect(c, "/settings/workspace")
}

func (h *Handlers) workspaceError(c echo.Context, err error, fill func(*views.WorkspaceView)) error {
	view := h.workspaceView(c)
	fill(&view)
	var ve validate.Errors
	if errors.As(err, &ve) {
		view.Errors = views.FieldErrors(ve)
		return h.app(c, http.StatusUnprocessableEntity, "workspace", "Workspace", views.WorkspacePage(view))
	}
	return teamsHTTPError(err)
}
