package keys

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"
	"gorm.io/gorm"

	"keysmith/clock"
	"keysmith/metrics"
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
	CodeIPNotAllowed      Code = "IP_NOT_ALLOWED"
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
	HourlyQuota   int // 0: none
	DailyQuota    int // 0: none

	// A request authenticated by a derived token (SPEC §9) carries the
	// token's scopes and expiry above, and its kind and id here.
	TokenType TokenType // "" for the key itself
	TokenID   string    // the token's jti
	// App is the OAuth app and user an OAuth access token acts for; nil
	// for keys and the tokens derived from them.
	App *AppAccess

	memo    *memo     // shared by the copies of one cached version of the key
	policy  string    // Limits().Policy(), formatted once per cached version
	allowed Allowlist // parsed once per cached version; empty: anywhere
}

type memo struct {
	body   atomic.Pointer[[]byte]
	values atomic.Pointer[[]string]
}

// Allows reports whether the key holds scope.
func (a Authenticated) Allows(scope string) bool { return Allows(a.Scopes, scope) }

// AllowsIP reports whether the key may be used from ip: its allowlist is
// empty, or holds ip.
func (a *Authenticated) AllowsIP(ip string) bool { return a.allowed.Allows(ip) }

// Memo returns build's result, built once per cached version of the key:
// for an answer that depends on nothing but the key (GET /v1/auth/test),
// so the hot path need not encode it on every request. A change to the
// key loads a new version, with a new memo.
func (a *Authenticated) Memo(build func() []byte) []byte {
	if a.memo == nil {
		return build()
	}
	if b := a.memo.body.Load(); b != nil {
		return *b
	}
	b := build()
	a.memo.body.Store(&b)
	return b
}

// MemoValues is Memo for a few strings, such as the headers that name
// the key to a proxy's upstream (forward authentication). The result is
// shared: copy it, never change it.
func (a *Authenticated) MemoValues(build func() []string) []string {
	if a.memo == nil {
		return build()
	}
	if v := a.memo.values.Load(); v != nil {
		return *v
	}
	v := build()
	a.memo.values.Store(&v)
	return v
}

// RateLimitPolicy is the RateLimit-Policy field of the key's limits. A
// cached key formats it once, not on every request.
func (a *Authenticated) RateLimitPolicy() string {
	if a.policy == "" {
		return a.Limits().Policy()
	}
	return a.policy
}

// How stale a cached key may be. While every change reaches this process
// (its own changes, and other replicas' through a ChangeFeed), a key is
// re-read once a minute at most; otherwise a change made elsewhere takes
// effect within ShortCacheTTL.
const (
	LongCacheTTL  = time.Minute
	ShortCacheTTL = time.Second
)

// NegativeCacheSize bounds how many unknown keys are remembered: a flood of
// random well-formed keys must not grow memory without end.
const NegativeCacheSize = 10_000

// Verifier authenticates presented keys. The hot path is Parse (no I/O),
// SHA-256, and a lookup in an in-process cache; the database is read at
// most once per key per cache lifetime, with concurrent misses for one key
// sharing one query.
type Verifier struct {
	db      *gorm.DB
	clock   clock.Clock
	prefix  string
	limiter Limiter
	usage   *Usage
	metrics *metrics.Metrics

	// complete says every change reaches this cache: all are made by this
	// process (SQLite), or a ChangeFeed is connected (PostgreSQL).
	complete atomic.Bool

	// epoch moves on at every eviction: a database read that began before
	// one may predate the change, so its result is used but not cached.
	epoch atomic.Uint64

	// cache holds the known keys, by SHA-256 of the key, as *cacheEntry:
	// read without a lock (every API request does, on every core), changed
	// only under mu, together with byID.
	cache    sync.Map
	mu       sync.RWMutex
	byID     map[int64][sha256.Size]byte // the entries of cache, by key id
	unknown  *lru.Cache[[sha256.Size]byte, time.Time]
	failures *FailedAuths
	group    singleflight.Group
}

type cacheEntry struct {
	key       *Authenticated // never changed once cached: a change loads a new one
	revoked   bool
	disabled  bool
	fetchedAt time.Time
}

// NewVerifier returns a verifier with an empty cache, which trusts it for
// ShortCacheTTL until SetComplete says every change reaches it.
func NewVerifier(db *gorm.DB, clk clock.Clock, prefix string, limiter Limiter, usage *Usage, m *metrics.Metrics) *Verifier {
	unknown, _ := lru.New[[sha256.Size]byte, time.Time](NegativeCacheSize)
	return &Verifier{db: db, clock: clk, prefix: prefix, limiter: limiter, usage: usage, metrics: m,
		byID: map[int64][sha256.Size]byte{}, unknown: unknown, failures: NewFailedAuths()}
}

