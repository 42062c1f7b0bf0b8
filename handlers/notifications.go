package handlers

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"keysmith/accounts"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/outbox"
	"keysmith/views"
)

var stageLabels = map[string]string{
	string(keys.Stage14d): "14 days before", string(keys.Stage7d): "7 days before",
	string(keys.Stage1d): "1 day before", string(keys.StageExpired): "expired",
}

const deliveriesPerPage = 50

// deliveryFilters are the delivery log's tabs.
var deliveryFilters = []views.FilterTab{
	{Value: "", Label: "All"}, {Value: "pending", Label: "Pending"}, {Value: "failed", Label: "Failed"}, {Value: "sent", Label: "Sent"},
}

// deliveryFilter reads the delivery log's status filter and page from the
// query string; an unknown status is all of them.
func deliveryFilter(c echo.Context) (string, int) {
	status := c.QueryParam("status")
	if !slices.Contains(outbox.DeliveryStatuses, status) {
		status = ""
	}
	page, _ := strconv.Atoi(c.QueryParam("page"))
	return status, max(page, 1)
}

func (h *Handlers) notifications(c echo.Context) error {
	v := currentViewer(c)
	view := views.NotificationsView{RemindersOn: !v.User.RemindersOptOut, IsAdmin: v.Current.Role.IsAdmin()}
	if view.IsAdmin {
		status, page := deliveryFilter(c)
		dl, err := h.Outbox.Deliveries(c.Request().Context(), v.Current.WorkspaceID, status, page, deliveriesPerPage)
		if err != nil {
			return err
		}
		view.Status, view.Page, view.Pages, view.Total = status, dl.Page, dl.Pages, dl.Counts[status]
		for _, t := range deliveryFilters {
			t.Count, t.Current = views.Thousands(dl.Counts[t.Value]), t.Value == status
			view.Tabs = append(view.Tabs, t)
		}
		view.Deliveries = deliveryRows(dl.Deliveries, h.Clock.Now())
	}
	return h.app(c, http.StatusOK, "notifications", "Notifications", views.NotificationsPage(view))
}

// deliveryKinds names what a delivery carries in the log.
var deliveryKinds = map[string]string{string(outbox.KindMail): "Email", string(outbox.KindWebhook): "Webhook"}

func deliveryRows(ds []models.Delivery, now time.Time) []views.DeliveryRow {
	rows := make([]views.DeliveryRow, 0, len(ds))
	for _, d := range ds {
		r := views.DeliveryRow{
			ID: d.ID, When: views.Relative(d.CreatedAt, now), WhenExact: views.Exact(d.CreatedAt),
			Key: d.Subject, Stage: deliveryKinds[d.Kind], To: d.Recipient,
			Status: d.Status, Attempts: d.Attempts, Error: d.LastError,
		}
		if d.Kind == string(outbox.KindReminder) && d.KeyID != nil {
			r.Key, r.KeyID, r.Stage = d.Key.Name+" ("+d.Key.Hint+")", *d.KeyID, stageLabels[d.Stage]
		}
		if d.ResponseCode != nil {
			r.Stage += fmt.Sprintf(" (HTTP %d)", *d.ResponseCode)
		}
		if d.Status == "pending" && d.Attempts > 0 {
			r.Status = "retrying"
			r.NextTry = nextTry(d.NextAttemptAt, now)
		}
		rows = append(rows, r)
	}
	return rows
}

// nextTry says when a refused delivery goes out again. Once its time has
// come the next scheduler pass (or the one running) sends it.
func nextTry(at, now time.Time) string {
	switch {
	case !at.After(now):
		return "retrying now"
	case at.Sub(now) < time.Minute:
		return "next try in less than a minute"
	default:
		return "next try " + views.Relative(at, now)
	}
}

func (h *Handlers) saveNotifications(c echo.Context) error {
	v := currentViewer(c)
	on := c.FormValue("reminders") == "on"
	if err := h.Accounts.SetReminders(c.Request().Context(), v.User.ID, on); err != nil {
		return err
	}
	msg := "You will get key expiry reminders."
	if !on {
		msg = "You will no longer get key expiry reminders."
	}
	h.flash(c, "success", msg)
	return redirect(c, "/settings/notifications")
}

func (h *Handlers) retryDelivery(c echo.Context) error {
	v := currentViewer(c)
	if !v.Current.Role.IsAdmin() {
		return echo.NewHTTPError(http.StatusForbidden, "Only owners and admins can retry deliveries.")
	}
	id, _ := strconv.ParseInt(c.Param("id"), 10, 64)
	err := h.Outbox.Retry(c.Request().Context(), v.Current.WorkspaceID, id)
	switch {
	case errors.Is(err, outbox.ErrNotRetryable):
		h.flash(c, "info", "That delivery is not failed, so there is nothing to retry.")
	case err != nil:
		return err
	default:
		h.flash(c, "success", fmt.Sprintf("Delivery %d will be retried within a minute.", id))
	}
	return redirect(c, views.NotificationsURL(deliveryFilter(c)))
}

// unsubscribe (GET) asks before it acts: mail scanners open links. The
// POST is the one-click unsubscribe of RFC 8058 (List-Unsubscribe-Post),
// which a mail client sends without cookies or CSRF token: the link's
// secret token is the authority.
func (h *Handlers) unsubscribe(c echo.Context) error {
	token := c.Param("token")
	u, err := h.Accounts.UserByUnsubscribeToken(c.Request().Context(), token)
	if errors.Is(err, accounts.ErrNotFound) {
		return h.public(c, http.StatusNotFound, "Unsubscribe", views.UnsubscribePage(views.UnsubscribeView{Invalid: true}))
	}
	if err != nil {
		return err
	}
	view := views.UnsubscribeView{Token: token, Email: u.Email}
	if c.Request().Method == http.MethodPost {
		if err := h.Accounts.SetReminders(c.Request().Context(), u.ID, false); err != nil {
			return err
		}
		view.Done = true
	}
	return h.public(c, http.StatusOK, "Unsubscribe", views.UnsubscribePage(view))
}
