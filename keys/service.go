package keys

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"

	"keysmith/clock"
	"keysmith/models"
	"keysmith/validate"
)

// Errors the HTTP layers map to pages and SPEC §6 errors.
var (
	ErrNotFound = errors.New("keys: no such key in this workspace")
	// ErrNotActive: the key is revoked, expired or already rotated, so it
	// cannot be rotated (duplicate it instead) or revoked twice.
	ErrNotActive = errors.New("keys: key is no longer active")
	// ErrWrongEnvironment: a test key acting on live keys, or the reverse.
	ErrWrongEnvironment = errors.New("keys: key belongs to the other environment")
)

// ForbiddenError says the actor may not do this, and why, in words a user
// can act on.
type ForbiddenError struct{ Reason string }

func (e *ForbiddenError) Error() string { return "keys: forbidden: " + e.Reason }

func forbidden(format string, args ...any) error {
	return &ForbiddenError{Reason: fmt.Sprintf(format, args...)}
}

// Audit actions.
const (
	ActionCreated  = "key.created"
	ActionRenamed  = "key.renamed"
	ActionRotated  = "key.rotated"
	ActionRevoked  = "key.revoked"
	ActionLimited  = "key.rate_limit_changed"
	ActionDisabled = "key.disabled"
	ActionEnabled  = "key.enabled"
	ActionIPs      = "key.allowed_ips_changed"
)

// Grace periods a rotation may leave the old key (SPEC §5).
var GracePeriods = []time.Duration{0, time.Hour, 24 * time.Hour, 72 * time.Hour, 168 * time.Hour}

// ExpiryChoices are the lifetimes the create form offers, in days; 0 is never.
var ExpiryChoices = []int{7, 30, 60, 90}

// ExpiringSoon is how close to expiry a key counts as expiring (SPEC §3).
const ExpiringSoon = 14 * 24 * time.Hour

// Service creates and changes keys; every change writes an audit event in
// the same transaction.
type Service struct {
	db          *gorm.DB
	clock       clock.Clock
	catalog     Catalog
	routes      *RouteTable
	prefix      string
	maxLifetime time.Duration                                            // 0: no operator maximum
	onChange    func(ids ...int64)                                       // after every committed change, with the keys it changed
	leaked      func(ctx context.Context, k models.APIKey, r LeakReport) // after a leaked key's revocation (OnLeak)
	feed        *ChangeFeed                                              // on PostgreSQL: tells the other replicas; nil on SQLite
}

// SetChangeFeed makes every change to a key announce itself to the other
// replicas, inside its transaction.
func (s *Service) SetChangeFeed(f *ChangeFeed) { s.feed = f }

// OnChange registers f to run after every committed change, with the ids
// of the keys it changed (the verifier's cache and the change feed).
func (s *Service) OnChange(f func(ids ...int64)) { s.onChange = f }

func (s *Service) changed(ids ...int64) {
	if s.onChange != nil {
		s.onChange(ids...)
	}
}

// NewService returns the keys domain service. The catalog's routes must
// be valid: LoadCatalog checks them, and the demo catalog's are.
func NewService(db *gorm.DB, clk clock.Clock, catalog Catalog, prefix string, maxLifetime time.Duration) *Service {
	routes, err := catalog.Routes()
	if err != nil {
		panic("keys: the scope catalog's routes are invalid (LoadCatalog checks them): " + err.Error())
	}
	return &Service{db: db, clock: clk, catalog: catalog, routes: routes, prefix: prefix, maxLifetime: maxLifetime}
}

// Catalog is the scope catalog in force.
func (s *Service) Catalog() Catalog { return s.catalog }

// Routes is the catalog's route table, for forward authentication.
func (s *Service) Routes() *RouteTable { return s.routes }

// MaxLifetime is the longest a new key of the workspace may live: the
// operator's maximum or the workspace's own, whichever is shorter; 0 for none.
func (s *Service) MaxLifetime(w models.Workspace) time.Duration {
	limit := s.maxLifetime
	if w.MaxLifetimeDays != nil {
		own := time.Duration(*w.MaxLifetimeDays) * 24 * time.Hour
		if limit == 0 || own < limit {
			limit = own
		}
	}
	return limit
}

