package models

import (
	"fmt"
	"strings"

	"gorm.io/gorm"
)

// migrations are applied in order, each once, each in its own transaction.
// Never edit one that has shipped: append a new one. The SQL is written once
// for both engines; the placeholders below name the few types (and table
// options) that differ.
var migrations = []string{
	// 1: accounts, workspaces, sessions
	`CREATE TABLE users (
		id {{id}},
		email TEXT NOT NULL,
		name TEXT NOT NULL DEFAULT '',
		password_hash TEXT NOT NULL,
		session_epoch INTEGER NOT NULL DEFAULT 0,
		is_demo BOOLEAN NOT NULL DEFAULT FALSE,
		created_at {{time}} NOT NULL,
		updated_at {{time}} NOT NULL
	);
	CREATE UNIQUE INDEX users_email_idx ON users (email);

	CREATE TABLE workspaces (
		id {{id}},
		name TEXT NOT NULL,
		personal BOOLEAN NOT NULL DEFAULT FALSE,
		created_at {{time}} NOT NULL,
		updated_at {{time}} NOT NULL
	);

	CREATE TABLE memberships (
		id {{id}},
		workspace_id BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
		user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
		role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'editor', 'viewer')),
		created_at {{time}} NOT NULL
	);
	CREATE UNIQUE INDEX memberships_workspace_user_idx ON memberships (workspace_id, user_id);
	CREATE INDEX memberships_user_idx ON memberships (user_id);

	CREATE TABLE password_resets (
		id {{id}},
		user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
		token_hash TEXT NOT NULL,
		expires_at {{time}} NOT NULL,
		used_at {{time}},
		created_at {{time}} NOT NULL
	);
	CREATE UNIQUE INDEX password_resets_token_hash_idx ON password_resets (token_hash);

	CREATE TABLE login_attempts (
		id {{id}},
		email TEXT NOT NULL,
		ip TEXT NOT NULL,
		succeeded BOOLEAN NOT NULL,
		created_at {{time}} NOT NULL
	);
	CREATE INDEX login_attempts_email_idx ON login_attempts (email, created_at);
	CREATE INDEX login_attempts_ip_idx ON login_attempts (ip, created_at);

	-- the table scs's gormstore reads and writes
	CREATE TABLE sessions (
		token VARCHAR(43) PRIMARY KEY,
		data {{bytes}},
		expiry {{time}}
	);
	CREATE INDEX idx_sessions_expiry ON sessions (expiry);`,

	// 2: API keys and the audit log
	`CREATE TABLE api_keys (
		id {{id}},
		workspace_id BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
		name TEXT NOT NULL,
		description TEXT NOT NULL DEFAULT '',
		kind TEXT NOT NULL CHECK (kind IN ('sk', 'pk')),
		environment TEXT NOT NULL CHECK (environment IN ('live', 'test')),
		permission TEXT NOT NULL CHECK (permission IN ('read', 'write', 'admin', 'custom')),
		scopes TEXT NOT NULL,
		secret_hash TEXT NOT NULL,
		hint TEXT NOT NULL,
		expires_at {{time}},
		created_at {{time}} NOT NULL,
		updated_at {{time}} NOT NULL,
		created_by_id BIGINT REFERENCES users (id) ON DELETE SET NULL,
		last_used_at {{time}},
		last_used_ip TEXT NOT NULL DEFAULT '',
		last_used_user_agent TEXT NOT NULL DEFAULT '',
		revoked_at {{time}},
		revoked_by_id BIGINT REFERENCES users (id) ON DELETE SET NULL,
		replaces_id BIGINT REFERENCES api_keys (id) ON DELETE SET NULL,
		rotated_to_id BIGINT REFERENCES api_keys (id) ON DELETE SET NULL,
		rotated_at {{time}}
	);
	CREATE UNIQUE INDEX api_keys_secret_hash_idx ON api_keys (secret_hash);
	CREATE INDEX api_keys_workspace_created_idx ON api_keys (workspace_id, created_at, id);

	CREATE TABLE audit_events (
		id {{id}},
		workspace_id BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
		actor_user_id BIGINT REFERENCES users (id) ON DELETE SET NULL,
		actor_key_id BIGINT REFERENCES api_keys (id) ON DELETE SET NULL,
		actor_label TEXT NOT NULL,
		action TEXT NOT NULL,
		key_id BIGINT REFERENCES api_keys (id) ON DELETE SET NULL,
		key_label TEXT NOT NULL DEFAULT '',
		detail TEXT NOT NULL DEFAULT '',
		ip TEXT NOT NULL DEFAULT '',
		user_agent TEXT NOT NULL DEFAULT '',
		created_at {{time}} NOT NULL
	);
	CREATE INDEX audit_events_workspace_created_idx ON audit_events (workspace_id, created_at, id);
	CREATE INDEX audit_events_key_idx ON audit_events (key_id);`,

	// 3: per-key rate limits set by admins (NULL: the default of the key's kind)
	`ALTER TABLE api_keys ADD COLUMN rate_limit INTEGER CHECK (rate_limit > 0);`,

	// 4: expiry reminders. api_keys.reminder_due_at is when the key's next
	// reminder falls due (NULL: none), so a scheduler pass reads only the
	// keys that are due. One delivery row per (key, reminder, recipient).
	`ALTER TABLE api_keys ADD COLUMN reminder_due_at {{time}};
	CREATE INDEX api_keys_reminder_due_idx ON api_keys (reminder_due_at);
	ALTER TABLE users ADD COLUMN reminders_opt_out BOOLEAN NOT NULL DEFAULT FALSE;
	ALTER TABLE users ADD COLUMN unsubscribe_token TEXT;
	CREATE UNIQUE INDEX users_unsubscribe_token_idx ON users (unsubscribe_token);

	CREATE TABLE reminder_deliveries (
		id {{id}},
		workspace_id BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
		key_id BIGINT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
		stage TEXT NOT NULL CHECK (stage IN ('14d', '7d', '1d', 'expired')),
		user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
		email TEXT NOT NULL,
		status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'cancelled')),
		attempts INTEGER NOT NULL DEFAULT 0,
		next_attempt_at {{time}} NOT NULL,
		claimed_until {{time}},
		claim_token TEXT NOT NULL DEFAULT '',
		last_error TEXT NOT NULL DEFAULT '',
		sent_at {{time}},
		created_at {{time}} NOT NULL
	);
	CREATE UNIQUE INDEX reminder_deliveries_once_idx ON reminder_deliveries (key_id, stage, user_id);
	CREATE INDEX reminder_deliveries_due_idx ON reminder_deliveries (status, next_attempt_at);
	CREATE INDEX reminder_deliveries_workspace_idx ON reminder_deliveries (workspace_id, created_at);`,

	// 5: teams: invitations, and each workspace's key policy
	`CREATE TABLE invitations (
		id {{id}},
		workspace_id BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
		email TEXT NOT NULL,
		role TEXT NOT NULL CHECK (role IN ('admin', 'editor', 'viewer')),
		token_hash TEXT NOT NULL,
		invited_by_id BIGINT REFERENCES users (id) ON DELETE SET NULL,
		expires_at {{time}} NOT NULL,
		accepted_at {{time}},
		cancelled_at {{time}},
		created_at {{time}} NOT NULL,
		updated_at {{time}} NOT NULL
	);
	CREATE UNIQUE INDEX invitations_token_idx ON invitations (token_hash);
	CREATE INDEX invitations_workspace_idx ON invitations (workspace_id, created_at);
	ALTER TABLE workspaces ADD COLUMN default_expiry_days INTEGER CHECK (default_expiry_days > 0);
	ALTER TABLE workspaces ADD COLUMN max_lifetime_days INTEGER CHECK (max_lifetime_days > 0);`,

	// 6: no secret stored as it is. Sessions are now stored under the
	// SHA-256 of their token (scs's HashTokenInStore), so the rows stored
	// under raw tokens end (migration 1 made the table, so this works on a
	// fresh database too): everyone logs in once more. Unsubscribe links
	// get a fresh token per mail, stored as its SHA-256 (one year's worth
	// kept); the plain per-user tokens go, so links in mails sent before
	// show "invalid link" and Settings → Notifications still opts out.
	`DELETE FROM sessions;
	DROP INDEX users_unsubscribe_token_idx;
	ALTER TABLE users DROP COLUMN unsubscribe_token;

	CREATE TABLE unsubscribe_tokens (
		id {{id}},
		user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
		token_hash TEXT NOT NULL,
		created_at {{time}} NOT NULL
	);
	CREATE UNIQUE INDEX unsubscribe_tokens_hash_idx ON unsubscribe_tokens (token_hash);
	CREATE INDEX unsubscribe_tokens_created_idx ON unsubscribe_tokens (created_at);`,

	// 7: sign-ups wait for their emailed confirmation link, so the sign-up
	// form answers alike for new and registered addresses.
	`CREATE TABLE pending_signups (
		id {{id}},
		email TEXT NOT NULL,
		name TEXT NOT NULL DEFAULT '',
		password_hash TEXT NOT NULL,
		token_hash TEXT NOT NULL,
		expires_at {{time}} NOT NULL,
		created_at {{time}} NOT NULL
	);
	CREATE UNIQUE INDEX pending_signups_token_hash_idx ON pending_signups (token_hash);
	CREATE INDEX pending_signups_email_idx ON pending_signups (email);
	CREATE INDEX pending_signups_expires_idx ON pending_signups (expires_at);`,

	// 8: per-key hourly and daily quotas (NULL: none), on top of the
	// per-minute limit of migration 3
	`ALTER TABLE api_keys ADD COLUMN hourly_quota INTEGER CHECK (hourly_quota > 0);
	ALTER TABLE api_keys ADD COLUMN daily_quota INTEGER CHECK (daily_quota > 0);`,

	// 9: the delivery log filtered by status, and the failed-delivery banner
	// of Settings → API Keys (a count on every page view), read an index
	// instead of every delivery the workspace ever had.
	`CREATE INDEX reminder_deliveries_workspace_status_idx ON reminder_deliveries (workspace_id, status, created_at, id);`,

	// 10: how many account emails (sign-up links, "you already have an
	// account", reset links) each address got lately, so the public forms
	// cannot be used to flood an inbox.
	`CREATE TABLE mail_sends (
		id {{id}},
		address TEXT NOT NULL,
		created_at {{time}} NOT NULL
	);
	CREATE INDEX mail_sends_address_idx ON mail_sends (address, created_at);`,

	// 11: the audit log pages by keyset (created_at, id), newest first;
	// filtered by action it seeks this index instead of walking the
	// workspace's whole log. audit_events_workspace_created_idx serves the
	// unfiltered and date-filtered log.
	`CREATE INDEX audit_events_workspace_action_idx ON audit_events (workspace_id, action, created_at, id);`,

	// 12: the key list's filter tabs without reading every key. key_counts
	// holds how many keys each workspace has per environment, revoked or
	// not, kept in the transaction of every create and revoke (keys.Service).
	// The time-dependent tabs (expired, expiring, unused) count an index
	// range instead, up to a cap; these two indexes hold only unrevoked keys.
	`CREATE TABLE key_counts (
		workspace_id BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
		environment TEXT NOT NULL,
		revoked INTEGER NOT NULL CHECK (revoked IN (0, 1)),
		n BIGINT NOT NULL CHECK (n >= 0),
		PRIMARY KEY (workspace_id, environment, revoked)
	);
	INSERT INTO key_counts (workspace_id, environment, revoked, n)
		SELECT workspace_id, environment, CASE WHEN revoked_at IS NULL THEN 0 ELSE 1 END, COUNT(*)
		FROM api_keys GROUP BY workspace_id, environment, CASE WHEN revoked_at IS NULL THEN 0 ELSE 1 END;
	CREATE INDEX api_keys_workspace_expires_idx ON api_keys (workspace_id, expires_at, environment, rotated_to_id) WHERE revoked_at IS NULL;
	CREATE INDEX api_keys_workspace_used_idx ON api_keys (workspace_id, (COALESCE(last_used_at, created_at)), expires_at, environment) WHERE revoked_at IS NULL;`,

	// 13: the keys that sign derived tokens (issue 10), models/signing_key.go
	signingKeysMigration,

	// 14: a key can be disabled: paused, reversibly. The tabs' indexes of
	// migration 12 gain disabled_at, so Active, Expiring and Unused still
	// count from the index alone; Disabled counts its own small index.
	`ALTER TABLE api_keys ADD COLUMN disabled_at {{time}};
	ALTER TABLE api_keys ADD COLUMN disabled_by_id BIGINT REFERENCES users (id) ON DELETE SET NULL;
	DROP INDEX api_keys_workspace_expires_idx;
	DROP INDEX api_keys_workspace_used_idx;
	CREATE INDEX api_keys_workspace_expires_idx ON api_keys (workspace_id, expires_at, environment, rotated_to_id, disabled_at) WHERE revoked_at IS NULL;
	CREATE INDEX api_keys_workspace_used_idx ON api_keys (workspace_id, (COALESCE(last_used_at, created_at)), expires_at, environment, disabled_at) WHERE revoked_at IS NULL;
	CREATE INDEX api_keys_workspace_disabled_idx ON api_keys (workspace_id, expires_at, environment) WHERE revoked_at IS NULL AND disabled_at IS NOT NULL;`,

	// 15: OAuth 2.1 for third-party apps (issue 11), models/oauth.go
	oauthMigration,

	// 16: one outbox for every email and webhook (issue 13), models/delivery.go
	deliveriesMigration,

	// 17: the inactivity policy (issue 13): a workspace may disable or
	// revoke keys unused for inactivity_days ('' is off; the days are kept
	// while it is off, so the form remembers them). inactivity_since is when
	// it was last switched on: warnings from before do not count. A key's
	// inactivity_warned_at is when it was last warned; a use after it (a
	// later COALESCE(last_used_at, created_at)) makes it stale, so the key
	// is warned again before anything is done to it (keys/inactivity.go).
	// The job reads api_keys_workspace_used_idx (migration 14) per
	// workspace, and finds the workspaces through the partial index below.
	`ALTER TABLE workspaces ADD COLUMN inactivity_action TEXT NOT NULL DEFAULT '' CHECK (inactivity_action IN ('', 'disable', 'revoke'));
	ALTER TABLE workspaces ADD COLUMN inactivity_days INTEGER NOT NULL DEFAULT 90 CHECK (inactivity_days BETWEEN 30 AND 365);
	ALTER TABLE workspaces ADD COLUMN inactivity_since {{time}};
	CREATE INDEX workspaces_inactivity_idx ON workspaces (id) WHERE inactivity_action <> '';
	ALTER TABLE api_keys ADD COLUMN inactivity_warned_at {{time}};`,

	// 18: webhook endpoints (issue 13), models/webhook.go
	webhookEndpointsMigration,

	// 19: mail throttles (issue 13). The public forms count their requests
	// per client IP too, not only per address; an invitation's resends are
	// counted per invitation. Account mails have no invitation_id.
	`ALTER TABLE mail_sends ADD COLUMN ip TEXT NOT NULL DEFAULT '';
	ALTER TABLE mail_sends ADD COLUMN invitation_id BIGINT REFERENCES invitations (id) ON DELETE CASCADE;
	CREATE INDEX mail_sends_ip_idx ON mail_sends (ip, created_at);
	CREATE INDEX mail_sends_invitation_idx ON mail_sends (invitation_id, created_at) WHERE invitation_id IS NOT NULL;`,

	// 20: where a key may be used from, and how much it is used (issue 12).
	// allowed_ips holds canonical addresses and networks separated by
	// spaces ('' for anywhere; keys.CanonicalAllowlist). key_usage counts a
	// key's requests by outcome (keys.Outcome) per hour (span 1) and per UTC
	// day (span 24), both kept by the one upsert of each last-used flush,
	// so a chart or a list's sparklines read one row per bar on the primary
	// key instead of summing hours. hour is the bucket's start in whole
	// hours since the Unix epoch (UTC). On SQLite the table is stored in
	// its primary key's order (WITHOUT ROWID), so a key's buckets are read
	// side by side rather than one lookup each. The scheduler prunes rows
	// past 90 days through key_usage_hour_idx.
	`ALTER TABLE api_keys ADD COLUMN allowed_ips TEXT NOT NULL DEFAULT '';
	CREATE TABLE key_usage (
		key_id BIGINT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
		span SMALLINT NOT NULL CHECK (span IN (1, 24)),
		hour BIGINT NOT NULL,
		success BIGINT NOT NULL DEFAULT 0,
		rate_limited BIGINT NOT NULL DEFAULT 0,
		forbidden BIGINT NOT NULL DEFAULT 0,
		other BIGINT NOT NULL DEFAULT 0,
		PRIMARY KEY (key_id, span, hour)
	){{clustered}};
	CREATE INDEX key_usage_hour_idx ON key_usage (hour);`,

	// 21: second factors and the sessions a user sees (issue 17),
	// models/security.go
	securityMigration,

	// 22: a workspace that requires two-step verification of its members
	// (issue 17): since when (NULL: it does not), and the days of grace
	// after that before a member without it is held to Settings →
	// Security (teams/twofactor.go).
	`ALTER TABLE workspaces ADD COLUMN two_factor_required_at {{time}};
	ALTER TABLE workspaces ADD COLUMN two_factor_grace_days INTEGER NOT NULL DEFAULT 0 CHECK (two_factor_grace_days BETWEEN 0 AND 90);`,
	// 23: passkeys (issue 17), models/passkey.go
	passkeysMigration,
	// 24: single sign-on through the operator's OpenID provider (issue 18),
	// models/sso.go
	ssoMigration,
}

