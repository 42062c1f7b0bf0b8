package tokens

import (
	"context"
	"encoding/json"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// JWKSMaxAge is how long a verifier may cache the JWKS. A token signed by
// a key newer than its copy names an unknown kid: verifiers then fetch
// the set again, as common JOSE libraries do.
const JWKSMaxAge = 5 * time.Minute

// JWKS is the public half of every signing key that still verifies: the
// current one and those retired less than a token's lifetime ago.
func (s *Service) JWKS(ctx context.Context) (jose.JSONWebKeySet, error) {
	ring, err := s.keyring(ctx)
	if err != nil {
		return jose.JSONWebKeySet{}, err
	}
	now := s.clock.Now()
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for _, k := range ring.keys {
		if k.usable(now) {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.key, KeyID: k.kid, Algorithm: string(Algorithm), Use: "sig"})
		}
	}
	return set, nil
}

// JWKSDocument is the JWKS as served at JWKSPath, and how long it may be
// cached (Cache-Control: public, max-age=…).
func (s *Service) JWKSDocument(ctx context.Context) ([]byte, time.Duration, error) {
	set, err := s.JWKS(ctx)
	if err != nil {
		return nil, 0, err
	}
	b, err := json.Marshal(set)
	return b, JWKSMaxAge, err
}

// Metadata is the RFC 8414 authorization server metadata.
type Metadata struct {
	Issuer                            string   `json:"issuer"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	ScopesSupported                   []string `json:"scopes_supported,omitempty"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`

	AuthorizationEndpoint                      string   `json:"authorization_endpoint"`
	RevocationEndpoint                         string   `json:"revocation_endpoint"`
	RevocationEndpointAuthMethodsSupported     []string `json:"revocation_endpoint_auth_methods_supported"`
	IntrospectionEndpoint                      string   `json:"introspection_endpoint"`
	IntrospectionEndpointAuthMethodsSupported  []string `json:"introspection_endpoint_auth_methods_supported"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported"`
	ResponseModesSupported                     []string `json:"response_modes_supported"`
	AuthorizationResponseISSParameterSupported bool     `json:"authorization_response_iss_parameter_supported"`
}

// Where the OAuth 2.1 endpoints for third-party apps live (SPEC §9).
const (
	AuthorizePath  = "/oauth/authorize"
	RevokePath     = "/oauth/revoke"
	IntrospectPath = "/oauth/introspect"
)

// Metadata describes this server (RFC 8414); scopes are the catalog's
// (keys.Catalog.Scopes). The token exchange takes an API key as its
// credential ("none"); apps authenticate with their secret, or with PKCE
// alone when public. Introspection takes the operator's service token.
func (s *Service) Metadata(scopes []string) Metadata {
	return Metadata{
		Issuer:                            s.issuer,
		TokenEndpoint:                     s.issuer + TokenPath,
		JWKSURI:                           s.issuer + JWKSPath,
		ScopesSupported:                   scopes,
		ResponseTypesSupported:            []string{"code"},
		GrantTypesSupported:               []string{"authorization_code", "refresh_token", "client_credentials", GrantTokenExchange},
		TokenEndpointAuthMethodsSupported: []string{"client_secret_basic", "client_secret_post", "none"},

		AuthorizationEndpoint:                     s.issuer + AuthorizePath,
		RevocationEndpoint:                        s.issuer + RevokePath,
		RevocationEndpointAuthMethodsSupported:    []string{"client_secret_basic", "client_secret_post", "none"},
		IntrospectionEndpoint:                     s.issuer + IntrospectPath,
		IntrospectionEndpointAuthMethodsSupported: []string{"bearer"},
		CodeChallengeMethodsSupported:             []string{"S256"},
		ResponseModesSupported:                    []string{"query"},
	}
}
