package handlers

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ory/fosite"

	"keysmith/keys"
	"keysmith/oauth"
	"keysmith/tokens"
)

// The OAuth endpoints (SPEC §9): the token exchange turns an API key into
// a short-lived JWT; the JWKS and the RFC 8414 metadata let services
// verify such tokens offline. Their answers follow OAuth's conventions
// (RFC 6749 §5), not SPEC §6's error shape.

// Limits on the audiences one token may name.
const (
	maxAudiences      = 10
	maxAudienceLength = 512
	// All of them together: the token must stay under tokens.MaxTokenLength,
	// which Keysmith's own verifier accepts.
	maxAudiencesLength = 1024
)

// oauthError is RFC 6749 §5.2's error body.
type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// oauthPath says whether a path is one of the OAuth endpoints, whose
// errors take OAuth's shape.
func oauthPath(p string) bool {
	return strings.HasPrefix(p, "/oauth/") && p != tokens.AuthorizePath || strings.HasPrefix(p, "/.well-known/")
}

// oauthFail answers an RFC 6749 §5.2 error; handlers return its result.
func oauthFail(c echo.Context, status int, code, description string) error {
	noStore(c)
	return c.JSON(status, oauthError{Error: code, Description: description})
}

// oauthInternal answers 500 in OAuth's shape and hands err on to echo,
// which logs it with the request id (the answer is already written, so
// handleError renders nothing).
func oauthInternal(c echo.Context, err error) error {
	_ = oauthFail(c, http.StatusInternalServerError, "server_error",
		"Something went wrong on our side. Quote the request id ("+c.Response().Header().Get(echo.HeaderXRequestID)+") if you contact support.")
	return err
}

// noStore marks an answer that holds a token, or answers a request that
// did, as never to be cached (RFC 6749 §5.1).
func noStore(c echo.Context) {
	h := c.Response().Header()
	h.Set(echo.HeaderCacheControl, "no-store")
	h.Set("Pragma", "no-cache")
}

type tokenResponse struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	Scope           string `json:"scope"`
}

// invalidGrant describes why a presented key cannot be exchanged; the
// message never tells a malformed key from an unknown one.
var invalidGrant = map[keys.Code]string{
	keys.CodeMalformed:    "The API key is not valid.",
	keys.CodeNotFound:     "The API key is not valid.",
	keys.CodeExpired:      "The API key has expired.",
	keys.CodeRevoked:      "The API key has been revoked.",
	keys.CodeDisabled:     "The API key is disabled.",
	keys.CodeIPNotAllowed: "The API key may not be used from this address (its allowed IPs).",
}

