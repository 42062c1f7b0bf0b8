package handlers

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"keysmith/keys"
	"keysmith/models"
	"keysmith/validate"
	"keysmith/views"
)

// keysPerPage is the key list's page size, unless the user picks another
// of views.PerPageChoices.
func keysPerPage(c echo.Context) int {
	n, _ := strconv.Atoi(c.QueryParam("per_page"))
	if slices.Contains(views.PerPageChoices, n) {
		return n
	}
	return views.PerPageChoices[0]
}

// keyActor is the logged-in member as the keys domain sees them.
func (h *Handlers) keyActor(c echo.Context) keys.Actor {
	v := currentViewer(c)
	return h.Keys.UserActor(v.User, v.Current.Role, c.RealIP(), c.Request().UserAgent())
}

// keyError maps a keys domain error to an HTTP error; nil if it is not one.
func keyError(err error) error {
	var fe *keys.ForbiddenError
	switch {
	case errors.Is(err, keys.ErrNotFound):
		return echo.NewHTTPError(http.StatusNotFound, "No such key in this workspace.")
	case errors.As(err, &fe):
		return echo.NewHTTPError(http.StatusForbidden, "You cannot do that: "+fe.Reason+".")
	}
	return err
}

func (h *Handlers) listKeys(c echo.Context) error {
	v := currentViewer(c)
	ctx := c.Request().Context()
	filter := keys.Filter(c.QueryParam("filter"))
	if !filter.Valid() {
		filter = keys.FilterAll
	}
	page, _ := strconv.Atoi(c.QueryParam("page"))
	creator, _ := strconv.ParseInt(c.QueryParam("creator"), 10, 64)
	var at keys.Position
	if cur, ok := keys.ParseCursor(c.QueryParam("before")); ok {
		at.Before = &cur
	} else if cur, ok := keys.ParseCursor(c.QueryParam("after")); ok {
		at.After = &cur
	}
	q := views.KeyListQuery{Creator: creator, Filter: string(filter), Search: strings.TrimSpace(c.QueryParam("q")), PerPage: keysPerPage(c)}
	if env := keys.Env(c.QueryParam("env")); env == keys.Live || env == keys.Test {
		q.Env = string(env)
	}
	if r := []rune(q.Search); len(r) > 200 { // longer than any name or hint
		q.Search = string(r[:200])
	}
	p, err := h.Keys.List(ctx, v.Current.WorkspaceID, keys.ListOptions{Filter: filter, CreatorID: creator, Env: keys.Env(q.Env), Search: q.Search,
		At: at, Page: page, PerPage: q.PerPage})
	if err != nil {
		return err
	}
	members, err := h.memberIDs(c)
	if err != nil {
		return err
	}
	actor := h.keyActor(c)
	view := views.KeysView{
		KeyListQuery: q, Workspace: v.Current.Workspace.Name, Tabs: filterTabs(filter, p.Counts),
		Page: p.Page, Pages: p.Pages(), Total: countLabel(p.Total), CanCreate: actor.CanCreate(),
	}
	if p.Newer != nil {
		view.Newer = p.Newer.String()
	}
	if p.Older != nil {
		view.Older = p.Older.String()
	}
	if v.Current.Role.IsAdmin() {
		if view.FailedDeliveries, err = h.Outbox.FailedCount(ctx, v.Current.WorkspaceID); err != nil {
			return err
		}
	}
	if creator != 0 {
		view.CreatorName = fmt.Sprintf("user %d", creator)
		if len(p.Keys) > 0 && p.Keys[0].CreatedBy != nil {
			view.CreatorName = p.Keys[0].CreatedBy.DisplayName()
		}
	}
	// Every row's 14 days of requests, in one query for the page's keys.
	ids := make([]int64, len(p.Keys))
	for i, k := range p.Keys {
		ids[i] = k.ID
	}
	totals, err := h.Keys.DailyTotals(ctx, sparkDays, p.Now, ids...)
	if err != nil {
		return err
	}
	// A key rotated away but still working shows under its successor, so
	// the pair reads together; not a second time where it was made.
	onPage := make(map[int64]bool, len(p.Keys))
	for _, k := range p.Keys {
		onPage[k.ID] = true
	}
	back := c.Request().URL.RequestURI() // where a row's Disable or Enable returns
	for _, k := range p.Keys {
		if k.RotatedToID != nil && onPage[*k.RotatedToID] && keys.StatusOf(k, p.Now) == keys.StatusRotating {
			continue
		}
		r := keyRowIn(k, p.Now, actor, members)
		r.Back = back
		spark := views.NewSparkline(totals[k.ID])
		r.Spark = &spark
		if old := k.Replaces; old != nil && keys.StatusOf(*old, p.Now) == keys.StatusRotating {
			g := keyRow(*old, p.Now, actor)
			g.Back = back
			g.ReplacedBy = &views.KeyLink{ID: k.ID, Name: k.Name, Hint: k.Hint}
			r.GraceKey = &g
		}
		view.Rows = append(view.Rows, r)
	}
	return h.app(c, http.StatusOK, "api-keys", "API Keys", views.KeysPage(view))
}

