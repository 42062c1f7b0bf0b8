package handlers

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"keysmith/models"
	"keysmith/outbox"
	"keysmith/teams"
	"keysmith/validate"
	"keysmith/views"
)

func (h *Handlers) teamActor(c echo.Context) teams.Actor {
	v := currentViewer(c)
	return teams.Actor{User: v.User, Role: v.Current.Role, IP: c.RealIP(), UserAgent: c.Request().UserAgent()}
}

// teamView builds the Team page for the viewer.
func (h *Handlers) teamView(c echo.Context) (views.TeamView, error) {
	v := currentViewer(c)
	ctx := c.Request().Context()
	members, err := h.Accounts.Members(ctx, v.Current.WorkspaceID)
	if err != nil {
		return views.TeamView{}, err
	}
	role := v.Current.Role
	view := views.TeamView{
		Workspace: v.Current.Workspace.Name, CanManage: role.IsAdmin(), IsOwner: role == models.RoleOwner,
		InviteRole: string(models.RoleEditor),
	}
	for _, r := range models.Roles {
		if r != models.RoleOwner || role == models.RoleOwner {
			view.Roles = append(view.Roles, views.Choice{Value: string(r), Label: string(r)})
		}
	}
	twoStep, err := h.Teams.TwoFactorMembers(ctx, v.Current.WorkspaceID)
	if err != nil {
		return views.TeamView{}, err
	}
	owners := 0
	for _, m := range members {
		if m.Role == models.RoleOwner {
			owners++
		}
	}
	view.CanLeave = role != models.RoleOwner || owners > 1
	for _, m := range members {
		view.Members = append(view.Members, views.MemberRow{
			UserID: m.UserID, Name: m.User.DisplayName(), Email: m.User.Email, Role: string(m.Role),
			Joined: views.Date(m.CreatedAt), IsYou: m.UserID == v.User.ID,
			CanChange: role.IsAdmin() && m.UserID != v.User.ID && (m.Role != models.RoleOwner || role == models.RoleOwner),
			TwoFactor: twoStep[m.UserID],
		})
	}
	if role.IsAdmin() {
		invs, err := h.Teams.Pending(ctx, v.Current.WorkspaceID)
		if err != nil {
			return view, err
		}
		now := h.Clock.Now()
		for _, i := range invs {
			row := views.InvitationRow{ID: i.ID, Email: i.Email, Role: string(i.Role), Expires: views.Relative(i.ExpiresAt, now), Expired: !i.ExpiresAt.After(now)}
			if i.InvitedBy != nil {
				row.InvitedBy = i.InvitedBy.DisplayName()
			}
			view.Invitations = append(view.Invitations, row)
		}
	}
	return view, nil
}

func (h *Handlers) team(c echo.Context) error {
	view, err := h.teamView(c)
	if err != nil {
		return err
	}
	return h.app(c, http.StatusOK, "team", "Team", views.TeamPage(view))
}

// teamError re-renders the Team page for a domain error, or returns err.
func (h *Handlers) teamError(c echo.Context, err error, fill func(*views.TeamView)) error {
	var fe *teams.ForbiddenError
	var te *teams.ThrottledError
	var ve validate.Errors
	status, msg := 0, ""
	switch {
	case errors.As(err, &ve):
		status = http.StatusUnprocessableEntity
	case errors.As(err, &te):
		setRetryAfter(c, te.RetryAfter)
		status, msg = http.StatusTooManyRequests, invitationThrottledMessage(te)
	case errors.As(err, &fe):
		status, msg = http.StatusForbidden, "You cannot do that: "+fe.Reason+"."
	case errors.Is(err, teams.ErrLastOwner):
		status, msg = http.StatusConflict, "A workspace needs at least one owner. Make someone else an owner first."
	case errors.Is(err, teams.ErrAlreadyMember):
		status, ve = http.StatusUnprocessableEntity, validate.Errors{"email": "Already a member of this workspace."}
	case errors.Is(err, teams.ErrAlreadyInvited):
		status, ve = http.StatusUnprocessableEntity, validate.Errors{"email": "Already invited. Resend the invitation below instead."}
	case errors.Is(err, teams.ErrNotFound):
		return echo.NewHTTPError(http.StatusNotFound, "No such member or invitation in this workspace.")
	default:
		return err
	}
	view, verr := h.teamView(c)
	if verr != nil {
		return verr
	}
	view.Errors, view.Error = views.FieldErrors(ve), msg
	if fill != nil {
		fill(&view)
	}
	return h.app(c, status, "team", "Team", views.TeamPage(view))
}