// oauthToken returns POST /oauth/token: the RFC 8693 token exchange of an
// API key (subject_token) for a JWT holding a subset of its scopes, for
// the requested resources or audiences, for expires_in seconds (15 minutes
// by default, at most 4 hours, never past the key's expiry). The exchange
// is a use of the key: rate-limited and recorded like any request.
func (h *Handlers) oauthToken(c echo.Context) error {
	r := c.Request()
	noStore(c)
	if r.URL.Query().Has("subject_token") {
		return oauthFail(c, http.StatusBadRequest, "invalid_request",
			"Send the parameters in a form body (application/x-www-form-urlencoded), not in the URL, where logs keep them. Revoke the key if the URL was shared.")
	}
	if ct, _, _ := strings.Cut(r.Header.Get(echo.HeaderContentType), ";"); !strings.EqualFold(strings.TrimSpace(ct), echo.MIMEApplicationForm) {
		return oauthFail(c, http.StatusBadRequest, "invalid_request", "Send the parameters as application/x-www-form-urlencoded.")
	}
	if err := r.ParseForm(); err != nil {
		return oauthFail(c, http.StatusBadRequest, "invalid_request", "The form body could not be read.")
	}
	form := r.PostForm
	switch form.Get("grant_type") {
	case oauth.GrantAuthorizationCode, oauth.GrantRefreshToken, oauth.GrantClientCredentials:
		return h.oauthGrant(c)
	}
	for _, name := range []string{"grant_type", "subject_token", "subject_token_type", "requested_token_type", "scope", "expires_in"} {
		if len(form[name]) > 1 {
			return oauthFail(c, http.StatusBadRequest, "invalid_request", "The parameter "+name+" is repeated.")
		}
	}
	switch grant := form.Get("grant_type"); grant {
	case "":
		return oauthFail(c, http.StatusBadRequest, "invalid_request",
			"grant_type is missing: use authorization_code, refresh_token, client_credentials or "+tokens.GrantTokenExchange+".")
	case tokens.GrantTokenExchange:
	default:
		return oauthFail(c, http.StatusBadRequest, "unsupported_grant_type",
			"Use authorization_code, refresh_token, client_credentials or "+tokens.GrantTokenExchange+".")
	}
	presented := form.Get("subject_token")
	switch {
	case presented == "":
		return oauthFail(c, http.StatusBadRequest, "invalid_request", "subject_token is missing: send the API key.")
	case form.Get("subject_token_type") != tokens.TokenTypeAPIKey:
		return oauthFail(c, http.StatusBadRequest, "invalid_request", "subject_token_type must be "+tokens.TokenTypeAPIKey+".")
	case form.Has("actor_token"):
		return oauthFail(c, http.StatusBadRequest, "invalid_request", "actor_token is not supported.")
	}
	if rt := form.Get("requested_token_type"); rt != "" && rt != tokens.TokenTypeJWT && rt != "urn:ietf:params:oauth:token-type:access_token" {
		return oauthFail(c, http.StatusBadRequest, "invalid_request", "requested_token_type must be "+tokens.TokenTypeJWT+".")
	}
	var lifetime time.Duration
	if v := form.Get("expires_in"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return oauthFail(c, http.StatusBadRequest, "invalid_request", "expires_in must be a whole number of seconds, at least 1.")
		}
		lifetime = time.Duration(min(n, int64(tokens.MaxLifetime/time.Second))) * time.Second
	}
	audience, problem := audiences(form)
	if problem != "" {
		return oauthFail(c, http.StatusBadRequest, "invalid_target", problem)
	}
	var scopes []string
	// RFC 6749 §3.3: scopes are separated by spaces (%x20) alone.
	if fields := strings.FieldsFunc(form.Get("scope"), func(r rune) bool { return r == ' ' }); len(fields) > 0 {
		var err error
		if scopes, err = h.Keys.Catalog().Normalize(fields); err != nil {
			return oauthFail(c, http.StatusBadRequest, "invalid_scope", err.Error())
		}
	}

	ip := c.RealIP()
	k, code, err := h.Verifier.Authenticate(r.Context(), presented, ip)
	if throttled := (*keys.ThrottledError)(nil); errors.As(err, &throttled) {
		c.Response().Header().Set("Retry-After", strconv.Itoa(ceilSeconds(throttled.RetryAfter)))
		return oauthFail(c, http.StatusTooManyRequests, "invalid_request",
			"Too many requests with unknown API keys from your address. Retry after the time in the Retry-After header.")
	}
	if err != nil {
		return oauthInternal(c, err)
	}
	if code != keys.CodeValid {
		return oauthFail(c, http.StatusBadRequest, "invalid_grant", invalidGrant[code])
	}
	d, err := h.Verifier.Admit(r.Context(), k, ip, r.UserAgent())
	if err != nil {
		return oauthInternal(c, err)
	}
	setRateLimitHeaders(c, k.RateLimitPolicy(), d)
	if !d.Allowed {
		h.Metrics.RateLimited()
		c.Response().Header().Set("Retry-After", strconv.Itoa(ceilSeconds(d.RetryAfter)))
		return oauthFail(c, http.StatusTooManyRequests, "invalid_request", limitExceeded(d))
	}

	issued, err := h.Tokens.Issue(r.Context(), tokens.Parent{
		KeyID: k.ID, WorkspaceID: k.WorkspaceID, Environment: string(k.Env), Scopes: k.Scopes, ExpiresAt: k.ExpiresAt,
	}, tokens.Request{Scopes: scopes, Audience: audience, Lifetime: lifetime})
	switch {
	case errors.Is(err, tokens.ErrInvalidScope):
		return oauthFail(c, http.StatusBadRequest, "invalid_scope", "The API key does not hold every requested scope. It holds: "+strings.Join(k.Scopes, " ")+".")
	case errors.Is(err, tokens.ErrKeyExpired):
		return oauthFail(c, http.StatusBadRequest, "invalid_grant", "The API key expires within the second.")
	case err != nil:
		return oauthInternal(c, err)
	}
	if err := h.Keys.RecordExchange(r.Context(), keys.KeyActor(*k, ip, r.UserAgent()), k.Ref(), exchangeOf(issued)); err != nil {
		return oauthInternal(c, err)
	}
	return c.JSON(http.StatusOK, tokenResponse{
		AccessToken: issued.Token, IssuedTokenType: tokens.TokenTypeJWT, TokenType: "Bearer",
		ExpiresIn: issued.ExpiresIn(), Scope: strings.Join(issued.Scopes, " "),
	})
}

