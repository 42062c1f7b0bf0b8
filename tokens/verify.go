package tokens

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Why Verify refuses a token. Everything but expiry and audience is
// ErrInvalidToken: the answer never says which check failed.
var (
	ErrInvalidToken  = errors.New("tokens: invalid token")
	ErrExpiredToken  = errors.New("tokens: token expired")
	ErrWrongAudience = errors.New("tokens: token not meant for this audience")
)

// MaxTokenLength bounds what Verify parses; Keysmith's tokens are far
// shorter.
const MaxTokenLength = 4096

// unknownKidReload is how often at most an unknown kid makes Verify
// re-read the signing keys (another replica may have just rotated), so a
// flood of made-up kids cannot flood the database.
const unknownKidReload = time.Second

// Token is what a verified token says.
type Token struct {
	ID      string // jti
	KID     string // the signing key
	Subject string
	KeyID   int64 // the parent key: the caller checks it still works
	// An OAuth access token has no parent key (KeyID 0) but an app, an
	// authorization the caller checks is not revoked, and a user unless
	// the app acts for itself.
	ClientID    string
	Family      string
	UserID      int64
	WorkspaceID int64
	Environment string
	Scopes      []string
	Audience    []string
	IssuedAt    time.Time
	ExpiresAt   time.Time
}

// LooksLikeJWT tells a compact JWS from an API key without parsing it, so
// one Authorization header can carry either.
func LooksLikeJWT(s string) bool {
	return strings.HasPrefix(s, "eyJ") && strings.Count(s, ".") == 2
}

// Verify checks a token the way Keysmith itself accepts it: signed with
// EdDSA by one of its signing keys, typ at+jwt, issued by this issuer,
// within its lifetime (Leeway allowed), and meant for audience unless
// that is empty. It does not know whether the parent key still works:
// the caller checks Token.KeyID.
func (s *Service) Verify(ctx context.Context, raw, audience string) (*Token, error) {
	if len(raw) > MaxTokenLength || !canonical(raw) {
		return nil, ErrInvalidToken
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{Algorithm})
	if err != nil || len(tok.Headers) != 1 {
		return nil, ErrInvalidToken
	}
	h := tok.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); !isAccessTokenType(typ) || h.KeyID == "" {
		return nil, ErrInvalidToken
	}
	ring, err := s.keyring(ctx)
	if err != nil {
		return nil, err
	}
	now := s.clock.Now()
	key, ok := ring.find(h.KeyID, now)
	if !ok {
		if ring, err = s.reload(ctx, unknownKidReload); err != nil {
			return nil, err
		}
		if key, ok = ring.find(h.KeyID, now); !ok {
			return nil, ErrInvalidToken
		}
	}
	var c claims
	if err := tok.Claims(key, &c); err != nil {
		return nil, ErrInvalidToken
	}
	if c.Expiry == nil || c.IssuedAt == nil || c.ID == "" || !c.wellFormed() ||
		c.Expiry.Time().Sub(c.IssuedAt.Time()) > MaxLifetime {
		return nil, ErrInvalidToken
	}
	expected := jwt.Expected{Issuer: s.issuer, Time: now}
	if audience != "" {
		expected.AnyAudience = jwt.Audience{audience}
	}
	switch err := c.ValidateWithLeeway(expected, Leeway); {
	case errors.Is(err, jwt.ErrExpired):
		return nil, ErrExpiredToken
	case errors.Is(err, jwt.ErrInvalidAudience):
		return nil, ErrWrongAudience
	case err != nil:
		return nil, ErrInvalidToken
	}
	return &Token{
		ID: c.ID, KID: h.KeyID, Subject: c.Subject, KeyID: c.KeyID, WorkspaceID: c.WorkspaceID,
		ClientID: c.ClientID, Family: c.Family, UserID: c.UserID,
		Environment: c.Environment, Scopes: strings.Fields(c.Scope), Audience: c.Audience,
		IssuedAt: c.IssuedAt.Time().UTC(), ExpiresAt: c.Expiry.Time().UTC(),
	}, nil
}

// wellFormed tells the two kinds of token apart: derived from a key
// (ks_key, sub and client_id "key_<id>"), or an OAuth access token
// (ks_family, the app's client_id, sub the user or the app itself).
func (c claims) wellFormed() bool {
	if c.WorkspaceID <= 0 {
		return false
	}
	if c.Family == "" {
		return c.KeyID > 0 && c.Subject == Subject(c.KeyID) && c.UserID == 0
	}
	if c.KeyID != 0 || c.ClientID == "" || strings.HasPrefix(c.ClientID, "key_") {
		return false
	}
	if c.UserID != 0 {
		return c.Subject == UserSubject(c.UserID)
	}
	return c.Subject == c.ClientID
}

// canonical reports whether raw is three segments of unpadded base64url
// with nothing else in them: go-jose's decoder also takes line breaks and
// stray low bits, which would let many strings carry one signed token.
func canonical(raw string) bool {
	segments := strings.Split(raw, ".")
	if len(segments) != 3 {
		return false
	}
	for _, seg := range segments {
		if strings.ContainsAny(seg, "\r\n") {
			return false
		}
		if _, err := base64.RawURLEncoding.Strict().DecodeString(seg); err != nil {
			return false
		}
	}
	return true
}

// isAccessTokenType accepts RFC 9068's typ, which may carry the media
// type's "application/" prefix (RFC 7515 §4.1.9), in any case.
func isAccessTokenType(typ string) bool {
	typ = strings.ToLower(typ)
	return typ == "at+jwt" || typ == "application/at+jwt"
}