// Actor is who acts: a dashboard user (with a role) or, through the API, a key.
type Actor struct {
	UserID    int64 // 0 when a key acts
	KeyID     int64 // 0 when a user acts
	Env       Env   // a key acts only on keys of its own environment; "" for users
	Label     string
	Admin     bool     // may act on everyone's keys
	Held      []string // the scopes the actor may hand out
	IP        string
	UserAgent string
	Token     string // the jti when a temporary token derived from the key acts
	ClientID  string // the OAuth app when an app acts (for a user, or alone)
}

// keyLike is an actor held to its scopes alone: a key, or an app acting
// for itself.
func (a Actor) keyLike() bool { return a.KeyID != 0 || a.ClientID != "" && a.UserID == 0 }

// KeyActor is a key acting through the API: it holds its own scopes, may
// change keys only with keys:write, and never keys broader than itself. A
// temporary token derived from it acts with the token's scopes, and the
// audit log names the token.
func KeyActor(k Authenticated, ip, userAgent string) Actor {
	// A key holding every scope is an admin key: it may set rate limits,
	// as owners and admins may.
	a := Actor{KeyID: k.ID, Env: k.Env, Label: k.Hint, Held: k.Scopes, Admin: Covers(k.Scopes, []string{"*"}), IP: ip, UserAgent: userAgent}
	if k.TokenType == TokenJWT {
		a.Token, a.Label = k.TokenID, k.Hint+" (token "+k.TokenID+")"
	}
	if app := k.App; app != nil {
		// An app acting for a user acts as that user, within the scopes
		// the user granted; acting for itself, it acts as a key would.
		a = Actor{UserID: app.UserID, ClientID: app.ClientID, Label: app.Label, Held: k.Scopes,
			Admin: app.Admin && Covers(k.Scopes, []string{"*"}), IP: ip, UserAgent: userAgent}
	}
	return a
}

// UserActor is a member acting in the dashboard. Owners and admins hold
// every scope; editors hold the write preset; viewers hold none.
func (s *Service) UserActor(user models.User, role models.Role, ip, userAgent string) Actor {
	a := Actor{UserID: user.ID, Label: user.Email, Admin: role.IsAdmin(), IP: ip, UserAgent: userAgent}
	switch {
	case role.IsAdmin():
		a.Held = []string{"*"}
	case role == models.RoleEditor:
		a.Held, _ = s.catalog.Preset(PermWrite, Secret)
	}
	return a
}

// CanCreate reports whether the actor may create keys at all.
func (a Actor) CanCreate() bool {
	if a.Token != "" {
		return false // a new secret would outlive the token
	}
	if a.keyLike() || a.ClientID != "" {
		return Allows(a.Held, "keys:write")
	}
	return len(a.Held) > 0
}

// CanManage reports whether the actor may rename, rotate or revoke k:
// admins any key, editors the keys they created, keys with keys:write any
// key no broader than themselves.
func (a Actor) CanManage(k models.APIKey) bool {
	switch {
	case a.keyLike():
		return Allows(a.Held, "keys:write") && Covers(a.Held, k.ScopeList())
	case a.ClientID != "" && !Allows(a.Held, "keys:write"):
		return false
	case a.Admin:
		return true
	}
	return a.UserID != 0 && len(a.Held) > 0 && k.CreatedByID != nil && *k.CreatedByID == a.UserID
}

func (a Actor) cannotCreate() error {
	if a.Token != "" {
		return errTokenMints
	}
	if a.keyLike() || a.ClientID != "" {
		return forbidden("this key lacks the keys:write scope")
	}
	return forbidden("viewers cannot create keys; ask an admin for the editor role")
}

// CreateInput is what the create form or API asks for.
type CreateInput struct {
	Name        string
	Description string
	Kind        Kind
	Env         Env
	Permission  Permission
	Scopes      []string // with PermCustom
	ExpiresIn   string   // "never", a number of days, a Go duration such as "36h", or "custom"
	ExpiresOn   string   // YYYY-MM-DD with "custom"
	AllowedIPs  []string // addresses and networks it may be used from; none: anywhere
}

// Created is a new key with its plaintext: the only time it exists.
type Created struct {
	Key    models.APIKey
	Secret string
	// Replaced is, after a rotation, the old key as it now stands (its
	// ExpiresAt is the end of its grace period).
	Replaced *models.APIKey
}

func validateText(errs validate.Errors, name, description string) {
	switch n := utf8.RuneCountInString(strings.TrimSpace(name)); {
	case n == 0:
		errs["name"] = "Give the key a name, such as the service that will use it."
	case n > 100:
		errs["name"] = "Use at most 100 characters."
	}
	if utf8.RuneCountInString(description) > 500 {
		errs["description"] = "Use at most 500 characters."
	}
}

