package oauth

import (
	"context"
	"errors"
	"strings"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"

	"keysmith/clock"
	"keysmith/tokens"
)

// strategy makes codes and refresh tokens as fosite's HMAC strategy does
// (random, stored under their HMAC), and access tokens as Keysmith's
// signed JWTs (package tokens), so one verifier and one JWKS serve derived
// and OAuth tokens alike.
type strategy struct {
	*oauth2.HMACSHAStrategyUnPrefixed
	tokens *tokens.Service
	clock  clock.Clock
}

// AccessTokenSignature is the JWT's signature segment: what the store
// keys an access token by.
func (s *strategy) AccessTokenSignature(_ context.Context, token string) string {
	if i := strings.LastIndexByte(token, '.'); i >= 0 && tokens.LooksLikeJWT(token) {
		return token[i+1:]
	}
	return ""
}

func (s *strategy) GenerateAccessToken(ctx context.Context, req fosite.Requester) (string, string, error) {
	sess, ok := req.GetSession().(*Session)
	if !ok {
		return "", "", errors.New("oauth: a request without Keysmith's session")
	}
	issued, err := s.tokens.IssueAccess(ctx, tokens.Grant{
		ClientID: req.GetClient().GetID(), Family: req.GetID(), UserID: sess.UserID, WorkspaceID: sess.WorkspaceID,
		Scopes: req.GetGrantedScopes(), ExpiresAt: s.clock.Now().Add(AccessLifetime),
	})
	if err != nil {
		return "", "", err
	}
	return issued.Token, s.AccessTokenSignature(ctx, issued.Token), nil
}

func (s *strategy) ValidateAccessToken(ctx context.Context, _ fosite.Requester, token string) error {
	_, err := s.tokens.Verify(ctx, token, "")
	switch {
	case errors.Is(err, tokens.ErrExpiredToken):
		return fosite.ErrTokenExpired
	case err != nil:
		return fosite.ErrTokenSignatureMismatch
	}
	return nil
}
