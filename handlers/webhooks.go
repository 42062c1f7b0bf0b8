package handlers

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"keysmith/models"
	"keysmith/validate"
	"keysmith/views"
	"keysmith/webhooks"
)

// Settings → Webhooks: the workspace's endpoints (owners and admins manage
// them, everyone else reads), each endpoint's page with its delivery log.

const webhookDeliveriesPerPage = 25

// webhookEventHints says what each event is, on the form.
var webhookEventHints = map[string]string{
	"key.created":    "a key was created",
	"key.rotated":    "a key was rotated",
	"key.revoked":    "a key was revoked",
	"key.disabled":   "a key was paused",
	"key.enabled":    "a paused key was resumed",
	"key.expiring":   "a key expires in 14, 7 or 1 days",
	"key.expired":    "a key has expired",
	"key.leaked":     "a scanner found a key in public; it was revoked",
	"member.joined":  "someone joined the workspace",
	"member.removed": "someone left or was removed",
}

// webhookError maps a webhooks domain error to an HTTP error; err itself
// if it is not one.
func webhookError(err error) error {
	switch {
	case errors.Is(err, webhooks.ErrNotFound):
		return echo.NewHTTPError(http.StatusNotFound, "No such webhook endpoint in this workspace.")
	case errors.Is(err, webhooks.ErrForbidden):
		return echo.NewHTTPError(http.StatusForbidden, "Only workspace owners and admins can add, change, test or delete webhook endpoints.")
	}
	return err
}

func webhookURL(id int64, suffix string) string {
	return fmt.Sprintf("/settings/webhooks/%d%s", id, suffix)
}

func (h *Handlers) listWebhooks(c echo.Context) error {
	v := currentViewer(c)
	es, err := h.Webhooks.List(c.Request().Context(), v.Current.WorkspaceID)
	if err != nil {
		return err
	}
	view := views.WebhooksView{Workspace: v.Current.Workspace.Name, CanManage: h.keyActor(c).Admin}
	now := h.Clock.Now()
	for _, e := range es {
		view.Rows = append(view.Rows, webhookRow(e, now, view.CanManage))
	}
	return h.app(c, http.StatusOK, "webhooks", "Webhooks", views.WebhooksPage(view))
}

func (h *Handlers) newWebhook(c echo.Context) error {
	if !h.keyActor(c).Admin {
		return webhookError(webhooks.ErrForbidden)
	}
	f := webhookForm(webhooks.EndpointInput{Enabled: true}, false, nil)
	f.Nonce = rand.Text()
	return h.app(c, http.StatusOK, "webhooks", "Add a webhook endpoint", views.WebhookFormPage(f))
}

// webhookInput reads the endpoint form. "All events" stands for every
// event there is, whatever boxes are ticked.
func webhookInput(c echo.Context) (webhooks.EndpointInput, bool) {
	form, _ := c.FormParams()
	all := c.FormValue("all_events") == "on"
	in := webhooks.EndpointInput{
		URL: c.FormValue("url"), Description: c.FormValue("description"), Events: form["events"],
		Enabled: c.FormValue("enabled") == "on",
	}
	if all {
		in.Events = slices.Clone(webhooks.Events)
	}
	return in, all
}

func (h *Handlers) createWebhook(c echo.Context) error {
	if !h.keyActor(c).Admin {
		return webhookError(webhooks.ErrForbidden)
	}
	nonce := c.FormValue("nonce")
	if h.formUsed(c, nonce) {
		h.flash(c, "info", "That endpoint was already added, and its signing secret was shown once. If you did not copy it, rotate the secret on the endpoint's page.")
		return redirect(c, "/settings/webhooks")
	}
	in, all := webhookInput(c)
	created, err := h.Webhooks.Create(c.Request().Context(), currentViewer(c).Current.WorkspaceID, h.keyActor(c), in)
	var ve validate.Errors
	if errors.As(err, &ve) {
		f := webhookForm(in, all, views.FieldErrors(ve))
		f.Nonce = nonce
		return h.app(c, http.StatusUnprocessableEntity, "webhooks", "Add a webhook endpoint", views.WebhookFormPage(f))
	}
	if err != nil {
		return webhookError(err)
	}
	h.useForm(c, nonce)
	return h.showWebhookSecret(c, created, false)
}

