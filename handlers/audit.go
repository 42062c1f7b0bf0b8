package handlers

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"keysmith/accounts"
	"keysmith/identity"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/oauth"
	"keysmith/teams"
	"keysmith/views"
	"keysmith/webhooks"
)

const auditPerPage = 50

// auditActions are the actions the filter offers, in the order they appear
// in a key's and a team's life.
var auditActions = []string{
	keys.ActionCreated, keys.ActionRenamed, keys.ActionRotated, keys.ActionRevoked, keys.ActionLimited, keys.ActionIPs, keys.ActionDisabled, keys.ActionEnabled, keys.ActionTokenIssued, keys.ActionLeaked,
	teams.ActionInvited, teams.ActionReinvited, teams.ActionUninvited, teams.ActionJoined, teams.ActionRoleChanged,
	teams.ActionRemoved, teams.ActionLeft, teams.ActionOwnerMoved, teams.ActionRenamed, teams.ActionKeyPolicy, keys.ActionInactivityPolicy,
	teams.ActionTwoFactorRequired, teams.ActionTwoFactorNotRequired,
	webhooks.ActionCreated, webhooks.ActionUpdated, webhooks.ActionSecretRotated, webhooks.ActionAutoDisabled, webhooks.ActionDeleted,
	oauth.ActionAppCreated, oauth.ActionSecretRotated, oauth.ActionAppRevoked, oauth.ActionConsented, oauth.ActionTokenIssued,
	oauth.ActionGrantRevoked, oauth.ActionTokenRevoked, oauth.ActionReuseDetected,
	accounts.ActionTwoFactorEnabled, accounts.ActionTwoFactorDisabled, accounts.ActionTwoFactorReset, accounts.ActionRecoveryRegenerated,
	accounts.ActionRecoveryCodeUsed, identity.ActionPasskeyAdded, identity.ActionPasskeyRemoved, identity.ActionPasskeyUsed,
	identity.ActionSSOLinked, identity.ActionSSOUnlinked,
	accounts.ActionPasswordChanged, accounts.ActionPasswordReset, accounts.ActionSessionEnded, accounts.ActionSudoFailed, accounts.ActionSudoConfirmed,
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
	if f.From != nil && f.To != nil && !f.From.Before(*f.To) {
		fv.Error = fmt.Sprintf("The From date (%s) is after the To date (%s): no event can match. Swap them, or clear one.", fv.From, fv.To)
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
	if fv.Error != "" {
		return h.app(c, http.StatusUnprocessableEntity, "audit-log", "Audit log", views.AuditPage(views.AuditView{Filter: fv}))
	}
	var at keys.Position
	if cur, ok := keys.ParseCursor(c.QueryParam("before")); ok {
		at.Before = &cur
	} else if cur, ok := keys.ParseCursor(c.QueryParam("after")); ok {
		at.After = &cur
	}
	p, err := h.Keys.Audit(c.Request().Context(), v.Current.WorkspaceID, f, at, auditPerPage)
	if err != nil {
		return err
	}
	view := views.AuditView{Rows: auditRows(p.Events, h.Clock.Now()), Filter: fv, Paged: at != keys.Position{}}
	if p.Newer != nil {
		view.Newer = p.Newer.String()
	}
	if p.Older != nil {
		view.Older = p.Older.String()
	}
	return h.app(c, http.StatusOK, "audit-log", "Audit log", views.AuditPage(view))
}

// auditExportRow is one event as the JSON export writes it.
type auditExportRow struct {
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

// auditExport downloads the filtered events as CSV or JSON (admins only),
// written as they are read, a batch at a time: a million events cost the
// server one batch of memory, and the download starts at once.
func (h *Handlers) auditExport(format string) echo.HandlerFunc {
	return func(c echo.Context) error {
		v := currentViewer(c)
		if !v.Current.Role.IsAdmin() {
			return echo.NewHTTPError(http.StatusForbidden, "Only owners and admins can export the audit log.")
		}
		f, fv := auditFilter(c)
		if fv.Error != "" {
			return echo.NewHTTPError(http.StatusUnprocessableEntity, fv.Error)
		}
		name := fmt.Sprintf("keysmith-audit-%d-%s.%s", v.Current.WorkspaceID, h.Clock.Now().Format("20060102-150405"), format)
		res := c.Response()
		res.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
		ctx := c.Request().Context()
		if format == "json" {
			// No WriteHeader: the first write sends 200, so a first query
			// that fails still answers 500.
			res.Header().Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
			sep := "["
			err := h.Keys.AuditEach(ctx, v.Current.WorkspaceID, f, func(events []models.AuditEvent) error {
				buf := make([]byte, 0, 256*len(events))
				for _, e := range events {
					b, err := json.Marshal(auditExportRow{e.ID, e.CreatedAt.UTC(), e.ActorLabel, e.Action, e.KeyID, e.KeyLabel, e.Detail, e.IP, e.UserAgent})
					if err != nil {
						return err
					}
					buf = append(append(append(buf, sep...), '\n'), b...)
					sep = ","
				}
				if _, err := res.Write(buf); err != nil {
					return err
				}
				flush(res)
				return nil
			})
			if err != nil {
				return err
			}
			if sep == "[" {
				_, err = res.Write([]byte("[]\n"))
			} else {
				_, err = res.Write([]byte("\n]\n"))
			}
			return err
		}
		res.Header().Set(echo.HeaderContentType, "text/csv; charset=utf-8")
		w := csv.NewWriter(res)
		_ = w.Write([]string{"id", "time", "actor", "action", "key_id", "target", "detail", "ip", "user_agent"})
		err := h.Keys.AuditEach(ctx, v.Current.WorkspaceID, f, func(events []models.AuditEvent) error {
			for _, e := range events {
				keyID := ""
				if e.KeyID != nil {
					keyID = strconv.FormatInt(*e.KeyID, 10)
				}
				_ = w.Write([]string{strconv.FormatInt(e.ID, 10), e.CreatedAt.UTC().Format(time.RFC3339), csvSafe(e.ActorLabel), e.Action, keyID, csvSafe(e.KeyLabel), csvSafe(e.Detail), e.IP, csvSafe(e.UserAgent)})
			}
			w.Flush()
			flush(res)
			return w.Error()
		})
		if err != nil {
			return err
		}
		w.Flush()
		return w.Error()
	}
}

// flush sends what the response has buffered, where the writer can (echo's
// own Flush panics where it cannot).
func flush(res *echo.Response) {
	_ = http.NewResponseController(res.Writer).Flush()
}

// csvSafe defuses spreadsheet formulas: a cell a person typed (a key name)
// must not run as one when the export is opened.
func csvSafe(s string) string {
	if s != "" && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@') {
		return "'" + s
	}
	return s
}