// resolveScopes turns a permission choice into canonical scopes.
func (s *Service) resolveScopes(errs validate.Errors, kind Kind, perm Permission, custom []string) []string {
	if !perm.Valid() {
		errs["permission"] = "Choose a permission."
		return nil
	}
	if perm != PermCustom {
		scopes, err := s.catalog.Preset(perm, kind)
		if err != nil {
			errs["permission"] = capitalise(err.Error()) + "."
		}
		return scopes
	}
	scopes, err := s.catalog.Normalize(custom)
	switch {
	case err != nil:
		errs["scopes"] = capitalise(err.Error()) + "."
	case len(scopes) == 0:
		errs["scopes"] = "Choose at least one scope."
	case kind == Publishable:
		for _, sc := range scopes {
			if !s.catalog.IsPublishable(sc) {
				errs["scopes"] = fmt.Sprintf("Publishable keys are visible in browsers, so they cannot hold %s.", sc)
				break
			}
		}
	}
	return scopes
}

const expiryTooFar = "Choose an expiry within 10 years, or never."

// parseLifetime reads expires_in as days ("30") or a Go duration ("36h"),
// from 1 hour to MaxExpiryDays; otherwise it says what is wrong.
func parseLifetime(in string) (time.Duration, string) {
	const maxLifetime = MaxExpiryDays * 24 * time.Hour
	if n, err := strconv.ParseInt(in, 10, 64); err == nil {
		switch {
		case n <= 0:
			return 0, "Choose when the key expires."
		case n > MaxExpiryDays:
			return 0, expiryTooFar
		}
		return time.Duration(n) * 24 * time.Hour, ""
	}
	d, err := time.ParseDuration(in)
	switch {
	case err != nil:
		return 0, "Choose when the key expires."
	case d < time.Hour:
		return 0, "Choose an expiry at least 1 hour ahead."
	case d > maxLifetime:
		return 0, expiryTooFar
	}
	return d, ""
}

// MaxExpiryDays bounds how far ahead a key's expiry may be: beyond it,
// "never" says what is meant, and day counts cannot overflow a duration.
const MaxExpiryDays = 3650

// resolveExpiry turns the expiry choice into a time, within maxLifetime
// (0: none) and MaxExpiryDays. A date without expires_in means that date.
func resolveExpiry(errs validate.Errors, now time.Time, in, on string, maxLifetime time.Duration) *time.Time {
	switch {
	case in == "" && on != "":
		in = "custom"
	case in != "custom" && on != "":
		errs["expires_on"] = `Give either a date (with expires_in "custom", or alone) or expires_in, not both.`
		return nil
	}
	limit := now.Add(MaxExpiryDays * 24 * time.Hour)
	var at time.Time
	switch in {
	case "never", "":
		if maxLifetime > 0 {
			errs["expires_in"] = fmt.Sprintf("Keys must expire within %s here.", days(maxLifetime))
		}
		return nil
	case "custom":
		d, err := time.Parse("2006-01-02", on)
		if err != nil {
			errs["expires_on"] = "Enter a date as YYYY-MM-DD."
			return nil
		}
		// The key works through the whole chosen day (UTC).
		at = d.Add(24*time.Hour - time.Second)
		if !at.After(now) {
			errs["expires_on"] = "Choose a date in the future."
			return nil
		}
		if at.After(limit.Add(24 * time.Hour)) {
			errs["expires_on"] = expiryTooFar
			return nil
		}
	default:
		d, msg := parseLifetime(in)
		if msg != "" {
			errs["expires_in"] = msg
			return nil
		}
		at = now.Add(d)
	}
	if maxLifetime > 0 && at.Sub(now) > maxLifetime {
		field := "expires_in"
		if in == "custom" {
			field = "expires_on"
		}
		errs[field] = fmt.Sprintf("Keys must expire within %s here.", days(maxLifetime))
		return nil
	}
	return &at
}