func invitationThrottledMessage(te *teams.ThrottledError) string {
	if te.Resend {
		return fmt.Sprintf("The invitation to %s has been resent %d times in the last 24 hours, the most allowed. Try again in %s.",
			te.Email, te.Limit, waitFor(te.RetryAfter))
	}
	return fmt.Sprintf("This workspace has sent %d new invitations in the last 24 hours, the most allowed. Try again in %s.", te.Limit, waitFor(te.RetryAfter))
}

func (h *Handlers) invite(c echo.Context) error {
	v := currentViewer(c)
	email, role := c.FormValue("email"), models.Role(c.FormValue("role"))
	inv, token, err := h.Teams.Invite(c.Request().Context(), v.Current.WorkspaceID, h.teamActor(c), email, role)
	if err != nil {
		return h.teamError(c, err, func(t *views.TeamView) { t.InviteEmail, t.InviteRole = email, string(role) })
	}
	h.sendInvitation(c, inv, token)
	h.flash(c, "success", fmt.Sprintf("Invitation sent to %s.", inv.Email))
	return redirect(c, "/settings/team")
}

// sendInvitation puts the invitation's mail in the outbox, which sends it
// at once and retries it through an outage; the delivery log shows it.
func (h *Handlers) sendInvitation(c echo.Context, inv models.Invitation, token string) {
	v := currentViewer(c)
	ctx := c.Request().Context()
	msg, err := h.Mailer.Invitation(ctx, inv.Email, v.User.DisplayName(), v.Current.Workspace.Name, string(inv.Role), token, teams.InvitationLifetime)
	if err == nil {
		err = h.Outbox.SendMail(ctx, outbox.Mail{Message: msg, WorkspaceID: inv.WorkspaceID})
	}
	if err != nil {
		// The invitation stands; Resend mails it again.
		h.Log.Error("invitation email not queued", "invitation_id", inv.ID, "err", err)
		h.flash(c, "error", "The invitation was saved but its email could not be queued. Try Resend.")
	}
}

// pathID reads a numeric path parameter; anything else is 0, which no
// record has, so the domain answers "not found".
func pathID(c echo.Context, name string) int64 {
	id, _ := strconv.ParseInt(c.Param(name), 10, 64)
	return id
}

func (h *Handlers) resendInvitation(c echo.Context) error {
	v := currentViewer(c)
	inv, token, err := h.Teams.Resend(c.Request().Context(), v.Current.WorkspaceID, h.teamActor(c), pathID(c, "id"))
	if err != nil {
		return h.teamError(c, err, nil)
	}
	h.flash(c, "success", fmt.Sprintf("Invitation sent again to %s; the earlier link no longer works.", inv.Email))
	h.sendInvitation(c, inv, token)
	return redirect(c, "/settings/team")
}

func (h *Handlers) cancelInvitation(c echo.Context) error {
	v := currentViewer(c)
	if err := h.Teams.Cancel(c.Request().Context(), v.Current.WorkspaceID, h.teamActor(c), pathID(c, "id")); err != nil {
		return h.teamError(c, err, nil)
	}
	h.flash(c, "success", "Invitation cancelled.")
	return redirect(c, "/settings/team")
}

func (h *Handlers) changeRole(c echo.Context) error {
	v := currentViewer(c)
	role := models.Role(c.FormValue("role"))
	if err := h.Teams.ChangeRole(c.Request().Context(), v.Current.WorkspaceID, h.teamActor(c), pathID(c, "id"), role); err != nil {
		return h.teamError(c, err, nil)
	}
	h.flash(c, "success", "Role changed to "+string(role)+".")
	return redirect(c, "/settings/team")
}