// oauthGrant answers the grants of third-party apps (SPEC §9) through
// fosite: authorization_code (with the PKCE verifier), refresh_token
// (rotating; a replay revokes the family) and client_credentials. Apps
// authenticate with client_secret_basic or client_secret_post; public
// apps with their client_id and PKCE alone.
func (h *Handlers) oauthGrant(c echo.Context) error {
	r := c.Request()
	ctx := r.Context()
	p := h.OAuth.Provider()
	for _, name := range []string{"grant_type", "code", "refresh_token", "code_verifier", "redirect_uri", "client_id", "client_secret", "scope"} {
		if len(r.PostForm[name]) > 1 {
			return oauthFail(c, http.StatusBadRequest, "invalid_request", "The parameter "+name+" is repeated.")
		}
	}
	ar, err := p.NewAccessRequest(ctx, r, oauth.NewSession())
	if err != nil {
		grant := r.PostForm.Get("grant_type")
		if grant == oauth.GrantRefreshToken || grant == oauth.GrantAuthorizationCode {
			presented := r.PostForm.Get("refresh_token")
			if grant == oauth.GrantAuthorizationCode {
				presented = r.PostForm.Get("code")
			}
			if rerr := h.OAuth.RecordReuse(ctx, grant, presented, c.RealIP(), r.UserAgent()); rerr != nil {
				h.Log.Error("oauth: record a replayed grant", "err", rerr)
			}
		}
		p.WriteAccessError(ctx, c.Response(), ar, err)
		return nil
	}
	if ar.GetGrantTypes().ExactOne(oauth.GrantClientCredentials) {
		h.OAuth.PrepareClientCredentials(ar)
	}
	switch err := h.OAuth.StillAllowed(ctx, ar); {
	case errors.Is(err, oauth.ErrRevoked):
		p.WriteAccessError(ctx, c.Response(), ar, fosite.ErrInvalidGrant.WithHint("The user no longer belongs to the workspace this app acts in."))
		return nil
	case err != nil:
		return oauthInternal(c, err)
	}
	resp, err := p.NewAccessResponse(ctx, ar)
	if err != nil {
		p.WriteAccessError(ctx, c.Response(), ar, err)
		return nil
	}
	if err := h.OAuth.RecordIssue(ctx, ar, c.RealIP(), r.UserAgent()); err != nil {
		return oauthInternal(c, err)
	}
	p.WriteAccessResponse(ctx, c.Response(), ar, resp)
	return nil
}

// oauthRevoke is POST /oauth/revoke (RFC 7009): an app revokes one of its
// tokens, and with it the whole authorization it descends from. An
// unknown token is not an error.
func (h *Handlers) oauthRevoke(c echo.Context) error {
	r := c.Request()
	ctx := r.Context()
	p := h.OAuth.Provider()
	presented := r.PostFormValue("token")
	family, _ := h.OAuth.FamilyOf(ctx, presented)
	err := p.NewRevocationRequest(ctx, r)
	if err == nil && family != "" {
		if rerr := h.OAuth.RecordRevocation(ctx, family, c.RealIP(), r.UserAgent()); rerr != nil {
			h.Log.Error("oauth: record a revocation", "err", rerr)
		}
	}
	noStore(c)
	p.WriteRevocationResponse(ctx, c.Response(), err)
	return nil
}

// introspection is RFC 7662's answer, with Keysmith's own fields.
type introspection struct {
	Active      bool           `json:"active"`
	TokenType   keys.TokenType `json:"token_type,omitempty"`
	Scope       string         `json:"scope,omitempty"`
	ClientID    string         `json:"client_id,omitempty"`
	Subject     string         `json:"sub,omitempty"`
	Username    string         `json:"username,omitempty"`
	Issuer      string         `json:"iss,omitempty"`
	ExpiresAt   int64          `json:"exp,omitempty"`
	JTI         string         `json:"jti,omitempty"`
	WorkspaceID int64          `json:"workspace_id,omitempty"`
	KeyID       int64          `json:"key_id,omitempty"`
	Environment keys.Env       `json:"environment,omitempty"`
}