// Create makes a key in a workspace. The plaintext is in the result and
// nowhere else.
func (s *Service) Create(ctx context.Context, workspaceID int64, actor Actor, in CreateInput) (Created, error) {
	if !actor.CanCreate() {
		return Created{}, actor.cannotCreate()
	}
	now := s.clock.Now()
	errs := validate.Errors{}
	validateText(errs, in.Name, in.Description)
	if !in.Kind.Valid() {
		errs["kind"] = "Choose secret or publishable."
	}
	if !in.Env.Valid() {
		errs["environment"] = "Choose live or test."
	}
	scopes := s.resolveScopes(errs, in.Kind, in.Permission, in.Scopes)
	var ws models.Workspace
	if err := s.db.WithContext(ctx).Take(&ws, workspaceID).Error; err != nil {
		return Created{}, err
	}
	expires := resolveExpiry(errs, now, in.ExpiresIn, in.ExpiresOn, s.MaxLifetime(ws))
	allowed, msg := CanonicalAllowlist(in.AllowedIPs)
	if msg != "" {
		errs["allowed_ips"] = msg
	}
	if err := errs.Err(); err != nil {
		return Created{}, err
	}
	if actor.Env != "" && in.Env != actor.Env {
		return Created{}, ErrWrongEnvironment
	}
	if !Covers(actor.Held, scopes) {
		if in.Permission == PermAdmin {
			return Created{}, forbidden("only owners and admins can create keys with the admin permission")
		}
		return Created{}, forbidden("a key cannot have more access than you have: %s", strings.Join(scopes, " "))
	}
	var out Created
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var err error
		out, err = s.insert(tx, workspaceID, actor, models.APIKey{
			Name:        strings.TrimSpace(in.Name),
			Description: strings.TrimSpace(in.Description),
			Kind:        string(in.Kind),
			Environment: string(in.Env),
			Permission:  string(in.Permission),
			Scopes:      strings.Join(scopes, " "),
			ExpiresAt:   expires,
			AllowedIPs:  strings.Join(allowed, " "),
			CreatedAt:   now, // the instant the expiry was counted from
		})
		if err != nil {
			return err
		}
		return s.audit(tx, workspaceID, actor, ActionCreated, out.Key, describeNew(out.Key))
	})
	// A new key is in no cache: nothing to evict.
	return out, err
}

// insert generates the secret and stores the key with its hash and hint.
func (s *Service) insert(tx *gorm.DB, workspaceID int64, actor Actor, k models.APIKey) (Created, error) {
	secret := Generate(s.prefix, Kind(k.Kind), Env(k.Environment))
	k.WorkspaceID = workspaceID
	k.SecretHash = Hash(secret)
	k.Hint = Hint(secret)
	k.ReminderDueAt = FirstReminderAt(k.CreatedAt, k.ExpiresAt)
	if actor.UserID != 0 {
		k.CreatedByID = &actor.UserID
	}
	if err := tx.Create(&k).Error; err != nil {
		return Created{}, err
	}
	if err := tally(tx, workspaceID, k.Environment, false, 1); err != nil {
		return Created{}, err
	}
	return Created{Key: k, Secret: secret}, nil
}

func describeNew(k models.APIKey) string {
	exp := "never expires"
	if k.ExpiresAt != nil {
		exp = "expires " + k.ExpiresAt.Format(time.RFC3339)
	}
	d := fmt.Sprintf("%s %s key, permission %s (%s), %s", k.Environment, Kind(k.Kind).Label(), k.Permission, k.Scopes, exp)
	if k.AllowedIPs != "" {
		d += ", allowed from " + k.AllowedIPs
	}
	return d
}

// describeAllowlist is the audit detail of an allowlist change.
func describeAllowlist(before, after string) string {
	show := func(l string) string {
		if l == "" {
			return "anywhere"
		}
		return l
	}
	return fmt.Sprintf("allowed from %s (was %s)", show(after), show(before))
}

func (s *Service) audit(tx *gorm.DB, workspaceID int64, actor Actor, action string, k models.APIKey, detail string) error {
	ev := auditEvent(workspaceID, actor, action, k.ID, k.Name+" ("+k.Hint+")", detail)
	if err := tx.Create(&ev).Error; err != nil {
		return err
	}
	// Every change to a key is audited: announcing it here, in the same
	// transaction, tells every replica exactly when it commits.
	return s.feed.AnnounceKeys(tx, k.ID)
}

