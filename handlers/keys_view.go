package handlers

import (
	"fmt"
	"strings"
	"time"

	"keysmith/keys"
	"keysmith/models"
	"keysmith/views"
)

// keyRowIn is keyRow for a workspace whose current members are given: a
// key whose creator is no longer among them is flagged.
func keyRowIn(k models.APIKey, now time.Time, actor keys.Actor, members map[int64]bool) views.KeyRow {
	r := keyRow(k, now, actor)
	r.FormerMember = k.CreatedByID != nil && !members[*k.CreatedByID]
	return r
}

// keyRow turns a key into what the list and detail pages show.
func keyRow(k models.APIKey, now time.Time, actor keys.Actor) views.KeyRow {
	status := keys.StatusOf(k, now)
	r := views.KeyRow{
		ID:           k.ID,
		Name:         k.Name,
		Description:  k.Description,
		Hint:         k.Hint,
		Kind:         keys.Kind(k.Kind).Label(),
		Env:          k.Environment,
		Permission:   permissionLabel(k.Permission),
		Scopes:       k.ScopeList(),
		CreatedBy:    "the API",
		Created:      views.Relative(k.CreatedAt, now),
		CreatedExact: views.Exact(k.CreatedAt),
		Expires:      "Never",
		Status:       string(status),
		StatusLabel:  status.Label(),
		CanManage:    actor.CanManage(k),
		CanLimit:     actor.Admin,
		Dead:         status.Dead(),
		Disabled:     status == keys.StatusDisabled,
		RateLimit:    keys.LimitFor(k.Kind, k.RateLimit),
		RateDefault:  k.RateLimit == nil,
		AllowedIPs:   strings.Fields(k.AllowedIPs),
	}
	if k.RateLimit != nil {
		r.RateLimitInput = fmt.Sprint(*k.RateLimit)
	}
	if k.HourlyQuota != nil {
		r.HourlyQuota, r.HourlyInput = *k.HourlyQuota, fmt.Sprint(*k.HourlyQuota)
	}
	if k.DailyQuota != nil {
		r.DailyQuota, r.DailyInput = *k.DailyQuota, fmt.Sprint(*k.DailyQuota)
	}
	if k.CreatedBy != nil {
		r.CreatedBy = k.CreatedBy.DisplayName()
	}
	if k.LastUsedAt != nil {
		r.LastUsed = views.Relative(*k.LastUsedAt, now)
		r.LastUsedExact = views.Exact(*k.LastUsedAt)
		r.LastUsedIP, r.LastUsedAgent = k.LastUsedIP, k.LastUsedUserAgent
	}
	if k.ExpiresAt != nil {
		r.Expires = views.Date(*k.ExpiresAt)
		if status == keys.StatusRotating || status == keys.StatusExpiring {
			r.Expires = views.Relative(*k.ExpiresAt, now)
		}
		r.ExpiresExact = views.Exact(*k.ExpiresAt)
	}
	if k.RevokedAt != nil && k.ExpiresAt != nil && k.ExpiresAt.After(*k.RevokedAt) {
		// Revoked before it expired: it will never expire, it has stopped.
		r.Expires, r.ExpiresExact = "—", "Revoked before it expired"
	}
	if k.RotatedTo != nil {
		r.ReplacedBy = &views.KeyLink{ID: k.RotatedTo.ID, Name: k.RotatedTo.Name, Hint: k.RotatedTo.Hint}
	}
	if k.Replaces != nil {
		r.Replaces = &views.KeyLink{ID: k.Replaces.ID, Name: k.Replaces.Name, Hint: k.Replaces.Hint}
	}
	if k.RevokedAt != nil {
		r.RevokedBy = views.Exact(*k.RevokedAt)
		if k.RevokedBy != nil {
			r.RevokedBy = k.RevokedBy.DisplayName() + ", " + r.RevokedBy
		}
	}
	if k.DisabledAt != nil && k.RevokedAt == nil {
		r.DisabledBy = views.Exact(*k.DisabledAt)
		if k.DisabledBy != nil {
			r.DisabledBy = k.DisabledBy.DisplayName() + ", " + r.DisabledBy
		}
	}
	return r
}

func permissionLabel(p string) string {
	switch keys.Permission(p) {
	case keys.PermRead:
		return "Read"
	case keys.PermWrite:
		return "Write"
	case keys.PermAdmin:
		return "Admin"
	}
	return "Custom"
}

var filterLabels = map[keys.Filter]string{
	keys.FilterAll:      "All but revoked",
	keys.FilterActive:   "Active",
	keys.FilterExpiring: "Expiring soon",
	keys.FilterExpired:  "Expired",
	keys.FilterRevoked:  "Revoked",
	keys.FilterDisabled: "Disabled",
	keys.FilterUnused:   "Unused 30+ days",
}

