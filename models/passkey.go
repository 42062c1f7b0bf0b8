package models

import "time"

// passkeysMigration (issue 17) stores WebAuthn credentials, one row each:
//   - credential_id is the authenticator's credential ID, unique across the
//     install (passkeys_credential_id_idx finds a passwordless sign-in's
//     credential); user_handle is the random handle the credential carries
//     for its user (the same for all of a user's passkeys), never the email.
//   - public_key is the COSE public key: public, not a secret.
//   - sign_count is the authenticator's last signature counter; an
//     assertion that does not move it forward (a possible clone) is refused.
//   - transports is space-separated (usb, nfc, ble, internal, hybrid).
//   - backup_eligible and backup_state are the BE and BS flags: a synced
//     passkey (a password manager's) or one bound to a device.
const passkeysMigration = `CREATE TABLE passkeys (
		id {{id}},
		user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
		credential_id {{bytes}} NOT NULL,
		user_handle {{bytes}} NOT NULL,
		public_key {{bytes}} NOT NULL,
		sign_count BIGINT NOT NULL DEFAULT 0,
		aaguid {{bytes}},
		transports TEXT NOT NULL DEFAULT '',
		attestation_format TEXT NOT NULL DEFAULT '',
		user_verified BOOLEAN NOT NULL DEFAULT FALSE,
		backup_eligible BOOLEAN NOT NULL DEFAULT FALSE,
		backup_state BOOLEAN NOT NULL DEFAULT FALSE,
		name TEXT NOT NULL,
		created_at {{time}} NOT NULL,
		last_used_at {{time}}
	);
	CREATE UNIQUE INDEX passkeys_credential_id_idx ON passkeys (credential_id);
	CREATE INDEX passkeys_user_idx ON passkeys (user_id, created_at);`

// Passkey is one WebAuthn credential of a user (identity.Passkeys).
type Passkey struct {
	ID                int64
	UserID            int64
	CredentialID      []byte
	UserHandle        []byte
	PublicKey         []byte
	SignCount         int64
	AAGUID            []byte `gorm:"column:aaguid"`
	Transports        string
	AttestationFormat string
	UserVerified      bool
	BackupEligible    bool
	BackupState       bool
	Name              string
	CreatedAt         time.Time
	LastUsedAt        *time.Time
}
