package webhooks

import (
	"context"
	"crypto/rand"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"

	"keysmith/keys"
	"keysmith/models"
	"keysmith/outbox"
)

// fromAudit maps the audit actions that are webhook events.
var fromAudit = map[string]string{
	"key.created": "key.created", "key.rotated": "key.rotated", "key.revoked": "key.revoked",
	"key.disabled": "key.disabled", "key.enabled": "key.enabled", "key.leaked": "key.leaked",
	"member.joined": "member.joined", "member.removed": "member.removed", "member.left": "member.removed",
}

// Event is a webhook's body: what happened, never a secret.
type Event struct {
	ID        string    `json:"id"` // also the webhook-id header: stable across retries
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      EventData `json:"data"`
}

// EventData says what the event is about.
type EventData struct {
	WorkspaceID int64     `json:"workspace_id"`
	Key         *KeyData  `json:"key,omitempty"`
	Member      string    `json:"member,omitempty"` // a member event's person
	Actor       string    `json:"actor,omitempty"`  // who did it, as the audit log names them
	Detail      string    `json:"detail,omitempty"`
	Stage       string    `json:"stage,omitempty"` // key.expiring: 14d, 7d or 1d
	Message     string    `json:"message,omitempty"`
	At          time.Time `json:"at"`
}

// KeyData names a key: never its secret.
type KeyData struct {
	ID          int64      `json:"id"`
	Name        string     `json:"name"`
	Hint        string     `json:"hint"`
	Environment string     `json:"environment"`
	ExpiresAt   *time.Time `json:"expires_at"`
}

func keyData(k models.APIKey) *KeyData {
	return &KeyData{ID: k.ID, Name: k.Name, Hint: k.Hint, Environment: k.Environment, ExpiresAt: k.ExpiresAt}
}

// call is a delivery's sealed payload.
type call struct {
	ID   string `json:"id"`
	Body []byte `json:"body"`
}

// WatchAudit makes every audited key and member change an event, queued
// in the transaction that records it (a gorm callback on the audit log).
func (s *Service) WatchAudit(db *gorm.DB) error {
	return db.Callback().Create().After("gorm:create").Register("keysmith:webhooks", func(tx *gorm.DB) {
		if tx.Error != nil {
			return
		}
		var evs []models.AuditEvent
		switch d := tx.Statement.Dest.(type) {
		case *models.AuditEvent:
			evs = []models.AuditEvent{*d}
		case models.AuditEvent:
			evs = []models.AuditEvent{d}
		case *[]models.AuditEvent:
			evs = *d
		case []models.AuditEvent:
			evs = d
		default:
			return
		}
		// A fresh statement on the callback's connection: the change's own
		// transaction, so the call is queued exactly when the change commits.
		db := s.db.Session(&gorm.Session{NewDB: true, Context: tx.Statement.Context})
		db.Statement.ConnPool = tx.Statement.ConnPool
		for _, ev := range evs {
			if typ, ok := fromAudit[ev.Action]; ok {
				if err := s.fromAuditEvent(tx.Statement.Context, db, typ, ev); err != nil {
					_ = tx.AddError(err)
					return
				}
			}
		}
	})
}

func (s *Service) fromAuditEvent(ctx context.Context, db *gorm.DB, typ string, ev models.AuditEvent) error {
	data := EventData{WorkspaceID: ev.WorkspaceID, Actor: ev.ActorLabel, Detail: ev.Detail, At: ev.CreatedAt}
	if data.At.IsZero() {
		data.At = s.clock.Now().UTC()
	}
	if ev.KeyID != nil && strings.HasPrefix(typ, "key.") {
		var k models.APIKey
		if err := db.Select("id, name, hint, environment, expires_at").Where("id = ?", *ev.KeyID).Take(&k).Error; err != nil {
			return err
		}
		data.Key = keyData(k)
	} else {
		data.Member = ev.KeyLabel
	}
	return s.Emit(ctx, db, typ, data, "")
}

// Staged is a key whose reminder stage the planner just planned.
type Staged struct {
	Key   models.APIKey
	Stage string // 14d, 7d, 1d or expired
}