var dialects = map[string]*strings.Replacer{
	"sqlite": strings.NewReplacer(
		"{{id}}", "INTEGER PRIMARY KEY AUTOINCREMENT",
		"{{time}}", "DATETIME",
		"{{bytes}}", "BLOB",
		"{{clustered}}", " WITHOUT ROWID",
	),
	"postgres": strings.NewReplacer(
		"{{id}}", "BIGSERIAL PRIMARY KEY",
		"{{time}}", "TIMESTAMPTZ",
		"{{bytes}}", "BYTEA",
		"{{clustered}}", "",
	),
}

// SchemaVersion is the number of migrations this binary knows.
func SchemaVersion() int { return len(migrations) }

// Migrate applies every migration the database has not seen yet and returns
// how many it applied. Replicas starting together on PostgreSQL wait for one
// another on an advisory lock, so each migration runs once.
func Migrate(db *gorm.DB) (applied int, err error) {
	replacer, ok := dialects[db.Dialector.Name()]
	if !ok {
		return 0, fmt.Errorf("migrate: unsupported database %q", db.Dialector.Name())
	}
	err = db.Transaction(func(tx *gorm.DB) error {
		if IsPostgres(tx) {
			// 0x6b657973 is "keys": any constant shared by every replica works.
			if err := tx.Exec("SELECT pg_advisory_xact_lock(1801812339)").Error; err != nil {
				return err
			}
		}
		if err := tx.Exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)").Error; err != nil {
			return err
		}
		var current int
		if err := tx.Raw("SELECT COALESCE(MAX(version), 0) FROM schema_version").Scan(&current).Error; err != nil {
			return err
		}
		if current > len(migrations) {
			return fmt.Errorf("migrate: database is at schema version %d but this binary knows only %d; run a newer keysmith", current, len(migrations))
		}
		for v := current + 1; v <= len(migrations); v++ {
			for _, stmt := range splitStatements(replacer.Replace(migrations[v-1])) {
				if err := tx.Exec(stmt).Error; err != nil {
					return fmt.Errorf("migration %d: %w", v, err)
				}
			}
			if err := tx.Exec("DELETE FROM schema_version").Error; err != nil {
				return err
			}
			if err := tx.Exec("INSERT INTO schema_version (version) VALUES (?)", v).Error; err != nil {
				return err
			}
			applied++
		}
		return nil
	})
	return applied, err
}

// splitStatements splits a migration on semicolons that end a line; the
// migrations above keep to that so no SQL parser is needed.
func splitStatements(sql string) []string {
	var out []string
	for _, stmt := range strings.Split(sql, ";\n") {
		var lines []string
		for _, line := range strings.Split(stmt, "\n") {
			if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "--") {
				lines = append(lines, line)
			}
		}
		if s := strings.TrimSuffix(strings.TrimSpace(strings.Join(lines, "\n")), ";"); s != "" {
			out = append(out, s)
		}
	}
	return out
}
