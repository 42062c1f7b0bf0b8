// Package webhooks tells machines about key and member events (SPEC §10):
// a workspace's endpoints, the events they want, their signing secrets,
// and the calls themselves, which the outbox delivers with retries and
// backoff. Calls are signed per the Standard Webhooks spec. Events come
// from the audit log: every audited key and member change a workspace
// makes is an event, written in the same transaction as the change; the
// reminder planner adds key.expiring and key.expired.
package webhooks

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"

	"keysmith/clock"
	"keysmith/keys"
	"keysmith/mailer"
	"keysmith/models"
	"keysmith/outbox"
	"keysmith/validate"
)

// Events an endpoint may want.
var Events = []string{
	"key.created", "key.rotated", "key.revoked", "key.disabled", "key.enabled",
	"key.expiring", "key.expired", "key.leaked", "member.joined", "member.removed",
}

// TestEvent is what "Send test event" sends; every endpoint gets it.
const TestEvent = "webhook.test"

// Errors the HTTP layers map.
var (
	ErrNotFound  = errors.New("webhooks: no such endpoint in this workspace")
	ErrForbidden = errors.New("webhooks: only owners, admins and keys with keys:write manage webhook endpoints")
)

// Audit actions.
const (
	ActionCreated       = "webhook.created"
	ActionUpdated       = "webhook.updated"
	ActionDeleted       = "webhook.deleted"
	ActionSecretRotated = "webhook.secret_rotated"
	ActionAutoDisabled  = "webhook.auto_disabled"
)

// FailingFor is how long an endpoint may fail every call before Keysmith
// disables it and mails the workspace's admins.
const FailingFor = 3 * 24 * time.Hour

// Options configure a Service.
type Options struct {
	// AllowPrivate lets endpoints be on private, loopback and link-local
	// addresses (KEYSMITH_WEBHOOK_ALLOW_PRIVATE). Off, an SSRF guard checks
	// every address a call connects to, not only the URL when it is saved.
	AllowPrivate bool
	BaseURL      string // links in the mail that says an endpoint was disabled
	Timeout      time.Duration
}

// Service manages endpoints and makes their calls. It is safe for
// concurrent use.
type Service struct {
	db     *gorm.DB
	clock  clock.Clock
	outbox *outbox.Outbox
	sealer outbox.Sealer
	mail   *mailer.Mailer
	log    *slog.Logger
	opts   Options
	client httpDoer
}

// New returns the webhooks service and registers it as the outbox's
// composer of webhook calls.
func New(db *gorm.DB, clk clock.Clock, ob *outbox.Outbox, sealer outbox.Sealer, mail *mailer.Mailer, log *slog.Logger, opts Options) *Service {
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Second
	}
	s := &Service{db: db, clock: clk, outbox: ob, sealer: sealer, mail: mail, log: log, opts: opts}
	s.client = newClient(opts)
	ob.Register(outbox.KindWebhook, s)
	return s
}

// EndpointInput is what the form or the API sets.
type EndpointInput struct {
	URL         string
	Description string
	Events      []string
	Enabled     bool
}

// Created is an endpoint with its signing secret: the only time the
// secret is shown.
type Created struct {
	Endpoint models.WebhookEndpoint
	Secret   string
}

// mayManage: owners and admins in the dashboard, keys with keys:write;
// never a temporary token, since an endpoint's secret would outlive it.
func mayManage(a keys.Actor) bool {
	if a.Token != "" {
		return false
	}
	if a.KeyID != 0 || a.ClientID != "" {
		return keys.Allows(a.Held, "keys:write")
	}
	return a.Admin
}

