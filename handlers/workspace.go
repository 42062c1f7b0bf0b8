package handlers

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"keysmith/keys"
	"keysmith/models"
	"keysmith/outbox"
	"keysmith/teams"
	"keysmith/validate"
	"keysmith/views"
	"keysmith/views/emails"
)

func (h *Handlers) workspaceView(c echo.Context) (views.WorkspaceView, error) {
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
	tf := views.TwoFactorPolicyView{On: w.TwoFactorRequiredAt != nil, GraceDays: fmt.Sprint(w.TwoFactorGraceDays), CanEdit: v.Current.Role == models.RoleOwner, MaxDays: teams.MaxTwoFactorGraceDays}
	if tf.On {
		tf.Since = views.Date(*w.TwoFactorRequiredAt)
		tf.Deadline = views.Exact(teams.StandingOf(w, false, h.Clock.Now()).Deadline)
	} else {
		tf.GraceDays = "14"
	}
	if tf.CanEdit {
		on, err := h.TwoFactor.Enabled(c.Request().Context(), v.User.ID)
		if err != nil {
			return view, err
		}
		tf.OwnerHasIt = on
	}
	view.TwoFactor = tf
	return view, nil
}

func (h *Handlers) workspaceSettings(c echo.Context) error {
	view, err := h.workspaceView(c)
	if err != nil {
		return err
	}
	return h.app(c, http.StatusOK, "workspace", "Workspace", views.WorkspacePage(view))
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
	view, verr := h.workspaceView(c)
	if verr != nil {
		return verr
	}
	fill(&view)
	var ve validate.Errors
	if errors.As(err, &ve) {
		view.Errors = views.FieldErrors(ve)
		return h.app(c, http.StatusUnprocessableEntity, "workspace", "Workspace", views.WorkspacePage(view))
	}
	return teamsHTTPError(err)
}

// saveTwoFactorPolicy requires two-step verification of every member, or
// stops requiring it. Turning it on mails the members who have it off.
func (h *Handlers) saveTwoFactorPolicy(c echo.Context) error {
	ctx := c.Request().Context()
	v := currentViewer(c)
	on, graceIn := c.FormValue("require_two_factor") != "", c.FormValue("grace_days")
	grace, err := strconv.Atoi(strings.TrimSpace(graceIn))
	if err != nil && on {
		grace = -1 // refused as out of range
	}
	wasOn := v.Current.Workspace.TwoFactorRequiredAt != nil
	w, err := h.Teams.SetTwoFactorPolicy(ctx, v.Current.WorkspaceID, h.teamActor(c), on, grace)
	if err != nil {
		return h.workspaceError(c, err, func(w *views.WorkspaceView) { w.TwoFactor.On, w.TwoFactor.GraceDays = on, graceIn })
	}
	if !on {
		h.flash(c, "success", "Two-step verification is no longer required in this workspace.")
		return redirect(c, "/settings/workspace")
	}
	deadline := teams.StandingOf(w, false, h.Clock.Now()).Deadline
	if !wasOn {
		if err := h.mailTwoFactorRequired(c, w, deadline); err != nil {
			return err
		}
	}
	h.flash(c, "success", "Two-step verification is required in this workspace. Members without it have until "+views.Exact(deadline)+".")
	return redirect(c, "/settings/workspace")
}

// mailTwoFactorRequired tells each member without two-step verification
// that the workspace now requires it, and by when.
func (h *Handlers) mailTwoFactorRequired(c echo.Context, w models.Workspace, deadline time.Time) error {
	ctx := c.Request().Context()
	members, err := h.Accounts.Members(ctx, w.ID)
	if err != nil {
		return err
	}
	has, err := h.Teams.TwoFactorMembers(ctx, w.ID)
	if err != nil {
		return err
	}
	for _, m := range members {
		if has[m.UserID] {
			continue
		}
		msg, err := h.Mailer.Notice(ctx, m.User.Email, w.Name+" requires two-step verification", emails.Notice{
			Name:     m.User.DisplayName(),
			Headline: "The workspace " + w.Name + " now requires two-step verification of its members.",
			Body:     "Turn it on before " + views.Exact(deadline) + " on your Security page. After that, you can open only that page until you do; your API keys keep working.",
			Link:     h.Mailer.URL("/settings/security"), LinkLabel: "Set up two-step verification",
		})
		if err != nil {
			return err
		}
		if err := h.Outbox.SendMail(ctx, outbox.Mail{Message: msg, UserID: m.UserID}); err != nil {
			return err
		}
	}
	return nil
}