// auditEvent is what the audit log records of an actor's action on a key.
func auditEvent(workspaceID int64, actor Actor, action string, keyID int64, keyLabel, detail string) models.AuditEvent {
	ev := models.AuditEvent{
		WorkspaceID: workspaceID,
		ActorLabel:  actor.Label,
		Action:      action,
		KeyID:       &keyID,
		KeyLabel:    keyLabel,
		Detail:      detail,
		IP:          actor.IP,
		UserAgent:   models.StorableText(actor.UserAgent, 300),
	}
	if actor.UserID != 0 {
		ev.ActorUserID = &actor.UserID
	}
	if actor.KeyID != 0 {
		ev.ActorKeyID = &actor.KeyID
	}
	return ev
}

// Get loads one key of a workspace, with its creator and rotation links.
func (s *Service) Get(ctx context.Context, workspaceID, id int64) (models.APIKey, error) {
	return s.get(s.db.WithContext(ctx), workspaceID, id)
}

func (s *Service) get(db *gorm.DB, workspaceID, id int64) (models.APIKey, error) {
	var k models.APIKey
	err := db.Preload("CreatedBy").Preload("RevokedBy").Preload("DisabledBy").Preload("Replaces").Preload("RotatedTo").
		Where("workspace_id = ? AND id = ?", workspaceID, id).Take(&k).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return k, ErrNotFound
	}
	return k, err
}

// manageable loads a key the actor may change.
func (s *Service) manageable(tx *gorm.DB, workspaceID int64, actor Actor, id int64) (models.APIKey, error) {
	k, err := s.get(tx, workspaceID, id)
	if err != nil {
		return k, err
	}
	if actor.Env != "" && Env(k.Environment) != actor.Env {
		return k, ErrWrongEnvironment
	}
	if !actor.CanManage(k) {
		if actor.KeyID != 0 {
			return k, forbidden("a key can change other keys only with keys:write and only if it holds all their scopes")
		}
		return k, forbidden("only admins can change keys created by someone else")
	}
	return k, nil
}

// Rename changes a key's name and description.
func (s *Service) Rename(ctx context.Context, workspaceID int64, actor Actor, id int64, name, description string) (models.APIKey, error) {
	return s.Update(ctx, workspaceID, actor, id, UpdateInput{Name: Set(name), Description: Set(description)})
}

// Change is one setting an update may change: left alone unless Set.
type Change[T any] struct {
	Set   bool
	Value T
}

// Set is a Change to v.
func Set[T any](v T) Change[T] { return Change[T]{Set: true, Value: v} }

// Or is the changed value, or current when the change leaves it alone.
func (c Change[T]) Or(current T) T {
	if c.Set {
		return c.Value
	}
	return current
}

// UpdateInput is what an update changes (the API's PATCH, the key page's
// forms); a nil limit returns to the kind's default, or to no quota.
type UpdateInput struct {
	Name, Description                  Change[string]
	RateLimit, HourlyQuota, DailyQuota Change[*int]
	AllowedIPs                         Change[[]string] // none: anywhere
}

func (in UpdateInput) limits() bool {
	return in.RateLimit.Set || in.HourlyQuota.Set || in.DailyQuota.Set
}

// Update changes some of a key's settings in one transaction, each kind of
// change audited: a rename and the IP allowlist by whoever may manage the
// key, limits by owners and admins (or an admin key) only.
func (s *Service) Update(ctx context.Context, workspaceID int64, actor Actor, id int64, in UpdateInput) (models.APIKey, error) {
	if in.limits() && !actor.Admin {
		return models.APIKey{}, forbidden("only owners and admins can change rate limits")
	}
	var k models.APIKey
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var err error
		if k, err = s.manageable(tx, workspaceID, actor, id); err != nil {
			return err
		}
		if in.Name.Set || in.Description.Set {
			name, description := in.Name.Or(k.Name), in.Description.Or(k.Description)
			errs := validate.Errors{}
			validateText(errs, name, description)
			if err := errs.Err(); err != nil {
				return err
			}
			before := k.Name
			k.Name, k.Description = strings.TrimSpace(name), strings.TrimSpace(description)
			if err := tx.Model(&k).Select("name", "description", "updated_at").Updates(&k).Error; err != nil {
				return err
			}
			detail := "description changed"
			if before != k.Name {
				detail = fmt.Sprintf("renamed from %q", before)
			}
			if err := s.audit(tx, workspaceID, actor, ActionRenamed, k, detail); err != nil {
				return err
			}
		}
		if in.AllowedIPs.Set {
			allowed, msg := CanonicalAllowlist(in.AllowedIPs.Value)
			if msg != "" {
				return validate.Errors{"allowed_ips": msg}
			}
			before := k.AllowedIPs
			if k.AllowedIPs = strings.Join(allowed, " "); k.AllowedIPs != before {
				if err := tx.Model(&k).Select("allowed_ips", "updated_at").Updates(&k).Error; err != nil {
					return err
				}
				if err := s.audit(tx, workspaceID, actor, ActionIPs, k, describeAllowlist(before, k.AllowedIPs)); err != nil {
					return err
				}
			}
		}
		if in.limits() {
			limits := LimitSettings{
				PerMinute: in.RateLimit.Or(k.RateLimit),
				PerHour:   in.HourlyQuota.Or(k.HourlyQuota),
				PerDay:    in.DailyQuota.Or(k.DailyQuota),
			}
			if errs := CheckLimits(Kind(k.Kind), limits); errs != nil {
				return errs
			}
			k.RateLimit, k.HourlyQuota, k.DailyQuota = limits.PerMinute, limits.PerHour, limits.PerDay
			if err := tx.Model(&k).Select("rate_limit", "hourly_quota", "daily_quota", "updated_at").Updates(&k).Error; err != nil {
				return err
			}
			return s.audit(tx, workspaceID, actor, ActionLimited, k, describeLimits(k.Kind, limits))
		}
		return nil
	})
	if err == nil {
		s.changed(k.ID)
	}
	return k, err
}

