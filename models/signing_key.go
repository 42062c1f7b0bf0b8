package models

import "time"

// signingKeysMigration is migration 13: the keys that sign derived tokens
// (package tokens). The private part is stored only encrypted
// (AES-256-GCM under KEYSMITH_ENCRYPTION_KEY, the kid as associated data),
// so a copy of the database signs nothing. A key is current until a
// rotation sets its retired_at; it then keeps verifying, and stays in the
// JWKS, until the tokens it signed have expired.
const signingKeysMigration = `CREATE TABLE signing_keys (
		id {{id}},
		kid TEXT NOT NULL,
		algorithm TEXT NOT NULL CHECK (algorithm IN ('EdDSA')),
		public_key {{bytes}} NOT NULL,
		private_key_enc {{bytes}} NOT NULL,
		created_at {{time}} NOT NULL,
		retired_at {{time}}
	);
	CREATE UNIQUE INDEX signing_keys_kid_idx ON signing_keys (kid);
	CREATE INDEX signing_keys_retired_idx ON signing_keys (retired_at);`

// SigningKey is one key that signs derived tokens. PublicKey is the raw
// Ed25519 public key; PrivateKeyEnc is the nonce followed by the AES-GCM
// sealed Ed25519 seed, never the seed itself.
type SigningKey struct {
	ID            int64
	KID           string `gorm:"column:kid"` // RFC 7638 thumbprint of the public key; the JWT header's kid
	Algorithm     string // EdDSA
	PublicKey     []byte
	PrivateKeyEnc []byte
	CreatedAt     time.Time
	RetiredAt     *time.Time // when a rotation replaced it; nil for the current key
}
