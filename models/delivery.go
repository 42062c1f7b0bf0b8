package models

import "time"

// deliveriesMigration makes the reminders' delivery queue the one outbox
// (package outbox) of every email and webhook: reminder_deliveries becomes
// deliveries, whose rows say what they carry (kind) and, unless a
// composer builds them at send time (reminders), carry it sealed
// (payload: AES-GCM under the encryption key, since a mail may hold a
// single-use link). Reminders keep their one-per-(key, stage, recipient)
// index; their ids change once, and with them the Message-IDs of the few
// still pending.
const deliveriesMigration = `CREATE TABLE deliveries (
		id {{id}},
		kind TEXT NOT NULL,
		workspace_id BIGINT REFERENCES workspaces (id) ON DELETE CASCADE,
		key_id BIGINT REFERENCES api_keys (id) ON DELETE CASCADE,
		stage TEXT NOT NULL DEFAULT '',
		user_id BIGINT REFERENCES users (id) ON DELETE CASCADE,
		endpoint_id BIGINT,
		recipient TEXT NOT NULL,
		subject TEXT NOT NULL DEFAULT '',
		payload {{bytes}},
		status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'cancelled')),
		attempts INTEGER NOT NULL DEFAULT 0,
		next_attempt_at {{time}} NOT NULL,
		claimed_until {{time}},
		claim_token TEXT NOT NULL DEFAULT '',
		last_error TEXT NOT NULL DEFAULT '',
		response_code INTEGER,
		dedupe_key TEXT,
		sent_at {{time}},
		created_at {{time}} NOT NULL
	);
	INSERT INTO deliveries (kind, workspace_id, key_id, stage, user_id, recipient, status, attempts, next_attempt_at, last_error, sent_at, created_at)
		SELECT 'reminder', workspace_id, key_id, stage, user_id, email, status, attempts, next_attempt_at, last_error, sent_at, created_at
		FROM reminder_deliveries ORDER BY id;
	DROP TABLE reminder_deliveries;
	CREATE UNIQUE INDEX deliveries_reminder_once_idx ON deliveries (key_id, stage, user_id) WHERE kind = 'reminder';
	CREATE INDEX deliveries_due_idx ON deliveries (status, next_attempt_at);
	CREATE INDEX deliveries_workspace_idx ON deliveries (workspace_id, created_at);
	CREATE INDEX deliveries_workspace_status_idx ON deliveries (workspace_id, status, created_at, id);
	CREATE UNIQUE INDEX deliveries_dedupe_idx ON deliveries (dedupe_key) WHERE dedupe_key IS NOT NULL;
	CREATE INDEX deliveries_endpoint_idx ON deliveries (endpoint_id, created_at) WHERE endpoint_id IS NOT NULL;`

// Delivery is one email or webhook call, sent exactly once: claimed (a
// lease) before sending, marked sent only after the receiver accepted it.
type Delivery struct {
	ID            int64
	Kind          string // reminder, mail, webhook
	WorkspaceID   *int64
	KeyID         *int64
	Key           APIKey `gorm:"foreignKey:KeyID"`
	Stage         string // a reminder's: 14d, 7d, 1d or expired
	UserID        *int64
	EndpointID    *int64
	Recipient     string // an email address, or a webhook's URL
	Subject       string // what the delivery log shows
	Payload       []byte // sealed; nil for reminders
	Status        string // pending, sent, failed or cancelled
	Attempts      int
	NextAttemptAt time.Time
	ClaimedUntil  *time.Time
	ClaimToken    string
	LastError     string
	ResponseCode  *int    // a webhook's last HTTP status
	DedupeKey     *string // one delivery per key: a second enqueue is dropped
	SentAt        *time.Time
	CreatedAt     time.Time
}
