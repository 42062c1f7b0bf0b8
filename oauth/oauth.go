// Package oauth is Keysmith's OAuth 2.1 authorization server for
// third-party apps (SPEC §9): registered apps, the authorization code
// grant with PKCE (S256 only), rotating refresh tokens with reuse
// detection, client credentials and RFC 7009 revocation. The protocol is
// ory/fosite's; this package stores what fosite asks for with gorm, on
// SQLite and PostgreSQL alike, signs access tokens with package tokens
// (the same JWTs, keys and JWKS as derived tokens), and knows the apps,
// the consents and who an access token acts for. It knows no echo.
package oauth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
	"gorm.io/gorm"

	"keysmith/clock"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/tokens"
)

// Lifetimes (SPEC §9).
const (
	AccessLifetime = 15 * time.Minute
	CodeLifetime   = 10 * time.Minute
	// A refresh token unused this long expires; each rotation starts it again…
	RefreshIdle = 30 * 24 * time.Hour
	// …but no family of refresh tokens outlives this, counted from consent.
	RefreshAbsolute = 90 * 24 * time.Hour
)

// The grant types an app may use.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
)

// Options configure a Service.
type Options struct {
	// Issuer is KEYSMITH_BASE_URL: the tokens' iss, and where the token
	// endpoint lives.
	Issuer string
}

// Service is the authorization server. It is safe for concurrent use.
type Service struct {
	db         *gorm.DB
	clock      clock.Clock
	tokens     *tokens.Service
	catalog    keys.Catalog
	issuer     string
	provider   fosite.OAuth2Provider
	strategy   *strategy
	store      *store
	principals *principalCache
}

// New returns the authorization server over db.
func New(db *gorm.DB, clk clock.Clock, toks *tokens.Service, catalog keys.Catalog, opts Options) (*Service, error) {
	if opts.Issuer == "" {
		return nil, errors.New("oauth: no issuer")
	}
	// Codes and refresh tokens are stored under their HMAC with a key
	// derived from the encryption key, so every replica shares it.
	secret, err := toks.DeriveKey("oauth hmac v1")
	if err != nil {
		return nil, fmt.Errorf("oauth: derive the HMAC key: %w", err)
	}
	s := &Service{db: db, clock: clk, tokens: toks, catalog: catalog, issuer: opts.Issuer, principals: newPrincipalCache(clk)}
	cfg := &fosite.Config{
		AccessTokenLifespan:            AccessLifetime,
		AuthorizeCodeLifespan:          CodeLifetime,
		RefreshTokenLifespan:           RefreshIdle,
		GlobalSecret:                   secret,
		EnforcePKCE:                    true,
		EnforcePKCEForPublicClients:    true,
		EnablePKCEPlainChallengeMethod: false,
		RefreshTokenScopes:             []string{}, // every code grant gets a refresh token
		ScopeStrategy:                  func(held []string, scope string) bool { return keys.Allows(held, scope) },
		AudienceMatchingStrategy:       fosite.DefaultAudienceMatchingStrategy,
		SendDebugMessagesToClients:     false,
		TokenURL:                       opts.Issuer + tokens.TokenPath,
		AccessTokenIssuer:              opts.Issuer,
		ClientSecretsHasher:            sha256Hasher{},
		MinParameterEntropy:            8,
	}
	s.store = &store{db: db, clock: clk, onRevoke: s.principals.clear}
	s.strategy = &strategy{
		HMACSHAStrategyUnPrefixed: oauth2.NewHMACSHAStrategyUnPrefixed(compose.NewOAuth2HMACStrategy(cfg).Enigma, cfg),
		tokens:                    toks,
		clock:                     clk,
	}
	s.provider = compose.Compose(cfg, s.store, s.strategy,
		compose.OAuth2AuthorizeExplicitFactory,
		compose.OAuth2RefreshTokenGrantFactory,
		compose.OAuth2ClientCredentialsGrantFactory,
		compose.OAuth2PKCEFactory,
		compose.OAuth2TokenRevocationFactory,
	)
	return s, nil
}

// Provider is fosite's protocol engine, for the HTTP layer.
func (s *Service) Provider() fosite.OAuth2Provider { return s.provider }

