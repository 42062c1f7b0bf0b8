// Package tokens issues and verifies the short-lived JWTs derived from API
// keys (RFC 8693 token exchange, RFC 9068 profile): the signing keys, kept
// in the database with their private part encrypted, their rotation, the
// JWKS that lets services verify tokens offline, and the RFC 8414
// metadata. It knows no HTTP.
package tokens

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"

	"keysmith/clock"
)

// Lifetimes of a derived token. A token never outlives its key either.
const (
	DefaultLifetime = 15 * time.Minute
	MaxLifetime     = 4 * time.Hour
)

// Leeway is the clock skew tolerated on exp, nbf and iat.
const Leeway = 30 * time.Second

// RefreshEvery is how often a Service re-reads the signing keys, so a
// rotation made by another replica or by the CLI reaches it.
const RefreshEvery = time.Minute

// RetiredWindow is how long a retired signing key keeps verifying and
// stays in the JWKS: its last tokens may have been signed up to
// RefreshEvery after the rotation, by a replica that had not seen it yet.
// A rotation deletes keys retired longer ago.
const RetiredWindow = MaxLifetime + RefreshEvery + Leeway

// Where the endpoints live, below the issuer (KEYSMITH_BASE_URL).
const (
	TokenPath    = "/oauth/token"
	JWKSPath     = "/.well-known/jwks.json"
	MetadataPath = "/.well-known/oauth-authorization-server"
)

// The RFC 8693 names of the token exchange.
const (
	GrantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeAPIKey    = "urn:keysmith:token-type:api-key" // subject_token_type of an API key
	TokenTypeJWT       = "urn:ietf:params:oauth:token-type:jwt"
)

// Options configure a Service.
type Options struct {
	// Issuer is KEYSMITH_BASE_URL without a trailing slash: the tokens' iss.
	Issuer string
	// EncryptionKey (32 bytes, from LoadEncryptionKey) encrypts the
	// signing keys' private parts; KeySource names where it came from.
	EncryptionKey []byte
	KeySource     string
	// Covers reports whether held scopes grant every requested one:
	// keys.Covers. It is passed in so that package keys may use this one.
	Covers func(held, requested []string) bool
}

// Service signs and verifies derived tokens. It is safe for concurrent use.
type Service struct {
	db        *gorm.DB
	clock     clock.Clock
	issuer    string
	encKey    []byte
	keySource string
	covers    func(held, requested []string) bool

	ring atomic.Pointer[keyring]
	mu   sync.Mutex // one reload at a time
}

// New returns a Service over the signing keys stored in db. It reads
// nothing yet: the server calls Load at start, the CLI may only Rotate.
func New(db *gorm.DB, clk clock.Clock, opts Options) (*Service, error) {
	switch {
	case opts.Issuer == "":
		return nil, errors.New("tokens: no issuer")
	case len(opts.EncryptionKey) != EncryptionKeySize:
		return nil, fmt.Errorf("tokens: the encryption key must be %d bytes", EncryptionKeySize)
	case opts.Covers == nil:
		return nil, errors.New("tokens: no scope check (Options.Covers)")
	}
	if opts.KeySource == "" {
		opts.KeySource = "KEYSMITH_ENCRYPTION_KEY"
	}
	return &Service{db: db, clock: clk, issuer: opts.Issuer, encKey: opts.EncryptionKey,
		keySource: opts.KeySource, covers: opts.Covers}, nil
}

// Load generates the first signing key if there is none, and loads the
// keys. It fails when the current key does not decrypt with the
// encryption key (ErrWrongEncryptionKey), so a server refuses to start
// rather than to sign.
func (s *Service) Load(ctx context.Context) error {
	// A start reads the keys; only the first one writes (ensureKey takes a
	// write transaction, and on PostgreSQL a lock every replica waits on).
	if _, err := s.reload(ctx, 0); !errors.Is(err, errNoCurrentKey) {
		return err
	}
	if err := s.ensureKey(ctx); err != nil {
		return err
	}
	_, err := s.reload(ctx, 0)
	return err
}

// Issuer is the tokens' iss.
func (s *Service) Issuer() string { return s.issuer }
