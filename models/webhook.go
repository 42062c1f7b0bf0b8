package models

import (
	"strings"
	"time"
)

// webhookEndpointsMigration holds the endpoints a workspace's webhooks go
// to (package webhooks). The signing secret is kept sealed (AES-GCM under
// the encryption key): the receiver needs it as it is, so a hash will not
// do. A call to an endpoint is a delivery in the outbox (endpoint_id).
const webhookEndpointsMigration = `CREATE TABLE webhook_endpoints (
		id {{id}},
		workspace_id BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
		url TEXT NOT NULL,
		description TEXT NOT NULL DEFAULT '',
		events TEXT NOT NULL,
		secret_enc {{bytes}} NOT NULL,
		secret_hint TEXT NOT NULL,
		enabled BOOLEAN NOT NULL DEFAULT TRUE,
		disabled_reason TEXT NOT NULL DEFAULT '',
		failing_since {{time}},
		last_delivery_at {{time}},
		created_by_id BIGINT REFERENCES users (id) ON DELETE SET NULL,
		created_at {{time}} NOT NULL,
		updated_at {{time}} NOT NULL
	);
	CREATE INDEX webhook_endpoints_workspace_idx ON webhook_endpoints (workspace_id, created_at);`

// WebhookEndpoint is where a workspace's webhooks go.
type WebhookEndpoint struct {
	ID             int64
	WorkspaceID    int64
	URL            string `gorm:"column:url"`
	Description    string
	Events         string // space-separated: key.created key.revoked …
	SecretEnc      []byte // sealed whsec_… secret
	SecretHint     string // whsec_abcd…: enough to tell secrets apart
	Enabled        bool
	DisabledReason string     // why Keysmith disabled it ("" when a person did, or it is on)
	FailingSince   *time.Time // the first failed call since the last success
	LastDeliveryAt *time.Time
	CreatedByID    *int64
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// EventList is the events the endpoint wants.
func (e WebhookEndpoint) EventList() []string { return strings.Fields(e.Events) }