func (s *Service) validate(in EndpointInput) (EndpointInput, error) {
	errs := validate.Errors{}
	in.URL = strings.TrimSpace(in.URL)
	u, err := url.Parse(in.URL)
	switch {
	case in.URL == "":
		errs["url"] = "Enter the URL Keysmith should POST events to."
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || len(in.URL) > 500:
		errs["url"] = "Use an http:// or https:// URL."
	case u.User != nil:
		errs["url"] = "Leave credentials out of the URL: verify the signature instead."
	case !s.opts.AllowPrivate && privateHost(u.Hostname()):
		errs["url"] = "This server does not call private, loopback or link-local addresses (KEYSMITH_WEBHOOK_ALLOW_PRIVATE)."
	}
	in.Description = strings.TrimSpace(in.Description)
	if len(in.Description) > 200 {
		errs["description"] = "Keep the description under 200 characters."
	}
	var evs []string
	for _, e := range in.Events {
		for _, f := range strings.FieldsFunc(e, func(r rune) bool { return r == ',' || r == ' ' }) {
			if !slices.Contains(Events, f) {
				errs["events"] = "Unknown event " + f + ". Choose from: " + strings.Join(Events, ", ") + "."
			} else if !slices.Contains(evs, f) {
				evs = append(evs, f)
			}
		}
	}
	if len(evs) == 0 && errs["events"] == "" {
		errs["events"] = "Choose at least one event."
	}
	in.Events = evs
	return in, errs.Err()
}

// privateHost says whether a literal address is one the guard refuses; a
// name is checked when a call resolves it.
func privateHost(h string) bool {
	if strings.EqualFold(h, "localhost") || strings.HasSuffix(strings.ToLower(h), ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && refused(ip)
}

// newSecret is "whsec_" and base64 of 32 random bytes (Standard Webhooks).
func newSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

func secretHint(secret string) string { return secret[:len("whsec_")+4] + "…" }

const sealPurpose = "webhook secret"

// Create adds an endpoint and returns its secret.
func (s *Service) Create(ctx context.Context, workspaceID int64, actor keys.Actor, in EndpointInput) (Created, error) {
	if !mayManage(actor) {
		return Created{}, ErrForbidden
	}
	in, err := s.validate(in)
	if err != nil {
		return Created{}, err
	}
	secret := newSecret()
	sealed, err := s.sealer.Seal(sealPurpose, []byte(secret))
	if err != nil {
		return Created{}, err
	}
	now := s.clock.Now().UTC()
	e := models.WebhookEndpoint{WorkspaceID: workspaceID, URL: in.URL, Description: in.Description,
		Events: strings.Join(in.Events, " "), SecretEnc: sealed, SecretHint: secretHint(secret), Enabled: in.Enabled,
		CreatedAt: now, UpdatedAt: now}
	if actor.UserID != 0 {
		e.CreatedByID = &actor.UserID
	}
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(&e).Error; err != nil {
			return err
		}
		return tx.Create(s.event(workspaceID, actor, ActionCreated, e, "events "+e.Events)).Error
	})
	return Created{Endpoint: e, Secret: secret}, err
}

// List is the workspace's endpoints, oldest first.
func (s *Service) List(ctx context.Context, workspaceID int64) ([]models.WebhookEndpoint, error) {
	var es []models.WebhookEndpoint
	err := s.db.WithContext(ctx).Where("workspace_id = ?", workspaceID).Order("created_at, id").Find(&es).Error
	return es, err
}

// Get is one endpoint of the workspace.
func (s *Service) Get(ctx context.Context, workspaceID, id int64) (models.WebhookEndpoint, error) {
	var e models.WebhookEndpoint
	err := s.db.WithContext(ctx).Where("workspace_id = ? AND id = ?", workspaceID, id).Take(&e).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return e, ErrNotFound
	}
	return e, err
}

// Update changes an endpoint's URL, description, events and whether it is
// on. Switching it on clears what made Keysmith switch it off.
func (s *Service) Update(ctx context.Context, workspaceID int64, actor keys.Actor, id int64, in EndpointInput) (models.WebhookEndpoint, error) {
	if !mayManage(actor) {
		return models.WebhookEndpoint{}, ErrForbidden
	}
	e, err := s.Get(ctx, workspaceID, id)
	if err != nil {
		return e, err
	}
	if in, err = s.validate(in); err != nil {
		return e, err
	}
	e.URL, e.Description, e.Events, e.Enabled, e.UpdatedAt = in.URL, in.Description, strings.Join(in.Events, " "), in.Enabled, s.clock.Now().UTC()
	if e.Enabled {
		e.DisabledReason, e.FailingSince = "", nil
	}
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Select("url", "description", "events", "enabled", "disabled_reason", "failing_since", "updated_at").Updates(&e).Error; err != nil {
			return err
		}
		state := "on"
		if !e.Enabled {
			state = "off"
		}
		return tx.Create(s.event(workspaceID, actor, ActionUpdated, e, state+", events "+e.Events)).Error
	})
	return e, err
}

