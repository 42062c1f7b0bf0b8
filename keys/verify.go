package keys

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"gorm.io/gorm"

	"keysmith/clock"
	"keysmith/models"
)

// Code is the outcome of verifying a key (SPEC §6, the verify endpoint).
type Code string

const (
	CodeValid             Code = "VALID"
	CodeMalformed         Code = "MALFORMED"
	CodeNotFound          Code = "NOT_FOUND"
	CodeExpired           Code = "EXPIRED"
	CodeRevoked           Code = "REVOKED"
	CodeDisabled          Code = "DISABLED"
	CodeInsufficientScope Code = "INSUFFICIENT_SCOPE"
	CodeRateLimited       Code = "RATE_LIMITED"
)

// Authenticated is what the API knows of a key that verified.
type Authenticated struct {
	ID            int64
	WorkspaceID   int64
	WorkspaceName string
	Name          string
	Hint          string
	Kind          Kind
	Env           Env
	Permission    string
	Scopes        []string
	CreatedAt     time.Time
	ExpiresAt     *time.Time
	RateLimit     int // per minute
}

// Allows reports whether the key holds scope.
func (a Authenticated) Allows(scope string) bool { return Allows(a.Scopes, scope) }

// CacheTTL bounds how stale a cached key may be: a revocation made by
// another replica takes effect within it. The replica that made a change
// clears its own cache at once (Verifier.Invalidate).
const CacheTTL = time.Second

// Verifier authenticates presented keys. The hot path is Parse (no I/O),
// SHA-256, and a lookup in an in-process cache; the database is read at
// most once per key per CacheTTL, with concurrent misses for one key
// sharing one query.
type Verifier struct {
	db      *gorm.DB
	clock   clock.Clock
	prefix  string
	limiter Limiter
	usage   *Usage

	mu    sync.RWMutex
	cache map[[sha256.Size]byte]cacheEntry // by SHA-256 of the key
	group singleflight.Group
}

type cacheEntry struct {
	key       Authenticated
	found     bool
	revoked   bool
	fetchedAt time.Time
}

// NewVerifier returns a verifier with an empty cache.
func NewVerifier(db *gorm.DB, clk clock.Clock, prefix string, limiter Limiter, usage *Usage) *Verifier {
	return &Verifier{db: db, clock: clk, prefix: prefix, limiter: limiter, usage: usage, cache: map[[sha256.Size]byte]cacheEntry{}}
}

// Invalidate empties the cache; the keys service calls it after every change.
func (v *Verifier) Invalidate() {
	v.mu.Lock()
	clear(v.cache)
	v.mu.Unlock()
}

// Authenticate checks a presented key: format and checksum first (no
// database for garbage), then existence, revocation and expiry. It neither
// rate-limits nor records use; Admit does both.
func (v *Verifier) Authenticate(ctx context.Context, presented string) (Authenticated, Code, error) {
	if _, err := Parse(presented, v.prefix); err != nil {
		return Authenticated{}, CodeMalformed, nil
	}
	now := v.clock.Now()
	e, err := v.lookup(ctx, sha256.Sum256([]byte(presented)), now)
	switch {
	case err != nil:
		return Authenticated{}, "", err
	case !e.found:
		return Authenticated{}, CodeNotFound, nil
	case e.revoked:
		return e.key, CodeRevoked, nil
	case e.key.ExpiresAt != nil && !e.key.ExpiresAt.After(now):
		return e.key, CodeExpired, nil
	}
	return e.key, CodeValid, nil
}

// Admit spends one request of the key's rate limit and, if allowed,
// records the use (buffered; see Usage).
func (v *Verifier) Admit(k Authenticated, ip, userAgent string) Decision {
	now := v.clock.Now()
	d := v.limiter.Take(k.ID, k.RateLimit, now)
	if d.Allowed {
		v.usage.Record(k.ID, now, ip, userAgent)
	}
	return d
}

func (v *Verifier) lookup(ctx context.Context, sum [sha256.Size]byte, now time.Time) (cacheEntry, error) {
	v.mu.RLock()
	e, ok := v.cache[sum]
	v.mu.RUnlock()
	if ok && now.Sub(e.fetchedAt) < CacheTTL {
		return e, nil
	}
	hash := hex.EncodeToString(sum[:]) // the stored form, as Hash gives it
	res, err, _ := v.group.Do(hash, func() (any, error) {
		e, err := v.load(context.WithoutCancel(ctx), hash, now)
		if err != nil {
			return cacheEntry{}, err
		}
		v.mu.Lock()
		v.cache[sum] = e
		v.mu.Unlock()
		return e, nil
	})
	if err != nil {
		return cacheEntry{}, err
	}
	return res.(cacheEntry), nil
}

// load reads one key by its hash (unique index api_keys_secret_hash_idx).
func (v *Verifier) load(ctx context.Context, hash string, now time.Time) (cacheEntry, error) {
	var row struct {
		models.APIKey
		WorkspaceName string
	}
	err := v.db.WithContext(ctx).Model(&models.APIKey{}).
		Select("api_keys.*, workspaces.name AS workspace_name").
		Joins("JOIN workspaces ON workspaces.id = api_keys.workspace_id").
		Where("api_keys.secret_hash = ?", hash).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return cacheEntry{fetchedAt: now}, nil
	}
	if err != nil {
		return cacheEntry{}, err
	}
	k := row.APIKey
	return cacheEntry{
		found:     true,
		revoked:   k.RevokedAt != nil,
		fetchedAt: now,
		key: Authenticated{
			ID: k.ID, WorkspaceID: k.WorkspaceID, WorkspaceName: row.WorkspaceName, Name: k.Name, Hint: k.Hint,
			Kind: Kind(k.Kind), Env: Env(k.Environment), Permission: k.Permission, Scopes: k.ScopeList(),
			CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt, RateLimit: LimitFor(k.Kind, k.RateLimit),
		},
	}, nil
}