// KeyStages queues key.expiring (with the reminder's stage) or key.expired
// for each key the planner just planned; once per key, stage and endpoint
// however often the planner runs. The endpoints of every workspace in the
// batch are read in one query, so a pass costs the same whether or not
// anyone listens.
func (s *Service) KeyStages(ctx context.Context, db *gorm.DB, staged []Staged) error {
	if len(staged) == 0 {
		return nil
	}
	ws := make([]int64, 0, 4)
	for _, st := range staged {
		if !slices.Contains(ws, st.Key.WorkspaceID) {
			ws = append(ws, st.Key.WorkspaceID)
		}
	}
	byWorkspace, err := s.endpoints(ctx, db, ws...)
	if err != nil || len(byWorkspace) == 0 {
		return err
	}
	now := s.clock.Now().UTC()
	var msgs []outbox.Message
	for _, st := range staged {
		typ := "key.expiring"
		data := EventData{WorkspaceID: st.Key.WorkspaceID, Key: keyData(st.Key), Stage: st.Stage, At: now}
		if st.Stage == "expired" {
			typ, data.Stage = "key.expired", ""
		}
		ms, err := s.messages(byWorkspace[st.Key.WorkspaceID], typ, data, typ+":"+itoa(st.Key.ID)+":"+st.Stage)
		if err != nil {
			return err
		}
		msgs = append(msgs, ms...)
	}
	_, err = s.outbox.Enqueue(ctx, db, msgs...)
	return err
}

// Emit queues event typ for every enabled endpoint of the workspace that
// wants it, in db (the caller's transaction). dedupe, when set, makes it
// once per endpoint.
func (s *Service) Emit(ctx context.Context, db *gorm.DB, typ string, data EventData, dedupe string) error {
	byWorkspace, err := s.endpoints(ctx, db, data.WorkspaceID)
	if err != nil || len(byWorkspace) == 0 {
		return err
	}
	msgs, err := s.messages(byWorkspace[data.WorkspaceID], typ, data, dedupe)
	if err != nil {
		return err
	}
	_, err = s.outbox.Enqueue(ctx, db, msgs...)
	return err
}

// endpoints are the enabled endpoints of the workspaces, by workspace.
func (s *Service) endpoints(ctx context.Context, db *gorm.DB, workspaces ...int64) (map[int64][]models.WebhookEndpoint, error) {
	var es []models.WebhookEndpoint
	err := db.WithContext(ctx).Select("id, workspace_id, url, events").
		Where("workspace_id IN ? AND enabled", workspaces).Find(&es).Error
	if err != nil || len(es) == 0 {
		return nil, err
	}
	by := make(map[int64][]models.WebhookEndpoint, len(workspaces))
	for _, e := range es {
		by[e.WorkspaceID] = append(by[e.WorkspaceID], e)
	}
	return by, nil
}

// messages are event typ's calls to those of es that want it.
func (s *Service) messages(es []models.WebhookEndpoint, typ string, data EventData, dedupe string) ([]outbox.Message, error) {
	var msgs []outbox.Message
	for _, e := range es {
		if typ != TestEvent && !strings.Contains(" "+e.Events+" ", " "+typ+" ") {
			continue
		}
		m, err := s.message(e, typ, data)
		if err != nil {
			return nil, err
		}
		if dedupe != "" {
			m.Dedupe = dedupe + ":" + itoa(e.ID)
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// message is one call to endpoint e: its body is written now, signed when
// sent.
func (s *Service) message(e models.WebhookEndpoint, typ string, data EventData) (outbox.Message, error) {
	ev := Event{ID: "msg_" + strings.ToLower(rand.Text()), Type: typ, Timestamp: s.clock.Now().UTC(), Data: data}
	body, err := jsonMarshal(ev)
	if err != nil {
		return outbox.Message{}, err
	}
	m := outbox.Message{Kind: outbox.KindWebhook, WorkspaceID: data.WorkspaceID, EndpointID: e.ID, Recipient: e.URL,
		Subject: typ, Payload: call{ID: ev.ID, Body: body}}
	if data.Key != nil {
		m.KeyID = data.Key.ID
	}
	return m, nil
}

// SendTest sends a webhook.test event to one endpoint at once.
func (s *Service) SendTest(ctx context.Context, workspaceID int64, actor keys.Actor, id int64) error {
	if !mayManage(actor) {
		return ErrForbidden
	}
	e, err := s.Get(ctx, workspaceID, id)
	if err != nil {
		return err
	}
	m, err := s.message(e, TestEvent, EventData{WorkspaceID: workspaceID, Message: "A test event from Keysmith.", At: s.clock.Now().UTC()})
	if err != nil {
		return err
	}
	return s.outbox.Deliver(ctx, m)
}