// SetEnabled switches an endpoint on or off.
func (s *Service) SetEnabled(ctx context.Context, workspaceID int64, actor keys.Actor, id int64, on bool) (models.WebhookEndpoint, error) {
	e, err := s.Get(ctx, workspaceID, id)
	if err != nil {
		return e, err
	}
	return s.Update(ctx, workspaceID, actor, id, EndpointInput{URL: e.URL, Description: e.Description, Events: e.EventList(), Enabled: on})
}

// RotateSecret gives an endpoint a new secret; calls from now on are
// signed with it only.
func (s *Service) RotateSecret(ctx context.Context, workspaceID int64, actor keys.Actor, id int64) (Created, error) {
	if !mayManage(actor) {
		return Created{}, ErrForbidden
	}
	e, err := s.Get(ctx, workspaceID, id)
	if err != nil {
		return Created{}, err
	}
	secret := newSecret()
	if e.SecretEnc, err = s.sealer.Seal(sealPurpose, []byte(secret)); err != nil {
		return Created{}, err
	}
	e.SecretHint, e.UpdatedAt = secretHint(secret), s.clock.Now().UTC()
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Select("secret_enc", "secret_hint", "updated_at").Updates(&e).Error; err != nil {
			return err
		}
		return tx.Create(s.event(workspaceID, actor, ActionSecretRotated, e, "")).Error
	})
	return Created{Endpoint: e, Secret: secret}, err
}

// Delete removes an endpoint; calls still queued for it are cancelled.
func (s *Service) Delete(ctx context.Context, workspaceID int64, actor keys.Actor, id int64) error {
	if !mayManage(actor) {
		return ErrForbidden
	}
	e, err := s.Get(ctx, workspaceID, id)
	if err != nil {
		return err
	}
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Delete(&e).Error; err != nil {
			return err
		}
		if err := tx.Model(&models.Delivery{}).Where("endpoint_id = ? AND status = 'pending'", e.ID).Update("status", "cancelled").Error; err != nil {
			return err
		}
		return tx.Create(s.event(workspaceID, actor, ActionDeleted, e, "")).Error
	})
}

// Deliveries is one page of an endpoint's calls, newest first.
func (s *Service) Deliveries(ctx context.Context, workspaceID, endpointID int64, page, perPage int) ([]models.Delivery, int, error) {
	q := s.db.WithContext(ctx).Model(&models.Delivery{}).Where("workspace_id = ? AND endpoint_id = ?", workspaceID, endpointID)
	var n int64
	if err := q.Count(&n).Error; err != nil {
		return nil, 0, err
	}
	pages := max(int((n+int64(perPage)-1)/int64(perPage)), 1)
	page = min(max(page, 1), pages)
	var ds []models.Delivery
	err := q.Order("created_at DESC, id DESC").Offset((page - 1) * perPage).Limit(perPage).Find(&ds).Error
	return ds, pages, err
}

// event is an audit event about an endpoint.
func (s *Service) event(workspaceID int64, actor keys.Actor, action string, e models.WebhookEndpoint, detail string) *models.AuditEvent {
	ev := &models.AuditEvent{WorkspaceID: workspaceID, ActorLabel: actor.Label, Action: action,
		KeyLabel: "webhook " + e.URL, Detail: detail, IP: actor.IP, UserAgent: models.StorableText(actor.UserAgent, 300),
		CreatedAt: s.clock.Now().UTC()}
	if actor.UserID != 0 {
		ev.ActorUserID = &actor.UserID
	}
	if actor.KeyID != 0 {
		ev.ActorKeyID = &actor.KeyID
	}
	return ev
}