// memberIDs is the set of the current workspace's members, to flag keys
// created by people who have since left.
func (h *Handlers) memberIDs(c echo.Context) (map[int64]bool, error) {
	ms, err := h.Accounts.Members(c.Request().Context(), currentViewer(c).Current.WorkspaceID)
	if err != nil {
		return nil, err
	}
	ids := make(map[int64]bool, len(ms))
	for _, m := range ms {
		ids[m.UserID] = true
	}
	return ids, nil
}

// newKey shows the create form, pre-filled from another key with ?from=ID
// (the Duplicate action), whatever that key's status.
func (h *Handlers) newKey(c echo.Context) error {
	actor := h.keyActor(c)
	if !actor.CanCreate() {
		return echo.NewHTTPError(http.StatusForbidden, "Viewers cannot create keys. Ask a workspace admin for the editor role.")
	}
	ws := currentViewer(c).Current.Workspace
	in := keys.CreateInput{Kind: keys.Secret, Env: keys.Test, Permission: keys.PermRead, ExpiresIn: defaultExpiry(ws, h.Keys.MaxLifetime(ws))}
	title, intro := "Create API key", "The secret is shown once, right after you create the key."
	if from := c.QueryParam("from"); from != "" {
		id, _ := strconv.ParseInt(from, 10, 64)
		k, err := h.Keys.Get(c.Request().Context(), currentViewer(c).Current.WorkspaceID, id)
		if err != nil {
			return keyError(err)
		}
		in = duplicateInput(k)
		title = "Duplicate API key"
		intro = fmt.Sprintf("A new key with the settings of %s (%s). Check them, then create it: the new secret is shown once.", k.Name, k.Hint)
	}
	f := h.formView(actor, ws, in, h.Clock.Now())
	f.Title, f.Intro, f.Nonce = title, intro, rand.Text()
	return h.app(c, http.StatusOK, "api-keys", title, views.KeyFormPage(f))
}

// defaultExpiry preselects the workspace's default expiry (90 days when it
// has none), never beyond the maximum lifetime in force.
func defaultExpiry(ws models.Workspace, max time.Duration) string {
	want := 90
	if ws.DefaultExpiryDays != nil {
		want = *ws.DefaultExpiryDays
	}
	for _, d := range slices.Backward(keys.ExpiryChoices) {
		if d <= want && (max == 0 || time.Duration(d)*24*time.Hour <= max) {
			return fmt.Sprint(d)
		}
	}
	return "custom"
}

// copyName is the name Duplicate suggests: "name (copy)", within the
// names' length limit.
func copyName(name string) string {
	const suffix, limit = " (copy)", 100
	if r := []rune(name); len(r)+len([]rune(suffix)) > limit {
		name = string(r[:limit-len([]rune(suffix))])
	}
	return name + suffix
}

// duplicateInput copies a key's settings into a create form; its lifetime
// becomes the nearest offered choice that is not shorter.
func duplicateInput(k models.APIKey) keys.CreateInput {
	in := keys.CreateInput{
		Name: copyName(k.Name), Description: k.Description, Kind: keys.Kind(k.Kind), Env: keys.Env(k.Environment),
		Permission: keys.Permission(k.Permission), ExpiresIn: "never", AllowedIPs: strings.Fields(k.AllowedIPs),
	}
	if in.Permission == keys.PermCustom {
		in.Scopes = k.ScopeList()
	}
	if k.ExpiresAt != nil {
		days := int(k.ExpiresAt.Sub(k.CreatedAt).Hours()/24 + 0.5)
		in.ExpiresIn = "custom"
		for _, d := range keys.ExpiryChoices {
			if days <= d {
				in.ExpiresIn = fmt.Sprint(d)
				break
			}
		}
	}
	return in
}