func filterTabs(current keys.Filter, counts keys.Counts) []views.FilterTab {
	tabs := make([]views.FilterTab, 0, len(keys.Filters))
	for _, f := range keys.Filters {
		tabs = append(tabs, views.FilterTab{Value: string(f), Label: filterLabels[f], Count: countLabel(counts[f]), Current: f == current})
	}
	return tabs
}

// countLabel shows a key count with thousands separators, and a capped
// one as "1,000+".
func countLabel(n keys.Count) string {
	if n.Capped {
		return views.Thousands(n.N) + "+"
	}
	return views.Thousands(n.N)
}

// formView builds the create form for the actor, from in, within the
// workspace's key policy.
func (h *Handlers) formView(actor keys.Actor, ws models.Workspace, in keys.CreateInput, now time.Time) views.KeyFormView {
	cat := h.Keys.Catalog()
	checked := map[string]bool{}
	for _, s := range in.Scopes {
		checked[s] = true
	}
	f := views.KeyFormView{
		Title:       "Create API key",
		Intro:       "The secret is shown once, right after you create the key.",
		Name:        in.Name,
		Description: in.Description,
		Kinds: []views.Choice{
			{Value: "sk", Label: "Secret", Hint: "For servers. Can hold any scope.", Selected: in.Kind == keys.Secret},
			{Value: "pk", Label: "Publishable", Hint: "Safe in browsers and apps. Browser-safe read scopes only, lower rate limit.", Selected: in.Kind == keys.Publishable},
		},
		Envs: []views.Choice{
			{Value: "test", Label: "Test", Hint: "Only touches test data.", Selected: in.Env == keys.Test},
			{Value: "live", Label: "Live", Hint: "Touches real data.", Selected: in.Env == keys.Live},
		},
		ExpiresOn:  in.ExpiresOn,
		AllowedIPs: strings.Join(in.AllowedIPs, "\n"),
		MinDate:    now.Add(24 * time.Hour).Format("2006-01-02"),
	}
	canAdmin := keys.Covers(actor.Held, []string{"*"})
	f.Permissions = []views.Choice{
		{Value: "read", Label: "Read", Hint: "Read every resource.", Selected: in.Permission == keys.PermRead},
		{Value: "write", Label: "Write", Hint: "Read and change everything but keys and members.", Selected: in.Permission == keys.PermWrite},
		{Value: "admin", Label: "Admin", Hint: "Everything, including keys and members. Owners and admins only.", Selected: in.Permission == keys.PermAdmin, Disabled: !canAdmin},
		{Value: "custom", Label: "Custom", Hint: "Pick scopes below.", Selected: in.Permission == keys.PermCustom},
	}
	for _, r := range cat.Resources {
		g := views.ScopeGroup{Resource: r.Name, Description: r.Description}
		for _, a := range r.Actions {
			v := r.Name + ":" + a.Name
			g.Options = append(g.Options, views.ScopeOption{Value: v, Action: a.Name, Publishable: a.Publishable, Checked: checked[v],
				Routes: strings.Join(h.Keys.Routes().ScopeRoutes(v), ", ")})
		}
		f.Groups = append(f.Groups, g)
	}
	max := h.Keys.MaxLifetime(ws)
	if max == 0 {
		f.Expiries = append(f.Expiries, views.Choice{Value: "never", Label: "Never", Selected: in.ExpiresIn == "never"})
	} else {
		f.MaxDate = now.Add(max).Format("2006-01-02")
	}
	for _, d := range keys.ExpiryChoices {
		if max == 0 || time.Duration(d)*24*time.Hour <= max {
			v := fmt.Sprint(d)
			f.Expiries = append(f.Expiries, views.Choice{Value: v, Label: fmt.Sprintf("In %d days", d), Selected: in.ExpiresIn == v})
		}
	}
	f.Expiries = append(f.Expiries, views.Choice{Value: "custom", Label: "Custom date", Selected: in.ExpiresIn == "custom"})
	return f
}

func graceChoices() []views.Choice {
	out := make([]views.Choice, 0, len(keys.GracePeriods))
	for _, g := range keys.GracePeriods {
		label := "Stop at once"
		if g > 0 {
			label = "For " + views.Duration(g)
		}
		out = append(out, views.Choice{Value: g.String(), Label: label, Selected: g == 24*time.Hour})
	}
	return out
}

func auditRows(events []models.AuditEvent, now time.Time) []views.AuditRow {
	rows := make([]views.AuditRow, 0, len(events))
	for _, e := range events {
		r := views.AuditRow{
			When: views.Relative(e.CreatedAt, now), WhenExact: views.Exact(e.CreatedAt),
			Actor: e.ActorLabel, Action: e.Action, Key: e.KeyLabel, Detail: e.Detail, IP: e.IP,
		}
		if e.KeyID != nil {
			r.KeyID = *e.KeyID
		}
		rows = append(rows, r)
	}
	return rows
}
