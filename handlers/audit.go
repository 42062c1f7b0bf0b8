package handlers

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"keysmith/keys"
	"keysmith/teams"
	"keysmith/views"
)

const auditPerPage = 50

// auditActions are the actions the filter offers, in the order they appear
// in a key's and a team's life.
var auditActions = []string{
	keys.ActionCreated, keys.ActionRenamed, keys.ActionRotated, keys.ActionRevoked, keys.ActionLimited,
	teams.ActionInvited, teams.ActionReinvited, teams.ActionUninvited, teams.ActionJoined, teams.ActionRoleChanged,
	teams.ActionRemoved, teams.ActionLeft, teams.ActionOwnerMoved, teams.ActionRenamed, teams.ActionKeyPolicy,
}

// auditFilter reads the filter form; dates are whole UTC days, "to" included.
func auditFilter(c echo.Context) (keys.AuditFilter, views.AuditFilterView) {
	fv := views.AuditFilterView{Actor: c.QueryParam("actor"), Action: c.QueryParam("action"), From: c.QueryParam("from"), To: c.QueryParam("to")}
	f := keys.AuditFilter{Actor: fv.Actor}
	for _, a := range auditActions {
		if a == fv.Action {
			f.Action = a
		}
	}
	if d, err := time.Parse(time.DateOnly, fv.From); err == nil {
		f.From = &d
	}
	if d, err := time.Parse(time.DateOnly, fv.To); err == nil {
		end := d.Add(24 * time.Hour)
		f.To = &end
	}
	fv.Actions = auditActions
	q := url.Values{}
	for k, v := range map[string]string{"actor": fv.Actor, "action": f.Action, "from": fv.From, "to": fv.To} {
		if v != "" {
			q.Set(k, v)
		}
	}
	fv.Query = q.Encode()
	return f, fv
}

func (h *Handlers) auditLog(c echo.Context) error {
	v := currentViewer(c)
	if !v.Current.Role.IsAdmin() {
		return h.app(c, http.StatusForbidden, "audit-log", "Audit log", views.AuditAdminsOnly())
	}
	f, fv := auditFilter(c)
	page, _ := strconv.Atoi(c.QueryParam("page"))
	p, err := h.Keys.Audit(c.Request().Context(), v.Current.WorkspaceID, f, page, auditPerPage)
	if err != nil {
		return err
	}
	pages := int((p.Total + auditPerPage - 1) / auditPerPage)
	view := views.AuditView{Rows: auditRows(p.Events, h.Clock.Now()), Page: p.Page, Pages: max(pages, 1), Total: p.Total, Filter: fv}
	return h.app(c, http.StatusOK, "audit-log", "Audit log", views.AuditPage(view))
}

// auditExport downloads the filtered events as CSV or JSON (admins only).
func (h *Handlers) auditExport(format string) echo.HandlerFunc {
	return func(c echo.Context) error {
		v := currentViewer(c)
		if !v.Current.Role.IsAdmin() {
			return echo.NewHTTPError(http.StatusForbidden, "Only owners and admins can export the audit log.")
		}
		f, _ := auditFilter(c)
		events, err := h.Keys.AuditExport(c.Request().Context(), v.Current.WorkspaceID, f)
		if err != nil {
			return err
		}
		name := fmt.Sprintf("keysmith-audit-%d-%s.%s", v.Current.WorkspaceID, h.Clock.Now().Format("20060102-150405"), format)
		c.Response().Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
		type row struct {
			ID     int64     `json:"id"`
			Time   time.Time `json:"time"`
			Actor  string    `json:"actor"`
			Action string    `json:"action"`
			Key    *int64    `json:"key_id"`
			Target string    `json:"target"`
			Detail string    `json:"detail"`
			IP     string    `json:"ip"`
			Agent  string    `json:"user_agent"`
		}
		rows := make([]row, 0, len(events))
		for _, e := range events {
			rows = append(rows, row{e.ID, e.CreatedAt.UTC(), e.ActorLabel, e.Action, e.KeyID, e.KeyLabel, e.Detail, e.IP, e.UserAgent})
		}
		if format == "json" {
			return c.JSON(http.StatusOK, rows)
		}
		c.Response().Header().Set(echo.HeaderContentType, "text/csv; charset=utf-8")
		c.Response().WriteHeader(http.StatusOK)
		w := csv.NewWriter(c.Response())
		_ = w.Write([]string{"id", "time", "actor", "action", "key_id", "target", "detail", "ip", "user_agent"})
		for _, r := range rows {
			keyID := ""
			if r.Key != nil {
				keyID = strconv.FormatInt(*r.Key, 10)
			}
			_ = w.Write([]string{strconv.FormatInt(r.ID, 10), r.Time.Format(time.RFC3339), csvSafe(r.Actor), r.Action, keyID, csvSafe(r.Target), csvSafe(r.Detail), r.IP, csvSafe(r.Agent)})
		}
		w.Flush()
		return w.Error()
	}
}

// csvSafe defuses spreadsheet formulas: a cell a person typed (a key name)
// must not run as one when the export is opened.
func csvSafe(s string) string {
	if s != "" && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@') {
		return "'" + s
	}
	return s
}
