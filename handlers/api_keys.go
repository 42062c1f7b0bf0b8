package handlers

import (
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"keysmith/keys"
	"keysmith/models"
	"keysmith/validate"
)

// keyJSON is a key as the API shows it. Secret is set only in the answer
// that created or rotated the key.
type keyJSON struct {
	ID          int64      `json:"id"`
	Name        string     `json:"name"`
	Description string     `json:"description"`
	Kind        string     `json:"kind"`
	Environment string     `json:"environment"`
	Permission  string     `json:"permission"`
	Scopes      []string   `json:"scopes"`
	Hint        string     `json:"hint"`
	Status      string     `json:"status"`
	RateLimit   int        `json:"rate_limit"`
	HourlyQuota *int       `json:"hourly_quota"` // null: none
	DailyQuota  *int       `json:"daily_quota"`  // null: none
	AllowedIPs  []string   `json:"allowed_ips"`  // []: anywhere
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   *time.Time `json:"expires_at"`
	LastUsedAt  *time.Time `json:"last_used_at"`
	RevokedAt   *time.Time `json:"revoked_at"`
	Replaces    *int64     `json:"replaces"`
	ReplacedBy  *int64     `json:"replaced_by"`
	Secret      string     `json:"secret,omitempty"`
}

func toJSON(k models.APIKey, now time.Time) keyJSON {
	return keyJSON{
		ID: k.ID, Name: k.Name, Description: k.Description, Kind: k.Kind, Environment: k.Environment,
		Permission: k.Permission, Scopes: k.ScopeList(), Hint: k.Hint, Status: string(keys.StatusOf(k, now)),
		RateLimit: keys.LimitFor(k.Kind, k.RateLimit), HourlyQuota: k.HourlyQuota, DailyQuota: k.DailyQuota,
		AllowedIPs: keys.AllowedIPList(k.AllowedIPs), CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt,
		LastUsedAt: k.LastUsedAt, RevokedAt: k.RevokedAt, Replaces: k.ReplacesID, ReplacedBy: k.RotatedToID,
	}
}

// apiKeyError answers a keys domain error in SPEC §6's shape.
func apiKeyError(c echo.Context, err error) error {
	var ve validate.Errors
	var fe *keys.ForbiddenError
	switch {
	case errors.As(err, &ve):
		fields := make([]string, 0, len(ve))
		for f := range ve {
			fields = append(fields, f)
		}
		sort.Strings(fields)
		parts := make([]string, 0, len(fields))
		for _, f := range fields {
			parts = append(parts, f+": "+ve[f])
		}
		return apiFail(c, http.StatusUnprocessableEntity, errInvalidRequest, "validation_failed", strings.Join(parts, " "))
	case errors.As(err, &fe):
		return apiFail(c, http.StatusForbidden, errPermission, "insufficient_scope", capitalize(fe.Reason)+".")
	case errors.Is(err, keys.ErrWrongEnvironment):
		return apiFail(c, http.StatusForbidden, errPermission, "wrong_environment", "A "+string(apiKeyOf(c).Env)+" key can act only on "+string(apiKeyOf(c).Env)+" keys.")
	case errors.Is(err, keys.ErrNotFound):
		return apiFail(c, http.StatusNotFound, errInvalidRequest, "resource_missing", "No such key.")
	case errors.Is(err, keys.ErrNotActive):
		return apiFail(c, http.StatusUnprocessableEntity, errInvalidRequest, "key_not_active", "The key is already rotated, revoked or expired.")
	}
	return err
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func (h *Handlers) apiActor(c echo.Context) keys.Actor {
	return keys.KeyActor(*apiKeyOf(c), c.RealIP(), c.Request().UserAgent())
}

// apiListKeys is GET /v1/keys: this environment's keys, newest first.
func (h *Handlers) apiListKeys(c echo.Context) error {
	k := apiKeyOf(c)
	filter := keys.Filter(c.QueryParam("status"))
	if !filter.Valid() {
		return apiFail(c, http.StatusBadRequest, errInvalidRequest, "invalid_status", "status must be one of active, expiring, expired, revoked, unused, or empty.")
	}
	page, _ := strconv.Atoi(c.QueryParam("page"))
	perPage, err := strconv.Atoi(c.QueryParam("per_page"))
	if err != nil || perPage < 1 {
		perPage = 25
	}
	perPage = min(perPage, 100) // as the OpenAPI document says
	p, err := h.Keys.List(c.Request().Context(), k.WorkspaceID, keys.ListOptions{Filter: filter, Env: k.Env, Page: page, PerPage: perPage})
	if err != nil {
		return err
	}
	data := make([]keyJSON, 0, len(p.Keys))
	for _, key := range p.Keys {
		data = append(data, toJSON(key, p.Now))
	}
	out := map[string]any{"data": data, "page": p.Page, "per_page": p.PerPage, "total": p.Total.N, "has_more": p.HasMore}
	if p.Total.Capped {
		out["total_capped"] = true // the time-dependent filters stop counting at keys.CountCap
	}
	return c.JSON(http.StatusOK, out)
}

type createKeyRequest struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Kind        string   `json:"kind"`
	Environment string   `json:"environment"`
	Permission  string   `json:"permission"`
	Scopes      []string `json:"scopes"`
	ExpiresIn   string   `json:"expires_in"`
	ExpiresOn   string   `json:"expires_on"`
	AllowedIPs  []string `json:"allowed_ips"`
}

