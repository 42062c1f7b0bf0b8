package tokens

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
)

// Why Issue refuses; the token endpoint maps them to RFC 6749 errors.
var (
	ErrInvalidScope    = errors.New("tokens: a requested scope is not held by the key")     // invalid_scope
	ErrInvalidLifetime = errors.New("tokens: the requested lifetime is not positive")       // invalid_request
	ErrKeyExpired      = errors.New("tokens: the key expires before a token could be used") // invalid_grant
)

// Parent is what a token inherits from the API key it is derived from.
// The caller has checked that the key works (not revoked, expired or
// disabled) and counted the exchange as a use of it.
type Parent struct {
	KeyID       int64
	WorkspaceID int64
	Environment string // live or test
	Scopes      []string
	ExpiresAt   *time.Time // nil: the key never expires
}

// Subject is the token's sub and client_id for a key: "key_" and its id,
// so it never reads as the id of anything else (a user, an OAuth app).
func Subject(keyID int64) string { return "key_" + strconv.FormatInt(keyID, 10) }

// Request is what the client asked for.
type Request struct {
	// Scopes, already checked against the catalog and made canonical
	// (keys.Catalog.Normalize); empty for all the key's scopes.
	Scopes []string
	// Audience lists where the token is accepted (RFC 8693 resource and
	// audience); empty for the issuer, Keysmith itself.
	Audience []string
	// Lifetime: 0 for DefaultLifetime; at most MaxLifetime, and never past
	// the key's expiry: a longer one is shortened.
	Lifetime time.Duration
}

// Issued is a signed token and what it says, for the answer and the audit
// log (which records ID, never Token).
type Issued struct {
	Token     string // compact JWS
	ID        string // jti
	KID       string // the signing key
	Scopes    []string
	Audience  []string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// ExpiresIn is the token's lifetime in whole seconds, as expires_in says.
func (i Issued) ExpiresIn() int64 { return int64(i.ExpiresAt.Sub(i.IssuedAt) / time.Second) }

// claims is the token's payload (RFC 9068 §2.2), with Keysmith's own
// claims naming the parent key, its workspace and environment.
type claims struct {
	jwt.Claims
	ClientID    string `json:"client_id"`
	Scope       string `json:"scope"`
	KeyID       int64  `json:"ks_key,omitempty"`
	WorkspaceID int64  `json:"ks_workspace"`
	Environment string `json:"ks_env,omitempty"`
	// An OAuth access token (SPEC §9) names its authorization instead of
	// a key: the family its refresh tokens rotate in, and the user it acts
	// for (none for client credentials).
	Family string `json:"ks_family,omitempty"`
	UserID int64  `json:"ks_user,omitempty"`
}

// Issue signs a token derived from key p, with the requested scopes (a
// subset of the key's), audience and lifetime.
func (s *Service) Issue(ctx context.Context, p Parent, req Request) (Issued, error) {
	scopes := req.Scopes
	if len(scopes) == 0 {
		scopes = p.Scopes
	}
	if len(scopes) == 0 || !s.covers(p.Scopes, scopes) {
		return Issued{}, ErrInvalidScope
	}
	lifetime := req.Lifetime
	switch {
	case lifetime < 0:
		return Issued{}, ErrInvalidLifetime
	case lifetime == 0:
		lifetime = DefaultLifetime
	case lifetime > MaxLifetime:
		lifetime = MaxLifetime
	}
	// JWT times are whole seconds: round now down and the expiry down too,
	// so the token ends no later than the key.
	now := s.clock.Now().Truncate(time.Second)
	exp := now.Add(lifetime.Truncate(time.Second))
	if p.ExpiresAt != nil && p.ExpiresAt.Before(exp) {
		exp = p.ExpiresAt.Truncate(time.Second)
	}
	if !exp.After(now) {
		return Issued{}, ErrKeyExpired
	}
	audience := req.Audience
	if len(audience) == 0 {
		audience = []string{s.issuer}
	}
	c := claims{
		Claims: jwt.Claims{
			Issuer:   s.issuer,
			Subject:  Subject(p.KeyID),
			Audience: jwt.Audience(audience),
			IssuedAt: jwt.NewNumericDate(now),
			Expiry:   jwt.NewNumericDate(exp),
			ID:       rand.Text(),
		},
		ClientID:    Subject(p.KeyID),
		Scope:       strings.Join(scopes, " "),
		KeyID:       p.KeyID,
		WorkspaceID: p.WorkspaceID,
		Environment: p.Environment,
	}
	return s.sign(ctx, c, scopes)
}

// sign signs c, whose scopes are scopes.
func (s *Service) sign(ctx context.Context, c claims, scopes []string) (Issued, error) {
	ring, err := s.keyring(ctx)
	if err != nil {
		return Issued{}, err
	}
	token, err := jwt.Signed(ring.signer).Claims(c).Serialize()
	if err != nil {
		return Issued{}, fmt.Errorf("sign token: %w", err)
	}
	return Issued{Token: token, ID: c.ID, KID: ring.current, Scopes: slices.Clone(scopes),
		Audience: slices.Clone([]string(c.Audience)), IssuedAt: c.IssuedAt.Time().UTC(), ExpiresAt: c.Expiry.Time().UTC()}, nil
}

// Grant is what an OAuth access token carries (SPEC §9): the app, the
// authorization it descends from, and for whom and where it acts.
type Grant struct {
	ClientID    string
	Family      string // the authorization: revoking it ends the token
	UserID      int64  // 0 for client credentials: the app acts for itself
	WorkspaceID int64
	Scopes      []string
	ExpiresAt   time.Time
}

// UserSubject is an OAuth access token's sub for the user it acts for.
func UserSubject(userID int64) string { return "user_" + strconv.FormatInt(userID, 10) }

// IssueAccess signs the OAuth access token of g: sub is the user (or the
// app, for client credentials), client_id the app.
func (s *Service) IssueAccess(ctx context.Context, g Grant) (Issued, error) {
	now := s.clock.Now().Truncate(time.Second)
	exp := g.ExpiresAt.Truncate(time.Second)
	if !exp.After(now) || exp.Sub(now) > MaxLifetime || g.Family == "" || g.ClientID == "" || g.WorkspaceID <= 0 {
		return Issued{}, ErrInvalidLifetime
	}
	sub := g.ClientID
	if g.UserID != 0 {
		sub = UserSubject(g.UserID)
	}
	c := claims{
		Claims: jwt.Claims{
			Issuer: s.issuer, Subject: sub, Audience: jwt.Audience{s.issuer},
			IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(exp), ID: rand.Text(),
		},
		ClientID: g.ClientID, Scope: strings.Join(g.Scopes, " "), WorkspaceID: g.WorkspaceID,
		Family: g.Family, UserID: g.UserID,
	}
	return s.sign(ctx, c, g.Scopes)
}

func base64URL(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