// Rotate replaces an active key by a new one with the same name,
// description, kind, environment, scopes, limits and IP allowlist, and an
// expiry of the same length from now. The old key keeps working for grace, then stops.
func (s *Service) Rotate(ctx context.Context, workspaceID int64, actor Actor, id int64, grace time.Duration) (Created, error) {
	if !validGrace(grace) {
		return Created{}, validate.Errors{"grace_period": "Choose how long the old key keeps working: 0s (stop at once), 1h, 24h, 72h or 168h."}
	}
	now := s.clock.Now()
	var out Created
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		old, err := s.manageable(tx, workspaceID, actor, id)
		if err != nil {
			return err
		}
		if actor.Token != "" {
			return errTokenMints
		}
		if StatusOf(old, now).Dead() || old.RotatedToID != nil {
			return ErrNotActive
		}
		if !Covers(actor.Held, old.ScopeList()) {
			return forbidden("this key has more access than you have, so you cannot rotate it")
		}
		// Everything set on the key carries over, its limits included: a
		// rotation changes the secret, nothing else.
		fresh := models.APIKey{
			Name: old.Name, Description: old.Description, Kind: old.Kind, Environment: old.Environment,
			Permission: old.Permission, Scopes: old.Scopes, ReplacesID: &old.ID, CreatedAt: now,
			RateLimit: old.RateLimit, HourlyQuota: old.HourlyQuota, DailyQuota: old.DailyQuota,
			AllowedIPs: old.AllowedIPs,
		}
		if old.ExpiresAt != nil {
			at := now.Add(old.ExpiresAt.Sub(old.CreatedAt))
			fresh.ExpiresAt = &at
		}
		if out, err = s.insert(tx, workspaceID, actor, fresh); err != nil {
			return err
		}
		graceEnd := now.Add(grace)
		if old.ExpiresAt != nil && old.ExpiresAt.Before(graceEnd) {
			graceEnd = *old.ExpiresAt
		}
		// The guard makes a concurrent second rotation of the same key fail.
		res := tx.Model(&models.APIKey{}).
			Where("id = ? AND rotated_to_id IS NULL AND revoked_at IS NULL", old.ID).
			Updates(map[string]any{"rotated_to_id": out.Key.ID, "rotated_at": now, "expires_at": graceEnd, "updated_at": now, "reminder_due_at": nil})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return ErrNotActive
		}
		old.RotatedToID, old.RotatedAt, old.ExpiresAt, old.ReminderDueAt = &out.Key.ID, &now, &graceEnd, nil
		out.Replaced = &old
		detail := fmt.Sprintf("replaced by %s; old key works until %s", out.Key.Hint, graceEnd.Format(time.RFC3339))
		if grace == 0 {
			detail = fmt.Sprintf("replaced by %s; old key stopped at once", out.Key.Hint)
		}
		return s.audit(tx, workspaceID, actor, ActionRotated, old, detail)
	})
	if err == nil {
		s.changed(out.Replaced.ID)
	}
	return out, err
}

func validGrace(d time.Duration) bool {
	for _, g := range GracePeriods {
		if g == d {
			return true
		}
	}
	return false
}

