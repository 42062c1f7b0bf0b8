package keys

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"keysmith/models"
	"keysmith/validate"
)

// ActionTokenIssued is the audit action of a token exchange (SPEC §9).
const ActionTokenIssued = "token.issued"

// TokenType says what authenticated a request: an API key, or a JWT
// derived from one by the token exchange.
type TokenType string

const (
	TokenAPIKey TokenType = "api_key"
	TokenJWT    TokenType = "jwt"
	// TokenOAuth is an OAuth access token of a third-party app (SPEC §9).
	TokenOAuth TokenType = "oauth_access_token"
)

// AppAccess is what an OAuth access token acts as: an app, for a user in
// a workspace (or for itself, with client credentials).
type AppAccess struct {
	ClientPK      int64
	ClientID      string
	AppName       string
	Label         string // "user@example.com via App", or "App (app)"
	UserID        int64  // 0: the app acts for itself
	Admin         bool   // the user is an owner or admin of the workspace
	WorkspaceID   int64
	WorkspaceName string
	Scopes        []string // the token's, cut to what the user's role allows now
	ExpiresAt     time.Time
	TokenID       string // jti
	RateLimit     int    // per minute, shared by every token of the app
}

// AppAuthenticated is the request's principal for an OAuth access token.
// It has no key (ID 0) and acts on keys of both environments, as its user
// does in the dashboard.
func AppAuthenticated(a AppAccess) *Authenticated {
	exp := a.ExpiresAt
	return &Authenticated{
		WorkspaceID: a.WorkspaceID, WorkspaceName: a.WorkspaceName, Name: a.AppName, Hint: a.Label,
		Kind: Secret, Permission: string(PermCustom), Scopes: a.Scopes, ExpiresAt: &exp, RateLimit: a.RateLimit,
		TokenType: TokenOAuth, TokenID: a.TokenID,
		App: &a,
	}
}

// Exchange is one token exchange, as the audit log records it: never the
// token itself.
type Exchange struct {
	JTI       string
	Scopes    []string
	Audience  []string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// KeyRef names a key in the audit log.
type KeyRef struct {
	ID, WorkspaceID int64
	Name, Hint      string
}

// Ref names the key.
func (a *Authenticated) Ref() KeyRef {
	return KeyRef{ID: a.ID, WorkspaceID: a.WorkspaceID, Name: a.Name, Hint: a.Hint}
}

// RecordExchange writes the issue of a token derived from key k to the
// audit log: by the key itself (the token endpoint) or by a member (the
// key's page). Issuing a token changes nothing about the key, so unlike
// the changes it is not announced to the caches.
func (s *Service) RecordExchange(ctx context.Context, actor Actor, k KeyRef, x Exchange) error {
	detail := fmt.Sprintf("token %s, scopes %s, for %s, until %s", x.JTI, strings.Join(x.Scopes, " "),
		x.ExpiresAt.Sub(x.IssuedAt).Round(time.Second), x.ExpiresAt.UTC().Format(time.RFC3339))
	if len(x.Audience) > 0 {
		detail += fmt.Sprintf(", audience %q", x.Audience)
	}
	ev := auditEvent(k.WorkspaceID, actor, ActionTokenIssued, k.ID, k.Name+" ("+k.Hint+")", detail)
	return s.db.WithContext(ctx).Create(&ev).Error
}

// TokenLifetimes are the dashboard's choices for a temporary token.
var TokenLifetimes = []time.Duration{5 * time.Minute, 15 * time.Minute, time.Hour, 4 * time.Hour}

// GrantToken checks that a member may derive a token with scopes from key
// id in the dashboard: a key that works now and that they may manage, and
// scopes both the key and they hold. It returns the key, as the token's
// parent, and the scopes in their catalog form.
func (s *Service) GrantToken(ctx context.Context, workspaceID int64, actor Actor, id int64, scopes []string) (*Authenticated, []string, error) {
	k, err := s.manageable(s.db.WithContext(ctx), workspaceID, actor, id)
	if err != nil {
		return nil, nil, err
	}
	if st := StatusOf(k, s.clock.Now()); st.Dead() || st == StatusDisabled {
		return nil, nil, ErrNotActive
	}
	if len(scopes) == 0 {
		return nil, nil, validate.Errors{"token_scopes": "Choose at least one scope for the token."}
	}
	norm, err := s.catalog.Normalize(scopes)
	if err != nil {
		return nil, nil, validate.Errors{"token_scopes": err.Error()}
	}
	if !Covers(k.ScopeList(), norm) {
		return nil, nil, validate.Errors{"token_scopes": "Choose among the key's own scopes: a token never holds more than its key."}
	}
	if !Covers(actor.Held, norm) {
		return nil, nil, forbidden("a token cannot have more access than you have")
	}
	return &Authenticated{ID: k.ID, WorkspaceID: k.WorkspaceID, Name: k.Name, Hint: k.Hint, Kind: Kind(k.Kind),
		Env: Env(k.Environment), Permission: k.Permission, Scopes: k.ScopeList(), CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt}, norm, nil
}

// AuthenticateKeyID checks the key a derived token names, by its id: the
// same cache, revocation and expiry checks as Authenticate, so revoking a
// key ends its tokens at once wherever Keysmith verifies them. A key not
// cached yet costs one indexed read of its hash first. The key's IP
// allowlist holds for its tokens too: ip is checked against it.
func (v *Verifier) AuthenticateKeyID(ctx context.Context, id int64, ip string) (*Authenticated, Code, error) {
	v.mu.RLock()
	sum, ok := v.byID[id]
	v.mu.RUnlock()
	if !ok {
		var hashes []string
		if err := v.db.WithContext(ctx).Model(&models.APIKey{}).Where("id = ?", id).Limit(1).Pluck("secret_hash", &hashes).Error; err != nil {
			return nil, "", err
		}
		if len(hashes) == 0 {
			return nil, CodeNotFound, nil
		}
		if n, err := hex.Decode(sum[:], []byte(hashes[0])); err != nil || n != sha256.Size {
			return nil, CodeNotFound, nil
		}
	}
	now := v.clock.Now()
	e, found, err := v.lookup(ctx, sum, "", now)
	return e.status(found, err, now, ip)
}

// Derived is the key a derived token stands for: the parent's identity and
// rate limits, the token's narrower scopes and end (or the key's, if that
// comes first: a rotation may have shortened it). It is built per
// request, with no memo of the parent's answers.
func (a *Authenticated) Derived(scopes []string, expires time.Time, jti string) *Authenticated {
	d := *a
	d.memo, d.TokenType, d.TokenID = nil, TokenJWT, jti
	if !slices.Equal(scopes, a.Scopes) {
		d.Scopes, d.Permission = scopes, string(PermCustom)
	}
	if a.ExpiresAt == nil || expires.Before(*a.ExpiresAt) {
		d.ExpiresAt = &expires
	}
	return &d
}

// errTokenMints refuses what would turn a temporary token into a lasting
// secret: creating a key, or rotating one.
var errTokenMints = forbidden("a temporary token cannot create or rotate keys, since the new secret would outlive it; use the API key itself")

// Type is what authenticated: an API key or a derived token.
func (a *Authenticated) Type() TokenType {
	if a.TokenType == "" {
		return TokenAPIKey
	}
	return a.TokenType
}