func (h *Handlers) removeMember(c echo.Context) error {
	v := currentViewer(c)
	id := pathID(c, "id")
	n, err := h.Teams.Remove(c.Request().Context(), v.Current.WorkspaceID, h.teamActor(c), id)
	if err != nil {
		return h.teamError(c, err, nil)
	}
	if n > 0 {
		// The keys belong to the workspace and keep working; the admin is
		// one click from reviewing them.
		verb := "keep"
		if n == 1 {
			verb = "keeps"
		}
		h.flashLink(c, "info", fmt.Sprintf("Member removed. The %d active key%s they created %s working.", n, plural(int(n)), verb),
			fmt.Sprintf("/settings/api-keys?creator=%d", id), "Review their keys")
	} else {
		h.flash(c, "success", "Member removed.")
	}
	return redirect(c, "/settings/team")
}

func (h *Handlers) leave(c echo.Context) error {
	v := currentViewer(c)
	if err := h.Teams.Leave(c.Request().Context(), v.Current.WorkspaceID, h.teamActor(c)); err != nil {
		return h.teamError(c, err, nil)
	}
	h.Sessions.Remove(c.Request().Context(), sessWorkspaceID)
	h.flash(c, "success", "You left "+v.Current.Workspace.Name+".")
	return redirect(c, "/settings/api-keys")
}

func (h *Handlers) transferOwnership(c echo.Context) error {
	v := currentViewer(c)
	to, _ := strconv.ParseInt(c.FormValue("user_id"), 10, 64)
	if err := h.Teams.TransferOwnership(c.Request().Context(), v.Current.WorkspaceID, h.teamActor(c), to); err != nil {
		return h.teamError(c, err, nil)
	}
	h.flash(c, "success", "Ownership transferred. You are now an admin.")
	return redirect(c, "/settings/team")
}

// invitation shows what an emailed invitation offers; joining is a POST.
func (h *Handlers) invitation(c echo.Context) error {
	token := c.Param("token")
	inv, err := h.Teams.Invitation(c.Request().Context(), token)
	if errors.Is(err, teams.ErrInvitationInvalid) {
		return h.public(c, http.StatusGone, "Invitation", views.InvitationPage(views.InvitationView{Invalid: true}))
	}
	if err != nil {
		return err
	}
	view := views.InvitationView{Token: token, Workspace: inv.Workspace.Name, Role: string(inv.Role), Email: inv.Email, InvitedBy: "Someone"}
	if inv.InvitedBy != nil {
		view.InvitedBy = inv.InvitedBy.DisplayName()
	}
	if uid := h.Sessions.GetInt64(c.Request().Context(), sessUserID); uid != 0 {
		u, err := h.Accounts.User(c.Request().Context(), uid)
		if err == nil {
			view.LoggedInAs = u.Email
			view.WrongAccount = u.Email != inv.Email
		}
	}
	return h.public(c, http.StatusOK, "Invitation", views.InvitationPage(view))
}

func (h *Handlers) acceptInvitation(c echo.Context) error {
	v := currentViewer(c)
	inv, err := h.Teams.Accept(c.Request().Context(), c.Param("token"), v.User, c.RealIP(), c.Request().UserAgent())
	switch {
	case errors.Is(err, teams.ErrInvitationInvalid):
		return h.public(c, http.StatusGone, "Invitation", views.InvitationPage(views.InvitationView{Invalid: true}))
	case errors.Is(err, teams.ErrWrongAccount):
		return h.public(c, http.StatusForbidden, "Invitation", views.InvitationPage(views.InvitationView{WrongAccount: true, Email: inv.Email, LoggedInAs: v.User.Email}))
	case err != nil:
		return err
	}
	h.Sessions.Put(c.Request().Context(), sessWorkspaceID, inv.WorkspaceID)
	h.flash(c, "success", "Welcome to "+inv.Workspace.Name+".")
	return redirect(c, "/settings/api-keys")
}

// teamsHTTPError maps a teams error with no form to re-render.
func teamsHTTPError(err error) error {
	var fe *teams.ForbiddenError
	if errors.As(err, &fe) {
		return echo.NewHTTPError(http.StatusForbidden, "You cannot do that: "+fe.Reason+".")
	}
	return err
}