func (h *Handlers) createKey(c echo.Context) error {
	v := currentViewer(c)
	ctx := c.Request().Context()
	actor := h.keyActor(c)
	nonce := c.FormValue("nonce")
	if h.formUsed(c, nonce) {
		h.flash(c, "info", "That key was already created, and its secret was shown once. Rotate it if you did not copy the secret.")
		return redirect(c, "/settings/api-keys")
	}
	form, _ := c.FormParams()
	in := keys.CreateInput{
		Name:        c.FormValue("name"),
		Description: c.FormValue("description"),
		Kind:        keys.Kind(c.FormValue("kind")),
		Env:         keys.Env(c.FormValue("environment")),
		Permission:  keys.Permission(c.FormValue("permission")),
		Scopes:      form["scopes"],
		ExpiresIn:   c.FormValue("expires_in"),
		ExpiresOn:   c.FormValue("expires_on"),
		AllowedIPs:  strings.Fields(c.FormValue("allowed_ips")),
	}
	if in.ExpiresIn != "custom" {
		in.ExpiresOn = "" // the date field counts only with "Custom date" chosen
	}
	created, err := h.Keys.Create(ctx, v.Current.WorkspaceID, actor, in)
	var ve validate.Errors
	var fe *keys.ForbiddenError
	if errors.As(err, &ve) || errors.As(err, &fe) {
		f := h.formView(actor, v.Current.Workspace, in, h.Clock.Now())
		f.Nonce = nonce
		status := http.StatusUnprocessableEntity
		if fe != nil {
			status, f.Error = http.StatusForbidden, "You cannot create this key: "+fe.Reason+"."
		} else {
			f.Errors = views.FieldErrors(ve)
		}
		return h.app(c, status, "api-keys", "Create API key", views.KeyFormPage(f))
	}
	if err != nil {
		return err
	}
	h.useForm(c, nonce)
	return h.showSecret(c, created, nil, time.Time{})
}

// showSecret renders the one response that carries a secret, and keeps it
// out of every cache.
func (h *Handlers) showSecret(c echo.Context, created keys.Created, old *models.APIKey, oldUntil time.Time) error {
	noStore(c)
	pushURL(c, fmt.Sprintf("/settings/api-keys/%d", created.Key.ID))
	now := h.Clock.Now()
	view := views.SecretView{Key: keyRow(created.Key, now, h.keyActor(c)), Secret: created.Secret}
	title := "API key created"
	if old != nil {
		title = "Key rotated"
		view.Rotated = true
		view.OldKey = &views.KeyLink{ID: old.ID, Name: old.Name, Hint: old.Hint}
		if oldUntil.After(now) {
			view.OldUntil = views.Exact(oldUntil) + " (" + views.Relative(oldUntil, now) + ")"
		}
	}
	return h.app(c, http.StatusCreated, "api-keys", title, views.SecretPage(view))
}

func (h *Handlers) showKey(c echo.Context) error {
	id := pathID(c, "id")
	return h.keyPage(c, http.StatusOK, id, nil, nil)
}

// keyPage renders a key's page; after a refused form, errs and the
// submitted values (edit) go back into it.
func (h *Handlers) keyPage(c echo.Context, status int, id int64, errs validate.Errors, edit func(*views.KeyDetailView)) error {
	k, err := h.Keys.Get(c.Request().Context(), currentViewer(c).Current.WorkspaceID, id)
	if err != nil {
		return keyError(err)
	}
	members, err := h.memberIDs(c)
	if err != nil {
		return err
	}
	actor := h.keyActor(c)
	now := h.Clock.Now()
	view := views.KeyDetailView{Row: keyRowIn(k, now, actor, members), Grace: graceChoices(), CanCreate: actor.CanCreate(),
		Errors: views.FieldErrors(errs), TokenLifetimes: tokenLifetimeChoices(0),
		AllowedIPsInput: strings.ReplaceAll(k.AllowedIPs, " ", "\n"), CurrentIP: c.RealIP()}
	if view.Usage, err = h.usageView(c, k, now); err != nil {
		return err
	}
	if edit != nil {
		edit(&view)
	}
	return h.app(c, status, "api-keys", k.Name, views.KeyDetailPage(view))
}