// oauthIntrospect is POST /oauth/introspect (RFC 7662) for the operator's
// services, with the service token: whether an API key, a derived or
// OAuth access token, or an OAuth refresh token is live now, and what it
// may do. It is not a use: nothing is rate-limited or recorded.
func (h *Handlers) oauthIntrospect(c echo.Context) error {
	r := c.Request()
	noStore(c)
	if ct, _, _ := strings.Cut(r.Header.Get(echo.HeaderContentType), ";"); !strings.EqualFold(strings.TrimSpace(ct), echo.MIMEApplicationForm) {
		return oauthFail(c, http.StatusBadRequest, "invalid_request", "Send the token as application/x-www-form-urlencoded.")
	}
	presented := r.PostFormValue("token")
	if presented == "" {
		return oauthFail(c, http.StatusBadRequest, "invalid_request", "token is missing.")
	}
	ctx := r.Context()
	if req, ok := h.OAuth.IntrospectRefresh(ctx, presented); ok {
		sess, _ := req.GetSession().(*oauth.Session)
		out := introspection{Active: true, TokenType: "refresh_token", Scope: strings.Join(req.GetGrantedScopes(), " "),
			ClientID: req.GetClient().GetID(), Issuer: h.Config.BaseURL, ExpiresAt: sess.GetExpiresAt(fosite.RefreshToken).Unix(), WorkspaceID: sess.WorkspaceID}
		out.Subject = sess.GetSubject()
		return c.JSON(http.StatusOK, out)
	}
	k, code, err := h.authenticate(ctx, presented, r.PostFormValue("ip"), "", true)
	if throttled := (*keys.ThrottledError)(nil); errors.As(err, &throttled) || err == nil && code != keys.CodeValid {
		return c.JSON(http.StatusOK, introspection{Active: false})
	}
	if err != nil {
		return oauthInternal(c, err)
	}
	out := introspection{Active: true, TokenType: k.Type(), Scope: strings.Join(k.Scopes, " "), Issuer: h.Config.BaseURL,
		WorkspaceID: k.WorkspaceID, JTI: k.TokenID, Environment: k.Env}
	if k.ExpiresAt != nil {
		out.ExpiresAt = k.ExpiresAt.Unix()
	}
	switch {
	case k.App != nil:
		out.ClientID, out.Username = k.App.ClientID, k.App.Label
		out.Subject = k.App.ClientID
		if k.App.UserID != 0 {
			out.Subject = tokens.UserSubject(k.App.UserID)
		}
	default:
		out.KeyID, out.Subject, out.ClientID = k.ID, tokens.Subject(k.ID), tokens.Subject(k.ID)
	}
	return c.JSON(http.StatusOK, out)
}

// exchangeOf is what the audit log records of an issued token.
func exchangeOf(t tokens.Issued) keys.Exchange {
	return keys.Exchange{JTI: t.ID, Scopes: t.Scopes, Audience: t.Audience, IssuedAt: t.IssuedAt, ExpiresAt: t.ExpiresAt}
}

// audiences gathers RFC 8707 resource (absolute URIs without a fragment)
// and RFC 8693 audience values, or says what is wrong with them.
func audiences(form url.Values) ([]string, string) {
	var out []string
	for _, res := range form["resource"] {
		u, err := url.Parse(res)
		if err != nil || !u.IsAbs() || u.Fragment != "" || u.Host == "" {
			return nil, "resource must be an absolute URI without a fragment, such as https://api.example.com."
		}
		out = append(out, res)
	}
	for _, aud := range form["audience"] {
		if aud == "" || strings.IndexFunc(aud, func(r rune) bool { return r <= ' ' || r > '~' || r == ',' }) >= 0 {
			return nil, "audience must be a name of printable ASCII characters, without spaces or commas."
		}
		out = append(out, aud)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	total := 0
	for _, a := range out {
		total += len(a)
	}
	if len(out) > maxAudiences || total > maxAudiencesLength || slices.ContainsFunc(out, func(a string) bool { return len(a) > maxAudienceLength }) {
		return nil, "Name at most " + strconv.Itoa(maxAudiences) + " resources and audiences, each at most " + strconv.Itoa(maxAudienceLength) +
			" characters and " + strconv.Itoa(maxAudiencesLength) + " in all."
	}
	return out, ""
}

// jwks returns GET /.well-known/jwks.json: the public signing keys,
// cacheable for a few minutes, and readable from any origin (a browser
// may verify tokens too).
func (h *Handlers) jwks(c echo.Context) error {
	body, maxAge, err := h.Tokens.JWKSDocument(c.Request().Context())
	if err != nil {
		return err
	}
	hd := c.Response().Header()
	hd.Set(echo.HeaderCacheControl, "public, max-age="+strconv.Itoa(int(maxAge/time.Second)))
	hd.Set(echo.HeaderAccessControlAllowOrigin, "*")
	return c.JSONBlob(http.StatusOK, body)
}

// authServerMetadata returns GET /.well-known/oauth-authorization-server
// (RFC 8414); it changes only with a deploy or the scope catalog.
func (h *Handlers) authServerMetadata(c echo.Context) error {
	hd := c.Response().Header()
	hd.Set(echo.HeaderCacheControl, "public, max-age=3600")
	hd.Set(echo.HeaderAccessControlAllowOrigin, "*")
	return c.JSON(http.StatusOK, h.Tokens.Metadata(h.Keys.Catalog().Scopes()))
}