// showWebhookSecret renders the one response that carries an endpoint's
// signing secret, kept out of every cache.
func (h *Handlers) showWebhookSecret(c echo.Context, created webhooks.Created, rotated bool) error {
	noStore(c)
	pushURL(c, webhookURL(created.Endpoint.ID, ""))
	title := "Webhook endpoint added"
	if rotated {
		title = "Signing secret rotated"
	}
	view := views.WebhookSecretView{Endpoint: webhookRow(created.Endpoint, h.Clock.Now(), true), Secret: created.Secret, Rotated: rotated}
	return h.app(c, http.StatusCreated, "webhooks", title, views.WebhookSecretPage(view))
}

func (h *Handlers) showWebhook(c echo.Context) error {
	e, err := h.Webhooks.Get(c.Request().Context(), currentViewer(c).Current.WorkspaceID, pathID(c, "id"))
	if err != nil {
		return webhookError(err)
	}
	evs := e.EventList()
	form := webhookForm(webhooks.EndpointInput{URL: e.URL, Description: e.Description, Events: evs}, len(evs) == len(webhooks.Events), nil)
	return h.webhookPage(c, http.StatusOK, e, form)
}

// webhookPage renders an endpoint's page: its facts, the forms that act on
// it (form is the edit form, as submitted after a refusal) and a page of
// its delivery log.
func (h *Handlers) webhookPage(c echo.Context, status int, e models.WebhookEndpoint, form views.WebhookFormView) error {
	canManage := h.keyActor(c).Admin
	page, _ := strconv.Atoi(c.QueryParam("page"))
	ds, pages, err := h.Webhooks.Deliveries(c.Request().Context(), e.WorkspaceID, e.ID, page, webhookDeliveriesPerPage)
	if err != nil {
		return err
	}
	now := h.Clock.Now()
	form.ID = e.ID
	view := views.WebhookView{
		Endpoint: webhookRow(e, now, canManage), CanManage: canManage, Form: form, Nonce: rand.Text(),
		Page: min(max(page, 1), pages), Pages: pages,
	}
	for _, d := range ds {
		view.Deliveries = append(view.Deliveries, webhookDeliveryRow(d, now))
	}
	return h.app(c, status, "webhooks", view.Endpoint.URL, views.WebhookPage(view))
}

func (h *Handlers) updateWebhook(c echo.Context) error {
	ctx, ws, id := c.Request().Context(), currentViewer(c).Current.WorkspaceID, pathID(c, "id")
	e, err := h.Webhooks.Get(ctx, ws, id)
	if err != nil {
		return webhookError(err)
	}
	// The edit form leaves the endpoint on or off: that has its own button.
	in, all := webhookInput(c)
	in.Enabled = e.Enabled
	_, err = h.Webhooks.Update(ctx, ws, h.keyActor(c), id, in)
	var ve validate.Errors
	if errors.As(err, &ve) {
		return h.webhookPage(c, http.StatusUnprocessableEntity, e, webhookForm(in, all, views.FieldErrors(ve)))
	}
	if err != nil {
		return webhookError(err)
	}
	h.flash(c, "success", "Saved the endpoint.")
	return redirect(c, webhookURL(id, ""))
}

func (h *Handlers) setWebhookEnabled(on bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := pathID(c, "id")
		e, err := h.Webhooks.SetEnabled(c.Request().Context(), currentViewer(c).Current.WorkspaceID, h.keyActor(c), id, on)
		if err != nil {
			return webhookError(err)
		}
		msg := "Switched off. Keysmith queues no events for " + e.URL + " until it is switched on; calls already queued are cancelled."
		if on {
			msg = "Switched on. " + e.URL + " gets the events it wants from now on."
		}
		h.flash(c, "success", msg)
		return redirect(c, webhookURL(id, ""))
	}
}