// keyRowFragment answers the HTMX requests of the in-place rename: the row
// itself (Cancel) or its edit form (Rename). Without HTMX they lead to the
// key's page, which has the same form.
func (h *Handlers) keyRowFragment(edit bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := pathID(c, "id")
		if c.Request().Header.Get("HX-Request") != "true" {
			return c.Redirect(http.StatusSeeOther, fmt.Sprintf("/settings/api-keys/%d", id))
		}
		k, err := h.Keys.Get(c.Request().Context(), currentViewer(c).Current.WorkspaceID, id)
		if err != nil {
			return keyError(err)
		}
		row := keyRow(k, h.Clock.Now(), h.keyActor(c))
		if edit {
			if !row.CanManage {
				return echo.NewHTTPError(http.StatusForbidden, "Only admins can change keys created by someone else.")
			}
			return h.app(c, http.StatusOK, "api-keys", k.Name, views.KeyRowEdit(row, nil))
		}
		return h.app(c, http.StatusOK, "api-keys", k.Name, views.KeyRowView(row))
	}
}

func (h *Handlers) renameKey(c echo.Context) error {
	id := pathID(c, "id")
	ws := currentViewer(c).Current.WorkspaceID
	ctx := c.Request().Context()
	actor := h.keyActor(c)
	name, description := c.FormValue("name"), c.FormValue("description")
	k, err := h.Keys.Rename(ctx, ws, actor, id, name, description)
	inPlace := c.Request().Header.Get("HX-Request") == "true" && c.Request().Header.Get("HX-Boosted") != "true"
	var ve validate.Errors
	if errors.As(err, &ve) {
		keep := func(r *views.KeyRow) { r.Name, r.Description = name, description }
		if !inPlace {
			return h.keyPage(c, http.StatusUnprocessableEntity, id, ve, func(v *views.KeyDetailView) { keep(&v.Row) })
		}
		current, gerr := h.Keys.Get(ctx, ws, id)
		if gerr != nil {
			return keyError(gerr)
		}
		row := keyRow(current, h.Clock.Now(), actor)
		keep(&row)
		return h.app(c, http.StatusUnprocessableEntity, "api-keys", current.Name, views.KeyRowEdit(row, views.FieldErrors(ve)))
	}
	if err != nil {
		return keyError(err)
	}
	if inPlace { // Rename returns the key with its creator and rotation links
		return h.app(c, http.StatusOK, "api-keys", k.Name, views.KeyRowView(keyRow(k, h.Clock.Now(), actor)))
	}
	h.flash(c, "success", "Saved.")
	return redirect(c, fmt.Sprintf("/settings/api-keys/%d", k.ID))
}

func (h *Handlers) rotateKey(c echo.Context) error {
	id := pathID(c, "id")
	grace, err := time.ParseDuration(c.FormValue("grace"))
	if err != nil {
		return echo.NewHTTPError(http.StatusUnprocessableEntity, "Choose how long the old key keeps working.")
	}
	ws := currentViewer(c).Current.WorkspaceID
	created, err := h.Keys.Rotate(c.Request().Context(), ws, h.keyActor(c), id, grace)
	var ve validate.Errors
	switch {
	case errors.As(err, &ve):
		return echo.NewHTTPError(http.StatusUnprocessableEntity, ve["grace_period"])
	case errors.Is(err, keys.ErrNotActive):
		h.flash(c, "error", "This key was already rotated, revoked or has expired, so it cannot be rotated. Duplicate it to make a new key with the same settings.")
		return redirect(c, fmt.Sprintf("/settings/api-keys/%d", id))
	case err != nil:
		return keyError(err)
	}
	return h.showSecret(c, created, created.Replaced, *created.Replaced.ExpiresAt)
}

