package handlers

import (
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"keysmith/models"
	"keysmith/webhooks"
)

// webhookEndpointJSON is a webhook endpoint as the API shows it. Secret
// is set only in the answer that created it.
type webhookEndpointJSON struct {
	ID             int64      `json:"id"`
	URL            string     `json:"url"`
	Description    string     `json:"description"`
	Events         []string   `json:"events"`
	Enabled        bool       `json:"enabled"`
	DisabledReason string     `json:"disabled_reason"` // why Keysmith switched it off; "" otherwise
	SecretHint     string     `json:"secret_hint"`
	FailingSince   *time.Time `json:"failing_since"`
	LastDeliveryAt *time.Time `json:"last_delivery_at"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	Secret         string     `json:"secret,omitempty"`
}

func webhookToJSON(e models.WebhookEndpoint) webhookEndpointJSON {
	evs := e.EventList()
	if evs == nil {
		evs = []string{}
	}
	return webhookEndpointJSON{
		ID: e.ID, URL: e.URL, Description: e.Description, Events: evs, Enabled: e.Enabled,
		DisabledReason: e.DisabledReason, SecretHint: e.SecretHint, FailingSince: e.FailingSince,
		LastDeliveryAt: e.LastDeliveryAt, CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt,
	}
}

// apiWebhookError answers a webhooks domain error in SPEC §6's shape;
// validation errors read as the keys' do.
func apiWebhookError(c echo.Context, err error) error {
	switch {
	case errors.Is(err, webhooks.ErrNotFound):
		return apiFail(c, http.StatusNotFound, errInvalidRequest, "resource_missing", "No such webhook endpoint.")
	case errors.Is(err, webhooks.ErrForbidden):
		return apiFail(c, http.StatusForbidden, errPermission, "insufficient_scope", "Managing webhook endpoints needs keys:write.")
	}
	return apiKeyError(c, err)
}

// apiListWebhooks is GET /v1/webhook-endpoints: every endpoint of the
// workspace, oldest first, never a secret.
func (h *Handlers) apiListWebhooks(c echo.Context) error {
	es, err := h.Webhooks.List(c.Request().Context(), apiKeyOf(c).WorkspaceID)
	if err != nil {
		return err
	}
	data := make([]webhookEndpointJSON, 0, len(es))
	for _, e := range es {
		data = append(data, webhookToJSON(e))
	}
	return c.JSON(http.StatusOK, map[string]any{"data": data})
}

type createWebhookRequest struct {
	URL         string   `json:"url"`
	Description string   `json:"description"`
	Events      []string `json:"events"`
	Enabled     *bool    `json:"enabled"` // omitted: on
}

// apiCreateWebhook is POST /v1/webhook-endpoints; the answer holds the
// signing secret, once.
func (h *Handlers) apiCreateWebhook(c echo.Context) error {
	var req createWebhookRequest
	if ok, err := decodeJSON(c, &req, `{"url":"https://ci.example.com/hooks/keysmith","events":["key.revoked","key.leaked"]}`); !ok {
		return err
	}
	in := webhooks.EndpointInput{URL: req.URL, Description: req.Description, Events: req.Events, Enabled: req.Enabled == nil || *req.Enabled}
	created, err := h.Webhooks.Create(c.Request().Context(), apiKeyOf(c).WorkspaceID, h.apiActor(c), in)
	if err != nil {
		return apiWebhookError(c, err)
	}
	out := webhookToJSON(created.Endpoint)
	out.Secret = created.Secret
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusCreated, out)
}

// apiDeleteWebhook is DELETE /v1/webhook-endpoints/{id}: 200 with the
// endpoint as it was, as DELETE /v1/keys/{id} answers the revoked key.
func (h *Handlers) apiDeleteWebhook(c echo.Context) error {
	ctx, ws, id := c.Request().Context(), apiKeyOf(c).WorkspaceID, pathID(c, "id")
	e, err := h.Webhooks.Get(ctx, ws, id)
	if err == nil {
		err = h.Webhooks.Delete(ctx, ws, h.apiActor(c), id)
	}
	if err != nil {
		return apiWebhookError(c, err)
	}
	return c.JSON(http.StatusOK, webhookToJSON(e))
}