// Catalog is the scope catalog in force.
func (s *Service) Catalog() keys.Catalog { return s.catalog }

// NewSession is the empty session the token endpoint hands fosite.
func NewSession() *Session { return &Session{} }

// Session is what Keysmith keeps with every code and token: for whom and
// where the app acts, under which consent.
type Session struct {
	ExpiresAt       map[fosite.TokenType]time.Time `json:"expires_at"`
	UserID          int64                          `json:"user_id,omitempty"`
	WorkspaceID     int64                          `json:"workspace_id"`
	GrantID         int64                          `json:"grant_id,omitempty"`
	ClientPK        int64                          `json:"client_pk"`
	RefreshDeadline time.Time                      `json:"refresh_deadline,omitzero"`
}

// SetExpiresAt sets a token's expiry; a refresh token's never passes the
// family's absolute deadline.
func (s *Session) SetExpiresAt(key fosite.TokenType, exp time.Time) {
	if s.ExpiresAt == nil {
		s.ExpiresAt = map[fosite.TokenType]time.Time{}
	}
	if key == fosite.RefreshToken && !s.RefreshDeadline.IsZero() && exp.After(s.RefreshDeadline) {
		exp = s.RefreshDeadline
	}
	s.ExpiresAt[key] = exp
}

func (s *Session) GetExpiresAt(key fosite.TokenType) time.Time { return s.ExpiresAt[key] }
func (s *Session) GetUsername() string                         { return "" }

func (s *Session) GetSubject() string {
	if s.UserID != 0 {
		return tokens.UserSubject(s.UserID)
	}
	return ""
}

func (s *Session) Clone() fosite.Session {
	c := *s
	c.ExpiresAt = make(map[fosite.TokenType]time.Time, len(s.ExpiresAt))
	for k, v := range s.ExpiresAt {
		c.ExpiresAt[k] = v
	}
	return &c
}

// client is an app as fosite sees it.
type client struct{ models.OAuthClient }

func (c client) GetID() string                      { return c.ClientID }
func (c client) GetHashedSecret() []byte            { return []byte(c.SecretHash) }
func (c client) GetRedirectURIs() []string          { return c.RedirectURIList() }
func (c client) GetResponseTypes() fosite.Arguments { return fosite.Arguments{"code"} }
func (c client) GetScopes() fosite.Arguments        { return c.ScopeList() }
func (c client) IsPublic() bool                     { return c.Public }
func (c client) GetAudience() fosite.Arguments      { return nil }

func (c client) GetGrantTypes() fosite.Arguments {
	if c.Public {
		return fosite.Arguments{GrantAuthorizationCode, GrantRefreshToken}
	}
	return fosite.Arguments{GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials}
}

// sha256Hasher compares client secrets by their SHA-256, in constant time.
type sha256Hasher struct{}

func (sha256Hasher) Hash(_ context.Context, data []byte) ([]byte, error) {
	return []byte(hashSecret(string(data))), nil
}

func (sha256Hasher) Compare(_ context.Context, hash, data []byte) error {
	want := []byte(hashSecret(string(data)))
	if len(hash) == 0 || !constantTimeEqual(hash, want) {
		return fosite.ErrInvalidClient
	}
	return nil
}

// Ceiling is what a member of a workspace may grant an app: the scopes
// their role holds (owners and admins everything, editors the write
// preset, viewers the read preset).
func (s *Service) Ceiling(role models.Role) []string {
	switch {
	case role.IsAdmin():
		return []string{"*"}
	case role == models.RoleEditor:
		held, _ := s.catalog.Preset(keys.PermWrite, keys.Secret)
		return held
	case role == models.RoleViewer:
		held, _ := s.catalog.Preset(keys.PermRead, keys.Secret)
		return held
	}
	return nil
}

// Grantable is the part of requested that the app may ask for and the
// role allows, in request order.
func (s *Service) Grantable(app models.OAuthClient, role models.Role, requested []string) []string {
	ceiling := s.Ceiling(role)
	var out []string
	for _, sc := range requested {
		if keys.Allows(app.ScopeList(), sc) && keys.Covers(ceiling, []string{sc}) && !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out
}