// setDisabled answers the Disable and Enable buttons of the key page and
// the list's rows (from=list goes back to the list the row was in).
func (h *Handlers) setDisabled(disabled bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := pathID(c, "id")
		k, err := h.Keys.SetDisabled(c.Request().Context(), currentViewer(c).Current.WorkspaceID, h.keyActor(c), id, disabled)
		switch {
		case errors.Is(err, keys.ErrNotActive):
			h.flash(c, "error", "A revoked key cannot be disabled or enabled.")
		case errors.Is(err, keys.ErrAlreadyThat):
			h.flash(c, "info", "That key was already "+map[bool]string{true: "disabled", false: "enabled"}[disabled]+".")
		case err != nil:
			return keyError(err)
		case disabled:
			h.flash(c, "success", fmt.Sprintf("Disabled %s (%s). Requests using it now fail with disabled_api_key, until you enable it.", k.Name, k.Hint))
		default:
			h.flash(c, "success", fmt.Sprintf("Enabled %s (%s). It works again.", k.Name, k.Hint))
		}
		if back := c.FormValue("back"); strings.HasPrefix(back, "/settings/api-keys") && !strings.HasPrefix(back, "//") {
			return redirect(c, back)
		}
		return redirect(c, fmt.Sprintf("/settings/api-keys/%d", id))
	}
}

func (h *Handlers) revokeKey(c echo.Context) error {
	id := pathID(c, "id")
	k, err := h.Keys.Revoke(c.Request().Context(), currentViewer(c).Current.WorkspaceID, h.keyActor(c), id)
	switch {
	case errors.Is(err, keys.ErrNotActive):
		h.flash(c, "info", "That key was already revoked.")
	case err != nil:
		return keyError(err)
	default:
		h.flash(c, "success", fmt.Sprintf("Revoked %s (%s). Requests using it now fail.", k.Name, k.Hint))
	}
	return redirect(c, "/settings/api-keys?filter=revoked")
}

// setRateLimit changes a key's requests per minute and its hourly and
// daily quotas (owners and admins); an empty field returns the limit to
// its kind's default, or removes the quota.
func (h *Handlers) setRateLimit(c echo.Context) error {
	id := pathID(c, "id")
	number := func(field string) *int {
		v := strings.TrimSpace(c.FormValue(field))
		if v == "" {
			return nil
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			n = -1 // reported by the domain's validation
		}
		return &n
	}
	in := keys.LimitSettings{PerMinute: number("rate_limit"), PerHour: number("hourly_quota"), PerDay: number("daily_quota")}
	ws := currentViewer(c).Current.WorkspaceID
	k, err := h.Keys.SetRateLimits(c.Request().Context(), ws, h.keyActor(c), id, in)
	var ve validate.Errors
	if errors.As(err, &ve) {
		return h.keyPage(c, http.StatusUnprocessableEntity, id, ve, func(v *views.KeyDetailView) {
			v.Row.RateLimitInput, v.Row.HourlyInput, v.Row.DailyInput = c.FormValue("rate_limit"), c.FormValue("hourly_quota"), c.FormValue("daily_quota")
		})
	}
	if err != nil {
		return keyError(err)
	}
	msg := fmt.Sprintf("%s may now make %d requests per minute", k.Name, keys.LimitFor(k.Kind, k.RateLimit))
	if k.HourlyQuota != nil {
		msg += fmt.Sprintf(", %d per hour", *k.HourlyQuota)
	}
	if k.DailyQuota != nil {
		msg += fmt.Sprintf(", %d per day", *k.DailyQuota)
	}
	h.flash(c, "success", msg+".")
	return redirect(c, fmt.Sprintf("/settings/api-keys/%d", k.ID))
}

// setAllowedIPs saves a key's IP allowlist from its page: one address or
// network per line (commas and spaces work too); empty allows anywhere.
// A refused list comes back as typed, with the reason.
func (h *Handlers) setAllowedIPs(c echo.Context) error {
	id := pathID(c, "id")
	input := c.FormValue("allowed_ips")
	k, err := h.Keys.Update(c.Request().Context(), currentViewer(c).Current.WorkspaceID, h.keyActor(c), id,
		keys.UpdateInput{AllowedIPs: keys.Set(strings.Fields(input))})
	var ve validate.Errors
	if errors.As(err, &ve) {
		return h.keyPage(c, http.StatusUnprocessableEntity, id, ve, func(v *views.KeyDetailView) { v.AllowedIPsInput = input })
	}
	if err != nil {
		return keyError(err)
	}
	if k.AllowedIPs == "" {
		h.flash(c, "success", fmt.Sprintf("%s may now be used from any address.", k.Name))
	} else {
		h.flash(c, "success", fmt.Sprintf("%s may now be used only from %s.", k.Name, strings.ReplaceAll(k.AllowedIPs, " ", ", ")))
	}
	return redirect(c, fmt.Sprintf("/settings/api-keys/%d#allowed-ips", k.ID))
}