// apiCreateKey is POST /v1/keys; the answer holds the secret, once.
func (h *Handlers) apiCreateKey(c echo.Context) error {
	var req createKeyRequest
	if ok, err := decodeJSON(c, &req, `{"name":"deploy","permission":"read"}`); !ok {
		return err
	}
	k := apiKeyOf(c)
	in := keys.CreateInput{
		Name: req.Name, Description: req.Description, Kind: keys.Kind(req.Kind), Env: keys.Env(req.Environment),
		Permission: keys.Permission(req.Permission), Scopes: req.Scopes, ExpiresIn: req.ExpiresIn, ExpiresOn: req.ExpiresOn,
		AllowedIPs: req.AllowedIPs,
	}
	if in.Kind == "" {
		in.Kind = keys.Secret
	}
	if in.Env == "" {
		in.Env = k.Env
	}
	if in.Permission == "" && len(in.Scopes) > 0 {
		in.Permission = keys.PermCustom
	}
	created, err := h.Keys.Create(c.Request().Context(), k.WorkspaceID, h.apiActor(c), in)
	if err != nil {
		return apiKeyError(c, err)
	}
	return h.apiSecret(c, created)
}

// apiSecret is the one kind of API answer that carries a secret: 201,
// never cached.
func (h *Handlers) apiSecret(c echo.Context, created keys.Created) error {
	out := toJSON(created.Key, h.Clock.Now())
	out.Secret = created.Secret
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusCreated, out)
}

// apiGetKey is GET /v1/keys/{id}: reading needs no more than keys:read, but
// still only within the calling key's environment.
func (h *Handlers) apiGetKey(c echo.Context) error {
	k := apiKeyOf(c)
	key, err := h.Keys.Get(c.Request().Context(), k.WorkspaceID, pathID(c, "id"))
	if err == nil && keys.Env(key.Environment) != k.Env {
		err = keys.ErrWrongEnvironment
	}
	if err != nil {
		return apiKeyError(c, err)
	}
	return c.JSON(http.StatusOK, toJSON(key, h.Clock.Now()))
}