// SetComplete tells whether every change to a key now reaches Evict: the
// cache then lives LongCacheTTL, else ShortCacheTTL. Turning it on clears
// the cache, since changes made before may have been missed.
func (v *Verifier) SetComplete(on bool) {
	if on && !v.complete.Load() {
		v.Clear()
	}
	v.complete.Store(on)
}

func (v *Verifier) ttl() time.Duration {
	if v.complete.Load() {
		return LongCacheTTL
	}
	return ShortCacheTTL
}

// Evict drops the cached keys with these ids, so their next use reads the
// database; the keys service and the ChangeFeed call it for every change.
// With no ids it clears the whole cache: a change that names no key may
// concern any.
func (v *Verifier) Evict(ids ...int64) {
	if len(ids) == 0 {
		v.Clear()
		return
	}
	v.epoch.Add(1)
	v.mu.Lock()
	for _, id := range ids {
		if sum, ok := v.byID[id]; ok {
			v.cache.Delete(sum)
			delete(v.byID, id)
		}
	}
	v.mu.Unlock()
}

// EvictWorkspace drops the cached keys of a workspace (its name changed).
func (v *Verifier) EvictWorkspace(id int64) {
	v.epoch.Add(1)
	v.mu.Lock()
	for sum, e := range v.cache.Range {
		if k := e.(*cacheEntry).key; k.WorkspaceID == id {
			v.cache.Delete(sum)
			delete(v.byID, k.ID)
		}
	}
	v.mu.Unlock()
}

// Clear empties the cache, known and unknown keys alike.
func (v *Verifier) Clear() {
	v.epoch.Add(1)
	v.mu.Lock()
	v.cache.Clear()
	clear(v.byID)
	v.mu.Unlock()
	v.unknown.Purge()
}

// UnknownCached is how many unknown keys the negative cache holds.
func (v *Verifier) UnknownCached() int { return v.unknown.Len() }

// ThrottledError refuses a client that presented too many unknown keys
// (see FailedAuths) before its key is looked up.
type ThrottledError struct{ RetryAfter time.Duration }

func (e *ThrottledError) Error() string {
	return "keys: too many unknown keys from this client, retry after " + e.RetryAfter.String()
}

// Authenticate checks a presented key: format and checksum first (no
// database for garbage), then existence, revocation and expiry. It neither
// rate-limits nor records use; Admit does both. The key it returns is the
// cached one, shared: read it, never change it. A clientIP that presented
// too many unknown keys lately gets a *ThrottledError instead of a lookup,
// unless its key is cached; an empty clientIP (the operator's own services,
// through the verify endpoint) is never throttled.
//
// The key's IP allowlist is checked against clientIP: a key used from
// elsewhere answers CodeIPNotAllowed, after the checks above.
func (v *Verifier) Authenticate(ctx context.Context, presented, clientIP string) (*Authenticated, Code, error) {
	return v.authenticate(ctx, presented, clientIP, clientIP)
}

// AuthenticateService is Authenticate for the operator's own services (the
// verify endpoint): never throttled, and the allowlist checked against ip,
// the address the service says its client has. With no ip, a key that has
// an allowlist answers CodeIPNotAllowed: where it is used cannot be known.
func (v *Verifier) AuthenticateService(ctx context.Context, presented, ip string) (*Authenticated, Code, error) {
	return v.authenticate(ctx, presented, "", ip)
}

func (v *Verifier) authenticate(ctx context.Context, presented, throttleIP, clientIP string) (*Authenticated, Code, error) {
	if _, err := Parse(presented, v.prefix); err != nil {
		return nil, CodeMalformed, nil
	}
	// A parsed key is short: hashing a copy on the stack, rather than
	// []byte(presented), spares the hot path an allocation.
	var buf [128]byte
	sum := sha256.Sum256(append(buf[:0], presented...))
	now := v.clock.Now()
	e, found, err := v.lookup(ctx, sum, throttleIP, now)
	return e.status(found, err, now, clientIP)
}

// status is what a lookup's result says of the key at now, used from ip.
func (e cacheEntry) status(found bool, err error, now time.Time, ip string) (*Authenticated, Code, error) {
	switch {
	case err != nil:
		return nil, "", err
	case !found:
		return nil, CodeNotFound, nil
	case e.revoked:
		return e.key, CodeRevoked, nil
	case e.key.ExpiresAt != nil && !e.key.ExpiresAt.After(now):
		return e.key, CodeExpired, nil
	case e.disabled:
		return e.key, CodeDisabled, nil
	case !e.key.allowed.Allows(ip):
		return e.key, CodeIPNotAllowed, nil
	}
	return e.key, CodeValid, nil
}

