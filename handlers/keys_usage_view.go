package handlers

import (
	"fmt"
	"time"

	"github.com/labstack/echo/v4"

	"keysmith/keys"
	"keysmith/models"
	"keysmith/views"
)

// sparkDays is how many days a list row's sparkline shows.
const sparkDays = 14

// usageView is the key page's usage card: the last 7 days by hour
// (?usage=7d, the default) or 30 days by day (?usage=30d). A key in a
// rotating pair (the old key still worked during the period) is shown
// with its partner, old key first, one layer each, so the user sees
// traffic move to the new key.
func (h *Handlers) usageView(c echo.Context, k models.APIKey, now time.Time) (views.UsageView, error) {
	base := fmt.Sprintf("/settings/api-keys/%d", k.ID)
	v := views.UsageView{Daily: c.QueryParam("usage") == "30d", HourURL: base + "?usage=7d#usage", DayURL: base + "?usage=30d#usage"}
	r := keys.LastUsage(keys.ByHour, 7*24, now)
	v.Title, v.Unit = "Requests per hour, last 7 days", "hour"
	label := func(t time.Time) string { return t.Format("2 Jan 15:04") }
	if v.Daily {
		r = keys.LastUsage(keys.ByDay, 30, now)
		v.Title, v.Unit = "Requests per day, last 30 days", "day"
		label = func(t time.Time) string { return t.Format("2 Jan") }
	}
	old, fresh := rotatingPair(k, r.From)
	ids := []int64{k.ID}
	if old != nil {
		ids = []int64{old.ID, fresh.ID}
	}
	usage, err := h.Keys.Usage(c.Request().Context(), r, ids...)
	if err != nil {
		return v, err
	}
	for _, p := range usage[ids[0]] {
		v.Labels = append(v.Labels, label(p.Start))
	}
	if old == nil {
		pts := usage[k.ID]
		layer := func(name, class string, f func(keys.UsagePoint) int64) views.Series {
			s := views.Series{Name: name, Class: class, Values: make([]int64, len(pts))}
			for i, p := range pts {
				s.Values[i] = f(p)
			}
			return s
		}
		v.Series = []views.Series{
			layer("Success", "success", func(p keys.UsagePoint) int64 { return p.Success }),
			layer("Rate limited", "rate-limited", func(p keys.UsagePoint) int64 { return p.RateLimited }),
			layer("Forbidden", "forbidden", func(p keys.UsagePoint) int64 { return p.Forbidden }),
			layer("Other refusals", "other", func(p keys.UsagePoint) int64 { return p.Other }),
		}
		v.Totals = []views.UsageTotal{usageTotal("", pts)}
		return v, nil
	}
	v.Pair = true
	for i, key := range []*models.APIKey{old, fresh} {
		pts := usage[key.ID]
		name := fmt.Sprintf("Old key %s", key.Hint)
		class := "old-key"
		if i == 1 {
			name, class = fmt.Sprintf("New key %s", key.Hint), "new-key"
		}
		s := views.Series{Name: name, Class: class, Values: make([]int64, len(pts))}
		for j, p := range pts {
			s.Values[j] = p.Requests
		}
		v.Series = append(v.Series, s)
		v.Totals = append(v.Totals, usageTotal(name, pts))
	}
	return v, nil
}

// rotatingPair is the old and new key of k's rotation, when the old key
// still worked after from (its grace period falls in the chart's period),
// else nil, nil.
func rotatingPair(k models.APIKey, from time.Time) (old, fresh *models.APIKey) {
	switch {
	case k.RotatedTo != nil && k.ExpiresAt != nil && k.ExpiresAt.After(from):
		return &k, k.RotatedTo
	case k.Replaces != nil && k.Replaces.ExpiresAt != nil && k.Replaces.ExpiresAt.After(from):
		return k.Replaces, &k
	}
	return nil, nil
}

func usageTotal(name string, pts []keys.UsagePoint) views.UsageTotal {
	t := views.UsageTotal{Key: name}
	for _, p := range pts {
		t.Requests += p.Requests
		t.Success += p.Success
		t.RateLimited += p.RateLimited
		t.Forbidden += p.Forbidden
		t.Other += p.Other
	}
	return t
}