// apiRotateKey is POST /v1/keys/{id}/rotate with {"grace_period":"24h"}.
func (h *Handlers) apiRotateKey(c echo.Context) error {
	var req struct {
		GracePeriod string `json:"grace_period"`
	}
	if ok, err := decodeJSON(c, &req, `{"grace_period":"24h"}`); !ok {
		return err
	}
	grace, err := time.ParseDuration(req.GracePeriod)
	if req.GracePeriod == "" {
		grace, err = 0, nil
	}
	if err != nil {
		return apiFail(c, http.StatusUnprocessableEntity, errInvalidRequest, "validation_failed", "grace_period: use 0s, 1h, 24h, 72h or 168h.")
	}
	// The domain checks the key's workspace, environment and scopes.
	created, err := h.Keys.Rotate(c.Request().Context(), apiKeyOf(c).WorkspaceID, h.apiActor(c), pathID(c, "id"), grace)
	if err != nil {
		return apiKeyError(c, err)
	}
	return h.apiSecret(c, created)
}

// apiUpdateKey is PATCH /v1/keys/{id}: the fields present change, the rest
// stay. name, description and allowed_ips (null or []: anywhere) need what
// renaming in the dashboard needs; rate_limit, hourly_quota and
// daily_quota (null: the default, or none) an admin key. One transaction:
// all change, or none.
func (h *Handlers) apiUpdateKey(c echo.Context) error {
	const example = `{"name":"uploader","rate_limit":500,"daily_quota":null,"allowed_ips":["203.0.113.7","10.0.0.0/8"]}`
	var raw map[string]json.RawMessage
	if ok, err := decodeJSON(c, &raw, example); !ok {
		return err
	}
	var in keys.UpdateInput
	for field, v := range raw {
		var err error
		switch field {
		case "name":
			in.Name.Set, err = true, json.Unmarshal(v, &in.Name.Value)
		case "description":
			in.Description.Set, err = true, json.Unmarshal(v, &in.Description.Value)
		case "rate_limit":
			in.RateLimit.Set, err = true, json.Unmarshal(v, &in.RateLimit.Value)
		case "hourly_quota":
			in.HourlyQuota.Set, err = true, json.Unmarshal(v, &in.HourlyQuota.Value)
		case "daily_quota":
			in.DailyQuota.Set, err = true, json.Unmarshal(v, &in.DailyQuota.Value)
		case "allowed_ips":
			in.AllowedIPs.Set, err = true, json.Unmarshal(v, &in.AllowedIPs.Value)
		default:
			return apiFail(c, http.StatusBadRequest, errInvalidRequest, "invalid_body",
				"Unknown field "+strconv.Quote(field)+": send name, description, rate_limit, hourly_quota, daily_quota or allowed_ips, like "+example+".")
		}
		if err != nil {
			return apiFail(c, http.StatusBadRequest, errInvalidRequest, "invalid_body",
				strconv.Quote(field)+" has the wrong type: names are strings, limits whole numbers or null, allowed_ips a list of strings. Send JSON like "+example+".")
		}
	}
	updated, err := h.Keys.Update(c.Request().Context(), apiKeyOf(c).WorkspaceID, h.apiActor(c), pathID(c, "id"), in)
	if err != nil {
		return apiKeyError(c, err)
	}
	return c.JSON(http.StatusOK, toJSON(updated, h.Clock.Now()))
}

// apiSetDisabled is POST /v1/keys/{id}/disable and /enable: idempotent,
// it answers the key as it now is.
func (h *Handlers) apiSetDisabled(disabled bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		ws, id := apiKeyOf(c).WorkspaceID, pathID(c, "id")
		k, err := h.Keys.SetDisabled(c.Request().Context(), ws, h.apiActor(c), id, disabled)
		if errors.Is(err, keys.ErrAlreadyThat) {
			k, err = h.Keys.Get(c.Request().Context(), ws, id)
		}
		if err != nil {
			return apiKeyError(c, err)
		}
		return c.JSON(http.StatusOK, toJSON(k, h.Clock.Now()))
	}
}

// apiRevokeKey is DELETE /v1/keys/{id}.
func (h *Handlers) apiRevokeKey(c echo.Context) error {
	revoked, err := h.Keys.Revoke(c.Request().Context(), apiKeyOf(c).WorkspaceID, h.apiActor(c), pathID(c, "id"))
	if err != nil {
		return apiKeyError(c, err)
	}
	return c.JSON(http.StatusOK, toJSON(revoked, h.Clock.Now()))
}