// Admit spends one request of the key's rate limit and quotas and, if
// allowed, records the use (buffered; see Usage). ctx bounds the shared
// limiter's call to Redis.
func (v *Verifier) Admit(ctx context.Context, k *Authenticated, ip, userAgent string) (Decision, error) {
	now := v.clock.Now()
	id := k.ID
	if k.App != nil { // an app's tokens share one budget, apart from every key's
		id = -k.App.ClientPK
	}
	d, err := v.limiter.Take(ctx, id, k.Limits(), now)
	if err != nil {
		return d, err
	}
	if d.Allowed && k.ID != 0 {
		v.usage.Record(k.ID, now, ip, userAgent)
	}
	return d, nil
}

// Count adds one request of key k, answered with outcome o, to the key's
// usage (buffered; see Usage). A derived token's requests count as its
// key's.
func (v *Verifier) Count(k *Authenticated, o Outcome) {
	if k.ID == 0 { // an OAuth app's token names no key
		return
	}
	v.usage.Count(k.ID, v.clock.Now(), o)
}

func (v *Verifier) lookup(ctx context.Context, sum [sha256.Size]byte, clientIP string, now time.Time) (e cacheEntry, found bool, err error) {
	ttl := v.ttl()
	if c, ok := v.cache.Load(sum); ok {
		if e := c.(*cacheEntry); now.Sub(e.fetchedAt) < ttl {
			v.metrics.CacheLookup(true)
			return *e, true, nil
		}
	}
	// Past the known keys: an unknown one is likelier from here on.
	if clientIP != "" {
		if blocked, retry := v.failures.Blocked(clientIP, now); blocked {
			return cacheEntry{}, false, &ThrottledError{RetryAfter: retry}
		}
		defer func() {
			if !found && err == nil {
				v.failures.Failed(clientIP, now)
			}
		}()
	}
	if at, ok := v.unknown.Get(sum); ok && now.Sub(at) < ttl {
		v.metrics.CacheLookup(true)
		return cacheEntry{}, false, nil
	}
	v.metrics.CacheLookup(false)
	hash := hex.EncodeToString(sum[:]) // the stored form, as Hash gives it
	type result struct {
		e     cacheEntry
		found bool
	}
	res, err, _ := v.group.Do(hash, func() (any, error) {
		epoch := v.epoch.Load()
		e, found, err := v.load(context.WithoutCancel(ctx), hash, now)
		if err != nil {
			return result{}, err
		}
		if !found {
			v.unknown.Add(sum, now)
			return result{}, nil
		}
		v.mu.Lock()
		if v.epoch.Load() == epoch {
			v.cache.Store(sum, &e)
			v.byID[e.key.ID] = sum
		}
		v.mu.Unlock()
		return result{e, true}, nil
	})
	if err != nil {
		return cacheEntry{}, false, err
	}
	r := res.(result)
	return r.e, r.found, nil
}

// load reads one key by its hash (unique index api_keys_secret_hash_idx).
func (v *Verifier) load(ctx context.Context, hash string, now time.Time) (cacheEntry, bool, error) {
	var row struct {
		models.APIKey
		WorkspaceName string
	}
	err := v.db.WithContext(ctx).Model(&models.APIKey{}).
		Select("api_keys.*, workspaces.name AS workspace_name").
		Joins("JOIN workspaces ON workspaces.id = api_keys.workspace_id").
		Where("api_keys.secret_hash = ?", hash).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return cacheEntry{}, false, nil
	}
	if err != nil {
		return cacheEntry{}, false, err
	}
	k := row.APIKey
	a := &Authenticated{
		ID: k.ID, WorkspaceID: k.WorkspaceID, WorkspaceName: row.WorkspaceName, Name: k.Name, Hint: k.Hint,
		Kind: Kind(k.Kind), Env: Env(k.Environment), Permission: k.Permission, Scopes: k.ScopeList(),
		CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt, RateLimit: LimitFor(k.Kind, k.RateLimit),
		HourlyQuota: quota(k.HourlyQuota), DailyQuota: quota(k.DailyQuota), memo: &memo{},
		allowed: ParseAllowlist(k.AllowedIPs),
	}
	a.policy = a.Limits().Policy()
	return cacheEntry{revoked: k.RevokedAt != nil, disabled: k.DisabledAt != nil, fetchedAt: now, key: a}, true, nil
}