// ErrAlreadyThat: a disable of a disabled key, or an enable of an enabled one.
var ErrAlreadyThat = errors.New("keys: the key is that already")

// SetDisabled pauses a key (disabled) or resumes it: a reversible revoke,
// to find out whether anything still uses it. The same people may do it
// as may revoke it, and it takes effect as fast. A disabled key keeps its
// expiry and reminder schedule but gets no reminders while disabled.
func (s *Service) SetDisabled(ctx context.Context, workspaceID int64, actor Actor, id int64, disabled bool) (models.APIKey, error) {
	now := s.clock.Now()
	var k models.APIKey
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var err error
		if k, err = s.manageable(tx, workspaceID, actor, id); err != nil {
			return err
		}
		if k.RevokedAt != nil {
			return ErrNotActive
		}
		updates, cond, action := map[string]any{"disabled_at": nil, "disabled_by_id": nil, "updated_at": now}, "disabled_at IS NOT NULL", ActionEnabled
		if disabled {
			updates, cond, action = map[string]any{"disabled_at": now, "disabled_by_id": nil, "updated_at": now}, "disabled_at IS NULL", ActionDisabled
			if actor.UserID != 0 {
				updates["disabled_by_id"] = actor.UserID
			}
		}
		res := tx.Model(&models.APIKey{}).Where("id = ? AND revoked_at IS NULL AND "+cond, k.ID).Updates(updates)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return ErrAlreadyThat
		}
		k.DisabledAt = nil
		if disabled {
			k.DisabledAt = &now
		}
		return s.audit(tx, workspaceID, actor, action, k, "")
	})
	if err == nil {
		s.changed(k.ID)
	}
	return k, err
}

// Revoke stops a key at once and for good.
func (s *Service) Revoke(ctx context.Context, workspaceID int64, actor Actor, id int64) (models.APIKey, error) {
	now := s.clock.Now()
	var k models.APIKey
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var err error
		if k, err = s.manageable(tx, workspaceID, actor, id); err != nil {
			return err
		}
		revoked, err := revokeIn(tx, &k, actor, now)
		if err != nil {
			return err
		}
		if !revoked {
			return ErrNotActive
		}
		return s.audit(tx, workspaceID, actor, ActionRevoked, k, "")
	})
	if err == nil {
		s.changed(k.ID)
	}
	return k, err
}

// revokeIn revokes k in tx if it is still active (a guarded update, so two
// revocations never both count) and moves it between the key counts; it
// reports whether this call revoked it, and updates k if so. The caller
// audits, and evicts the key once tx has committed (s.changed).
func revokeIn(tx *gorm.DB, k *models.APIKey, actor Actor, now time.Time) (bool, error) {
	updates := map[string]any{"revoked_at": now, "updated_at": now, "reminder_due_at": nil}
	if actor.UserID != 0 {
		updates["revoked_by_id"] = actor.UserID
	}
	res := tx.Model(&models.APIKey{}).Where("id = ? AND revoked_at IS NULL", k.ID).Updates(updates)
	if res.Error != nil || res.RowsAffected == 0 {
		return false, res.Error
	}
	if err := tally(tx, k.WorkspaceID, k.Environment, false, -1); err != nil {
		return false, err
	}
	if err := tally(tx, k.WorkspaceID, k.Environment, true, 1); err != nil {
		return false, err
	}
	k.RevokedAt, k.UpdatedAt, k.ReminderDueAt = &now, now, nil
	if actor.UserID != 0 {
		k.RevokedByID = &actor.UserID
	}
	return true, nil
}

// SetRateLimits sets a key's requests per minute and its hourly and daily
// quotas, all at once (CheckLimits says what is valid); a nil field
// returns the limit to its kind's default, or leaves the key without that
// quota. Owners and admins only.
func (s *Service) SetRateLimits(ctx context.Context, workspaceID int64, actor Actor, id int64, in LimitSettings) (models.APIKey, error) {
	return s.Update(ctx, workspaceID, actor, id, UpdateInput{RateLimit: Set(in.PerMinute), HourlyQuota: Set(in.PerHour), DailyQuota: Set(in.PerDay)})
}

func days(d time.Duration) string {
	n := int(d / (24 * time.Hour))
	if n == 1 {
		return "1 day"
	}
	return fmt.Sprintf("%d days", n)
}

func capitalise(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