func (h *Handlers) rotateWebhookSecret(c echo.Context) error {
	id := pathID(c, "id")
	nonce := c.FormValue("nonce")
	if h.formUsed(c, nonce) {
		h.flash(c, "info", "The secret was already rotated, and the new one was shown once. Rotate it again if you did not copy it.")
		return redirect(c, webhookURL(id, ""))
	}
	created, err := h.Webhooks.RotateSecret(c.Request().Context(), currentViewer(c).Current.WorkspaceID, h.keyActor(c), id)
	if err != nil {
		return webhookError(err)
	}
	h.useForm(c, nonce)
	return h.showWebhookSecret(c, created, true)
}

func (h *Handlers) deleteWebhook(c echo.Context) error {
	ctx, ws, id := c.Request().Context(), currentViewer(c).Current.WorkspaceID, pathID(c, "id")
	e, err := h.Webhooks.Get(ctx, ws, id)
	if errors.Is(err, webhooks.ErrNotFound) {
		h.flash(c, "info", "That endpoint was already deleted.")
		return redirect(c, "/settings/webhooks")
	}
	if err != nil {
		return err
	}
	if err := h.Webhooks.Delete(ctx, ws, h.keyActor(c), id); err != nil {
		return webhookError(err)
	}
	h.flash(c, "success", "Deleted the endpoint "+e.URL+". Calls still queued for it are cancelled.")
	return redirect(c, "/settings/webhooks")
}

func (h *Handlers) sendWebhookTest(c echo.Context) error {
	id := pathID(c, "id")
	if err := h.Webhooks.SendTest(c.Request().Context(), currentViewer(c).Current.WorkspaceID, h.keyActor(c), id); err != nil {
		return webhookError(err)
	}
	h.flash(c, "success", "Test event sent; see the log below.")
	return redirect(c, webhookURL(id, ""))
}

// webhookForm is the endpoint form holding in, with errs.
func webhookForm(in webhooks.EndpointInput, all bool, errs views.FieldErrors) views.WebhookFormView {
	f := views.WebhookFormView{URL: in.URL, Description: in.Description, Enabled: in.Enabled, AllEvents: all, Errors: errs}
	for _, ev := range webhooks.Events {
		f.Events = append(f.Events, views.Choice{Value: ev, Label: ev, Hint: webhookEventHints[ev], Selected: all || slices.Contains(in.Events, ev)})
	}
	return f
}

// webhookRow turns an endpoint into what the list and its page show. Only
// those who manage it see its URL's query, where receivers often put a
// token.
func webhookRow(e models.WebhookEndpoint, now time.Time, full bool) views.WebhookRow {
	r := views.WebhookRow{
		ID: e.ID, URL: e.URL, Description: e.Description, Events: e.EventList(), SecretHint: e.SecretHint,
		Enabled: e.Enabled, DisabledReason: e.DisabledReason,
		Created: views.Relative(e.CreatedAt, now), CreatedExact: views.Exact(e.CreatedAt),
	}
	r.AllEvents = len(r.Events) == len(webhooks.Events)
	if !full {
		r.URL = withoutQuery(e.URL)
	}
	if e.FailingSince != nil {
		r.FailingSince, r.FailingSinceExact = views.Relative(*e.FailingSince, now), views.Exact(*e.FailingSince)
	}
	if e.LastDeliveryAt != nil {
		r.LastDelivery, r.LastDeliveryExact = views.Relative(*e.LastDeliveryAt, now), views.Exact(*e.LastDeliveryAt)
	}
	return r
}

// withoutQuery is a URL with its query and fragment, if any, elided.
func withoutQuery(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	hidden := u.RawQuery != "" || u.Fragment != ""
	u.RawQuery, u.Fragment, u.ForceQuery = "", "", false
	if hidden {
		return u.String() + "?…"
	}
	return u.String()
}

func webhookDeliveryRow(d models.Delivery, now time.Time) views.WebhookDeliveryRow {
	r := views.WebhookDeliveryRow{
		ID: d.ID, Event: d.Subject, When: views.Relative(d.CreatedAt, now), WhenExact: views.Exact(d.CreatedAt),
		Status: d.Status, Attempts: d.Attempts, Error: d.LastError,
	}
	if d.ResponseCode != nil {
		r.Response = strconv.Itoa(*d.ResponseCode)
	}
	if d.Status == "pending" && d.Attempts > 0 {
		r.Status, r.NextTry = "retrying", nextTry(d.NextAttemptAt, now)
	}
	return r
}
