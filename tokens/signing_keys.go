package tokens

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"gorm.io/gorm"

	"keysmith/models"
)

// Algorithm is the one algorithm tokens are signed with, and the only one
// Verify accepts.
const Algorithm = jose.EdDSA

// signingLock serialises key generation and rotation among replicas on
// PostgreSQL (SQLite's write transactions are serial already).
const signingLock = 0x7369676e // "sign"

// errNoCurrentKey: the database holds no key to sign with yet.
var errNoCurrentKey = errors.New("tokens: no current signing key")

// keyring is one loaded state of the signing keys; a reload replaces it
// whole, so readers need no lock.
type keyring struct {
	signer   jose.Signer // the current key's
	current  string      // its kid
	keys     []publicKey // newest first: the current key, then retired ones
	loadedAt time.Time
}

type publicKey struct {
	kid       string
	key       ed25519.PublicKey
	retiredAt *time.Time
}

// usable reports whether k still verifies at now: it is current, or it
// retired so recently that tokens it signed may still be alive.
func (k publicKey) usable(now time.Time) bool {
	return k.retiredAt == nil || now.Before(k.retiredAt.Add(RetiredWindow))
}

func (r *keyring) find(kid string, now time.Time) (ed25519.PublicKey, bool) {
	for _, k := range r.keys {
		if k.kid == kid && k.usable(now) {
			return k.key, true
		}
	}
	return nil, false
}

// Rotate adds a new current signing key and returns its kid. Tokens signed
// by the keys it retires keep verifying until they expire; keys retired
// long enough ago for every token of theirs to have expired are deleted.
// Other replicas sign with the new key within RefreshEvery.
func (s *Service) Rotate(ctx context.Context) (string, error) {
	var kid string
	err := s.writeKeys(ctx, func(tx *gorm.DB, now time.Time) error {
		if err := tx.Model(&models.SigningKey{}).Where("retired_at IS NULL").Update("retired_at", now).Error; err != nil {
			return err
		}
		if err := tx.Where("retired_at < ?", now.Add(-RetiredWindow)).Delete(&models.SigningKey{}).Error; err != nil {
			return err
		}
		var err error
		kid, err = s.createKey(tx, now)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("rotate signing key: %w", err)
	}
	if _, err := s.reload(ctx, 0); err != nil {
		return "", err
	}
	return kid, nil
}

// ensureKey generates the first signing key unless there is a current one.
func (s *Service) ensureKey(ctx context.Context) error {
	err := s.writeKeys(ctx, func(tx *gorm.DB, now time.Time) error {
		var current int64
		if err := tx.Model(&models.SigningKey{}).Where("retired_at IS NULL").Count(&current).Error; err != nil {
			return err
		}
		if current > 0 {
			return nil
		}
		_, err := s.createKey(tx, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("create the first signing key: %w", err)
	}
	return nil
}

func (s *Service) writeKeys(ctx context.Context, fn func(tx *gorm.DB, now time.Time) error) error {
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if models.IsPostgres(tx) {
			if err := tx.Exec("SELECT pg_advisory_xact_lock(?)", signingLock).Error; err != nil {
				return err
			}
		}
		return fn(tx, s.clock.Now())
	})
}

// createKey stores a new Ed25519 key, its seed sealed under the
// encryption key. The kid is the public key's RFC 7638 thumbprint.
func (s *Service) createKey(tx *gorm.DB, now time.Time) (string, error) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return "", err
	}
	thumb, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	kid := base64URL(thumb)
	sealed, err := seal(s.encKey, kid, priv.Seed())
	if err != nil {
		return "", err
	}
	row := models.SigningKey{KID: kid, Algorithm: string(Algorithm), PublicKey: pub, PrivateKeyEnc: sealed, CreatedAt: now}
	return kid, tx.Create(&row).Error
}

// reload reads the signing keys that still verify, and decrypts the
// current one's private part, unless another caller loaded them less
// than maxAge ago.
func (s *Service) reload(ctx context.Context, maxAge time.Duration) (*keyring, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	if r := s.ring.Load(); r != nil && maxAge > 0 && now.Sub(r.loadedAt) < maxAge {
		return r, nil
	}
	var rows []models.SigningKey
	err := s.db.WithContext(ctx).Where("retired_at IS NULL OR retired_at > ?", now.Add(-RetiredWindow)).
		Order("id DESC").Find(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("load signing keys: %w", err)
	}
	r := &keyring{loadedAt: now}
	for _, row := range rows {
		if row.Algorithm != string(Algorithm) || len(row.PublicKey) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("signing key %s: unsupported algorithm %q", row.KID, row.Algorithm)
		}
		r.keys = append(r.keys, publicKey{kid: row.KID, key: ed25519.PublicKey(row.PublicKey), retiredAt: row.RetiredAt})
		if row.RetiredAt != nil || r.signer != nil {
			continue
		}
		seed, err := open(s.encKey, row.KID, row.PrivateKeyEnc)
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("%w: signing key %s does not decrypt with %s; restore the key it was encrypted with, "+
				"or run `keysmith signing-key rotate` to start over with a new signing key (tokens issued before then stop verifying)",
				ErrWrongEncryptionKey, row.KID, s.keySource)
		}
		signer, err := jose.NewSigner(
			jose.SigningKey{Algorithm: Algorithm, Key: jose.JSONWebKey{Key: ed25519.NewKeyFromSeed(seed), KeyID: row.KID}},
			(&jose.SignerOptions{}).WithType("at+jwt"))
		if err != nil {
			return nil, err
		}
		r.signer, r.current = signer, row.KID
	}
	if r.signer == nil {
		return nil, errNoCurrentKey
	}
	s.ring.Store(r)
	return r, nil
}

// keyring returns the loaded keys, re-read when older than RefreshEvery.
func (s *Service) keyring(ctx context.Context) (*keyring, error) {
	if r := s.ring.Load(); r != nil && s.clock.Now().Sub(r.loadedAt) < RefreshEvery {
		return r, nil
	}
	return s.reload(ctx, RefreshEvery)
}
