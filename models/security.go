package models

import "time"

// securityMigration (issue 17) adds second factors and the list of a
// user's sessions:
//   - user_totp: one authenticator app per user. secret is the TOTP key
//     sealed with the encryption key (tokens.Service.Seal), never plain.
//     confirmed_at is NULL while enrollment waits for its first code.
//     last_step is the last 30-second step a code was accepted for: a code
//     of that step or an earlier one is refused, so each works once.
//   - recovery_codes: SHA-256s of the single-use codes, used_at once spent.
//   - user_sessions: what a user sees of their sessions. token_hash is the
//     key scs stores the session under (HashTokenInStore: SHA-256,
//     base64url), never the token; ending a session deletes that row of
//     sessions too. ended_at marks one ended, so a request of it still in
//     flight cannot bring it back.
const securityMigration = `CREATE TABLE user_totp (
		user_id BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
		secret {{bytes}} NOT NULL,
		confirmed_at {{time}},
		last_step BIGINT NOT NULL DEFAULT 0,
		created_at {{time}} NOT NULL
	);

	CREATE TABLE recovery_codes (
		id {{id}},
		user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
		code_hash TEXT NOT NULL,
		used_at {{time}},
		created_at {{time}} NOT NULL
	);
	CREATE UNIQUE INDEX recovery_codes_user_hash_idx ON recovery_codes (user_id, code_hash);

	CREATE TABLE user_sessions (
		id {{id}},
		user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
		token_hash TEXT NOT NULL,
		ip TEXT NOT NULL DEFAULT '',
		user_agent TEXT NOT NULL DEFAULT '',
		created_at {{time}} NOT NULL,
		last_seen_at {{time}} NOT NULL,
		ended_at {{time}}
	);
	CREATE UNIQUE INDEX user_sessions_token_hash_idx ON user_sessions (token_hash);
	CREATE INDEX user_sessions_user_idx ON user_sessions (user_id, last_seen_at);`

// UserTOTP is a user's authenticator app (RFC 6238).
type UserTOTP struct {
	UserID      int64  `gorm:"primaryKey;autoIncrement:false"`
	Secret      []byte // sealed
	ConfirmedAt *time.Time
	LastStep    int64
	CreatedAt   time.Time
}

// TableName is user_totp, not gorm's plural.
func (UserTOTP) TableName() string { return "user_totp" }

// RecoveryCode is one single-use recovery code, stored as its SHA-256.
type RecoveryCode struct {
	ID        int64
	UserID    int64
	CodeHash  string
	UsedAt    *time.Time
	CreatedAt time.Time
}

// UserSession is one signed-in browser, as its owner sees it.
type UserSession struct {
	ID         int64
	UserID     int64
	TokenHash  string
	IP         string
	UserAgent  string
	CreatedAt  time.Time
	LastSeenAt time.Time
	EndedAt    *time.Time
}
