package handlers

import (
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"keysmith/keys"
)

// usagePointJSON is one bucket of GET /v1/keys/{id}/usage.
type usagePointJSON struct {
	Start       time.Time `json:"start"`
	Requests    int64     `json:"requests"`
	Success     int64     `json:"success"`
	RateLimited int64     `json:"rate_limited"`
	Forbidden   int64     `json:"forbidden"`
	Other       int64     `json:"other"`
}

// apiKeyUsage is GET /v1/keys/{id}/usage?granularity=hour|day&from=&to=:
// the key's requests per bucket by outcome, every bucket of the range
// listed (zeros too), oldest first. Who may read the key may read its
// usage: keys:read, the calling key's environment.
func (h *Handlers) apiKeyUsage(c echo.Context) error {
	k := apiKeyOf(c)
	key, err := h.Keys.Get(c.Request().Context(), k.WorkspaceID, pathID(c, "id"))
	if err == nil && keys.Env(key.Environment) != k.Env {
		err = keys.ErrWrongEnvironment
	}
	if err != nil {
		return apiKeyError(c, err)
	}
	r, msg := usageRange(c.QueryParam("granularity"), c.QueryParam("from"), c.QueryParam("to"), h.Clock.Now())
	if msg != "" {
		return apiFail(c, http.StatusBadRequest, errInvalidRequest, "invalid_usage_range", msg)
	}
	usage, err := h.Keys.Usage(c.Request().Context(), r, key.ID)
	if err != nil {
		return err
	}
	data := make([]usagePointJSON, 0, r.Buckets())
	for _, p := range usage[key.ID] {
		data = append(data, usagePointJSON(p))
	}
	return c.JSON(http.StatusOK, map[string]any{"data": data, "granularity": r.Granularity,
		"from": r.From, "to": r.To})
}

// usageRange reads a usage report's query: granularity hour (the default)
// or day; from and to as RFC 3339 times or YYYY-MM-DD dates (UTC), from
// rounded down and to up to whole buckets. to defaults to the end of the
// current bucket, from to 7 days (hourly) or 30 days (daily) before to.
func usageRange(granularity, from, to string, now time.Time) (keys.UsageRange, string) {
	g := keys.Granularity(granularity)
	switch g {
	case "":
		g = keys.ByHour
	case keys.ByHour, keys.ByDay:
	default:
		return keys.UsageRange{}, "granularity must be hour or day."
	}
	step := g.Step()
	span := map[keys.Granularity]int{keys.ByHour: 7 * 24, keys.ByDay: 30}[g]
	r := keys.LastUsage(g, span, now)
	parse := func(name, v string) (time.Time, string) {
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			return t.UTC(), ""
		}
		if t, err := time.Parse(time.DateOnly, v); err == nil {
			return t, ""
		}
		return time.Time{}, name + " must be an RFC 3339 time (2026-03-01T00:00:00Z) or a date (2026-03-01)."
	}
	if to != "" {
		t, msg := parse("to", to)
		if msg != "" {
			return r, msg
		}
		if end := t.Truncate(step); end.Equal(t) {
			r.To = end
		} else {
			r.To = end.Add(step)
		}
		r.From = r.To.Add(-time.Duration(span) * step)
	}
	if from != "" {
		t, msg := parse("from", from)
		if msg != "" {
			return r, msg
		}
		r.From = t.Truncate(step)
	}
	switch n := r.Buckets(); {
	case !r.From.Before(r.To):
		return r, "from must come before to."
	case n > keys.MaxUsageBuckets[g]:
		return r, "Ask for at most " + strconv.Itoa(keys.MaxUsageBuckets[g]) + " " + string(g) + "s at once."
	}
	return r, ""
}
