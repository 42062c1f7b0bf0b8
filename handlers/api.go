package handlers

import (
	"bytes"
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"keysmith/keys"
	"keysmith/oauth"
	"keysmith/ratelimit"
	"keysmith/tokens"
)

// Error types and codes of SPEC §6.
const (
	errAuthentication = "authentication_error"
	errPermission     = "permission_error"
	errRateLimit      = "rate_limit_error"
	errInvalidRequest = "invalid_request_error"
	errAPI            = "api_error"
)

// apiCodeKey is where apiFail leaves the error code, for the metrics.
const apiCodeKey = "keysmith.api_code"

// apiFail writes one SPEC §6 error; handlers return its result. Refused
// credentials get the RFC 6750 challenge too.
func apiFail(c echo.Context, status int, typ, code, msg string) error {
	c.Set(apiCodeKey, code)
	switch {
	case code == "missing_api_key":
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="keysmith"`)
	case status == http.StatusUnauthorized:
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="keysmith", error="invalid_token"`)
	case code == "insufficient_scope":
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="keysmith", error="insufficient_scope"`)
	}
	return c.JSON(status, apiError{Error: apiErrorBody{
		Type: typ, Code: code, Message: msg, RequestID: c.Response().Header().Get(echo.HeaderXRequestID),
	}})
}

var codeErrors = map[keys.Code]struct{ code, msg string }{
	keys.CodeMalformed: {"invalid_api_key", "The API key is not valid."},
	keys.CodeNotFound:  {"invalid_api_key", "The API key is not valid."},
	keys.CodeExpired:   {"expired_api_key", "The API key has expired. Rotate it in the dashboard, or create a new one."},
	keys.CodeRevoked:   {"revoked_api_key", "The API key has been revoked."},
	keys.CodeDisabled:  {"disabled_api_key", "The API key is disabled."},
}

// tokenErrors are codeErrors for a token derived from a key (SPEC §9).
var tokenErrors = map[keys.Code]struct{ code, msg string }{
	keys.CodeMalformed: {"invalid_api_key", "The token is not valid here: Keysmith did not sign it, it was changed, or it is meant for another audience."},
	keys.CodeNotFound:  {"invalid_api_key", "The token is not valid: its API key no longer exists."},
	keys.CodeExpired:   {"expired_api_key", "The token has expired. Exchange the API key for a new one at POST /oauth/token."},
	keys.CodeRevoked:   {"revoked_api_key", "The token has been revoked: the API key it was derived from, or the app's authorization, has been revoked."},
	keys.CodeDisabled:  {"disabled_api_key", "The API key this token was derived from is disabled."},
}

// authenticate checks what a request presented: an API key, or a token
// derived from one (SPEC §9). One verifier for both: a token must be
// signed by Keysmith, unexpired and meant for audience (any when empty),
// and its key must still work, from ip (its allowlist), so revoking a key
// or pinning it to other addresses holds for its tokens at once. The
// operator's services (service) are never throttled for unknown keys.
func (h *Handlers) authenticate(ctx context.Context, presented, ip, audience string, service bool) (*keys.Authenticated, keys.Code, error) {
	if !tokens.LooksLikeJWT(presented) {
		if service {
			return h.Verifier.AuthenticateService(ctx, presented, ip)
		}
		return h.Verifier.Authenticate(ctx, presented, ip)
	}
	tok, err := h.Tokens.Verify(ctx, presented, audience)
	switch {
	case errors.Is(err, tokens.ErrExpiredToken):
		return nil, keys.CodeExpired, nil
	case errors.Is(err, tokens.ErrInvalidToken), errors.Is(err, tokens.ErrWrongAudience):
		return nil, keys.CodeMalformed, nil
	case err != nil:
		return nil, "", err
	}
	if tok.Family != "" {
		return h.authenticateApp(ctx, tok)
	}
	k, code, err := h.Verifier.AuthenticateKeyID(ctx, tok.KeyID, ip)
	if err != nil || k == nil {
		return nil, code, err
	}
	if k.WorkspaceID != tok.WorkspaceID { // a key id of another workspace: never signed by us
		return nil, keys.CodeMalformed, nil
	}
	return k.Derived(tok.Scopes, tok.ExpiresAt, tok.ID), code, nil
}

// authenticateApp checks an OAuth access token's authorization, consent
// and app (revoking any of them ends the token at once) and cuts its
// scopes to what its user's role allows now.
func (h *Handlers) authenticateApp(ctx context.Context, tok *tokens.Token) (*keys.Authenticated, keys.Code, error) {
	p, err := h.OAuth.Principal(ctx, tok)
	if errors.Is(err, oauth.ErrRevoked) {
		return nil, keys.CodeRevoked, nil
	}
	if err != nil {
		return nil, "", err
	}
	return keys.AppAuthenticated(keys.AppAccess{
		ClientPK: p.ClientPK, ClientID: p.ClientID, AppName: p.AppName, Label: p.Label(), UserID: p.UserID,
		Admin: p.Role.IsAdmin(), WorkspaceID: p.WorkspaceID, WorkspaceName: p.WorkspaceName,
		Scopes: p.Scopes(tok.Scopes), ExpiresAt: tok.ExpiresAt, TokenID: tok.ID, RateLimit: keys.DefaultSecretLimit,
	}), keys.CodeValid, nil
}

// keyContext is the echo context requireKey hands on: it carries the
// authenticated key itself, where echo's store (c.Set) would cost a map
// per request and the request's context a copy of the request, on the hot
// path. Read the key only through apiKeyOf.
type keyContext struct {
	echo.Context
	key *keys.Authenticated
}

// apiKeyOf is the key that authenticated this request.
func apiKeyOf(c echo.Context) *keys.Authenticated {
	if kc, ok := c.(*keyContext); ok && kc.key != nil {
		return kc.key
	}
	return &keys.Authenticated{}
}

// bearer extracts the key from "Authorization: Bearer <key>".
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get(echo.HeaderAuthorization)
	if h == "" {
		return "", false
	}
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true
	}
	return strings.TrimSpace(token), true
}

// queryKey finds a key (api_key, accesskey) or a derived token (token) in
// a query string, where SPEC §6 refuses it unless the operator allows it.
func queryKey(rawQuery string) string {
	if rawQuery == "" {
		return ""
	}
	q, _ := url.ParseQuery(rawQuery)
	for _, name := range []string{"api_key", "accesskey", "token"} {
		if k := q.Get(name); k != "" {
			return k
		}
	}
	return ""
}

// requireKey authenticates an API request with its key (SPEC §6): the key
// comes in the Authorization header; it must be well-formed, known, live
// and within its rate limit. Every answer carries the RateLimit headers.
func (h *Handlers) requireKey(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		k, err := h.admit(c, c.Request().URL.RawQuery)
		if k == nil {
			return err
		}
		err = next(&keyContext{Context: c, key: k})
		h.Verifier.Count(k, answered(c, err))
		return err
	}
}

// admit authenticates the key or token a request presents, in its
// Authorization header or (where the operator allows it) in rawQuery, the
// query string of the URI it is for, and spends one request of its rate
// limit. It answers a refusal itself, SPEC §6's JSON, and returns a nil
// key and the answer's error; else the key, with the RateLimit headers
// set. The caller counts the admitted request's outcome (Verifier.Count).
func (h *Handlers) admit(c echo.Context, rawQuery string) (*keys.Authenticated, error) {
	r := c.Request()
	presented, hasHeader := bearer(r)
	if qk := queryKey(rawQuery); qk != "" && !hasHeader {
		if !h.Config.AllowQueryKeys {
			return nil, apiFail(c, http.StatusBadRequest, errInvalidRequest, "key_in_query_string",
				"Send the API key in the Authorization header (Authorization: Bearer <key>), not in the URL, where logs and browsers keep it. Revoke this key if the URL was shared.")
		}
		presented, hasHeader = qk, true
	}
	if !hasHeader {
		return nil, apiFail(c, http.StatusUnauthorized, errAuthentication, "missing_api_key", "No API key. Send it as Authorization: Bearer <key>.")
	}
	start, ip := time.Now(), c.RealIP()
	k, code, err := h.authenticate(r.Context(), presented, ip, h.Config.BaseURL, false)
	if throttled := (*keys.ThrottledError)(nil); errors.As(err, &throttled) {
		c.Response().Header().Set("Retry-After", strconv.Itoa(ceilSeconds(throttled.RetryAfter)))
		return nil, apiFail(c, http.StatusTooManyRequests, errRateLimit, "rate_limit_exceeded",
			"Too many requests with unknown API keys from your address. Retry after the time in the Retry-After header.")
	}
	if err != nil {
		return nil, err
	}
	switch code {
	case keys.CodeValid:
	case keys.CodeIPNotAllowed:
		h.Verifier.Count(k, keys.OutcomeForbidden)
		return nil, apiFail(c, http.StatusForbidden, errPermission, "ip_not_allowed",
			"This API key may not be used from "+ip+". Add the address to the key's allowed IPs in the dashboard, or call from an allowed one.")
	default:
		if k != nil { // disabled, expired or revoked: a request that names the key
			h.Verifier.Count(k, keys.OutcomeOther)
		}
		e := codeErrors[code]
		if tokens.LooksLikeJWT(presented) {
			e = tokenErrors[code]
		}
		return nil, apiFail(c, http.StatusUnauthorized, errAuthentication, e.code, e.msg)
	}
	d, err := h.Verifier.Admit(r.Context(), k, ip, r.UserAgent())
	if err != nil {
		h.Verifier.Count(k, keys.OutcomeOther)
		return nil, err
	}
	h.Metrics.Verification(time.Since(start))
	setRateLimitHeaders(c, k.RateLimitPolicy(), d)
	if !d.Allowed {
		h.Verifier.Count(k, keys.OutcomeRateLimited)
		h.Metrics.RateLimited()
		c.Response().Header().Set("Retry-After", strconv.Itoa(ceilSeconds(d.RetryAfter)))
		return nil, apiFail(c, http.StatusTooManyRequests, errRateLimit, "rate_limit_exceeded", limitExceeded(d))
	}
	return k, nil
}

// answered is the outcome of a request the handler answered (written) or
// returned err for (written later by the error handler).
func answered(c echo.Context, err error) keys.Outcome {
	if c.Response().Committed {
		return keys.OutcomeOf(c.Response().Status)
	}
	if he := (*echo.HTTPError)(nil); errors.As(err, &he) {
		return keys.OutcomeOf(he.Code)
	}
	if err != nil {
		return keys.OutcomeOther
	}
	return keys.OutcomeSuccess
}

// setRateLimitHeaders writes the headers every API answer carries:
// RateLimit-Limit, -Remaining and -Reset for the tightest window (the one
// that refused, or the one with the fewest requests left), and the
// structured fields of draft-ietf-httpapi-ratelimit-headers-10:
// RateLimit-Policy lists each of the key's windows (formatted once per
// cached key), RateLimit the tightest:
//
//	RateLimit-Policy: "minute";q=1000;w=60, "hour";q=5000;w=3600
//	RateLimit: "minute";r=999;t=1
//
// The keys are stored in their canonical form directly: Header.Set would
// canonicalise them again on every request of the hot path. The values
// share one string and one slice: two allocations instead of ten.
func setRateLimitHeaders(c echo.Context, policy string, d ratelimit.Decision) {
	var buf [128]byte
	reset := ceilSeconds(d.Reset)
	b := strconv.AppendInt(buf[:0], int64(d.Limit), 10)
	i := len(b)
	b = strconv.AppendInt(b, int64(d.Remaining), 10)
	j := len(b)
	b = strconv.AppendInt(b, int64(reset), 10)
	k := len(b)
	b = d.AppendField(b, reset)
	all := string(b)
	vals := []string{all[:i], all[i:j], all[j:k], policy, all[k:]}
	hd := c.Response().Header()
	hd["Ratelimit-Limit"] = vals[0:1:1]
	hd["Ratelimit-Remaining"] = vals[1:2:2]
	hd["Ratelimit-Reset"] = vals[2:3:3]
	hd["Ratelimit-Policy"] = vals[3:4:4]
	hd["Ratelimit"] = vals[4:5:5]
}

// limitExceeded is the 429's message, naming the window that refused.
func limitExceeded(d ratelimit.Decision) string {
	n := strconv.Itoa(d.Limit)
	switch d.Window {
	case ratelimit.Hour:
		return "Hourly quota of " + n + " requests exceeded. Retry after the time in the Retry-After header."
	case ratelimit.Day:
		return "Daily quota of " + n + " requests exceeded. Retry after the time in the Retry-After header."
	}
	return "Rate limit of " + n + " requests per minute exceeded. Retry after the time in the Retry-After header."
}

func ceilSeconds(d time.Duration) int { return int(math.Ceil(d.Seconds())) }

// requireScope lets a request through only if its key holds scope.
func requireScope(scope string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if !apiKeyOf(c).Allows(scope) {
				return apiFail(c, http.StatusForbidden, errPermission, "insufficient_scope", "API key lacks scope: "+scope)
			}
			return next(c)
		}
	}
}

// requireServiceToken guards the verify endpoint: the operator's own
// services present KEYSMITH_SERVICE_TOKEN, compared in constant time.
func (h *Handlers) requireServiceToken(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		token, _ := bearer(c.Request())
		want := h.Config.ServiceToken
		if want == "" {
			return apiFail(c, http.StatusUnauthorized, errAuthentication, "invalid_service_token", "This endpoint is for the operator's services, and is off: the operator has not set KEYSMITH_SERVICE_TOKEN.")
		}
		if subtle.ConstantTimeCompare([]byte(token), []byte(want)) != 1 {
			return apiFail(c, http.StatusUnauthorized, errAuthentication, "invalid_service_token", "Send the operator's service token as Authorization: Bearer <token>.")
		}
		return next(c)
	}
}

type authTestResponse struct {
	Authenticated bool           `json:"authenticated"`
	TokenType     keys.TokenType `json:"token_type"` // api_key, or jwt for a derived token
	Workspace     struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	} `json:"workspace"`
	Key *authTestKey `json:"key"` // null for an OAuth access token
	App *authTestApp `json:"app,omitempty"`
}

type authTestKey struct {
	ID          int64      `json:"id"`
	Name        string     `json:"name"`
	Kind        keys.Kind  `json:"kind"`
	Environment keys.Env   `json:"environment"`
	Permission  string     `json:"permission"`
	Scopes      []string   `json:"scopes"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   *time.Time `json:"expires_at"`
}

// authTestApp is who an OAuth access token acts for.
type authTestApp struct {
	ClientID  string    `json:"client_id"`
	Name      string    `json:"name"`
	UserID    *int64    `json:"user_id"` // null: the app acts for itself (client credentials)
	Scopes    []string  `json:"scopes"`
	ExpiresAt time.Time `json:"expires_at"`
}

// authTest is GET /v1/auth/test: who am I, for a client checking its key.
// The answer depends on the key alone, so it is encoded once per cached
// version of the key (Authenticated.Memo), not on every request.
func (h *Handlers) authTest(c echo.Context) error {
	k := apiKeyOf(c)
	body := k.Memo(func() []byte {
		var res authTestResponse
		res.Authenticated, res.TokenType = true, k.Type()
		res.Workspace.ID, res.Workspace.Name = k.WorkspaceID, k.WorkspaceName
		if app := k.App; app != nil {
			res.App = &authTestApp{ClientID: app.ClientID, Name: app.AppName, Scopes: k.Scopes, ExpiresAt: app.ExpiresAt}
			if app.UserID != 0 {
				res.App.UserID = &app.UserID
			}
		} else {
			res.Key = &authTestKey{ID: k.ID, Name: k.Name, Kind: k.Kind, Environment: k.Env,
				Permission: k.Permission, Scopes: k.Scopes, CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt}
		}
		b, err := json.Marshal(&res)
		if err != nil {
			panic(err) // a struct of strings, numbers and times always encodes
		}
		return append(b, '\n')
	})
	return c.JSONBlob(http.StatusOK, body)
}

type verifyRequest struct {
	Key      string   `json:"key"` // an API key or a token derived from one
	Scopes   []string `json:"scopes"`
	Audience string   `json:"audience"` // a token must name it in aud; empty: any
	IP       string   `json:"ip"`       // the client's address, for the key's allowlist
}

type verifyResponse struct {
	Valid       bool           `json:"valid"`
	Code        keys.Code      `json:"code"`
	TokenType   keys.TokenType `json:"token_type"`
	ClientID    string         `json:"client_id,omitempty"` // an OAuth access token's app
	KeyID       *int64         `json:"key_id"`
	WorkspaceID *int64         `json:"workspace_id"`
	Environment *keys.Env      `json:"environment"`
	Scopes      []string       `json:"scopes"`
	ExpiresAt   *time.Time     `json:"expires_at"`
	RateLimit   *rateLimits    `json:"ratelimit"`
}

type rateLimits struct {
	Limit     int `json:"limit"`
	Remaining int `json:"remaining"`
	Reset     int `json:"reset"`
}

// verify is POST /v1/keys/verify, for the operator's services: is this
// key valid for these scopes? A verification of a live key counts as a use
// and against its rate limit.
func (h *Handlers) verify(c echo.Context) error {
	var req verifyRequest
	const example = `{"key":"ks_sk_live_…","scopes":["files:write"]}`
	if ok, err := decodeJSON(c, &req, example); !ok {
		return err
	}
	if req.Key == "" {
		return apiFail(c, http.StatusBadRequest, errInvalidRequest, "invalid_body", "Send JSON like "+example+".")
	}
	if req.IP != "" {
		if _, err := netip.ParseAddr(req.IP); err != nil {
			return apiFail(c, http.StatusBadRequest, errInvalidRequest, "invalid_body", "ip: send the client's address, such as 203.0.113.7 or 2001:db8::1.")
		}
	}
	// The operator's own services are never throttled for unknown keys.
	start := time.Now()
	k, code, err := h.authenticate(c.Request().Context(), req.Key, req.IP, req.Audience, true)
	if err != nil {
		return err
	}
	res := verifyResponse{Code: code, TokenType: keys.TokenAPIKey, Scopes: []string{}}
	if tokens.LooksLikeJWT(req.Key) {
		res.TokenType = keys.TokenJWT
	}
	if k == nil { // malformed, unknown, or an expired token (whose key it no longer names)
		return c.JSON(http.StatusOK, res)
	}
	res.TokenType, res.WorkspaceID, res.Scopes, res.ExpiresAt = k.Type(), &k.WorkspaceID, k.Scopes, k.ExpiresAt
	if k.App == nil {
		res.KeyID, res.Environment = &k.ID, &k.Env
	} else {
		res.ClientID = k.App.ClientID
	}
	if code != keys.CodeValid {
		h.Verifier.Count(k, verifyOutcomes[code])
		return c.JSON(http.StatusOK, res)
	}
	// The use is recorded from the client's address when the service named
	// it, else from the service's.
	d, err := h.Verifier.Admit(c.Request().Context(), k, cmp.Or(req.IP, c.RealIP()), c.Request().UserAgent())
	if err != nil {
		h.Verifier.Count(k, keys.OutcomeOther)
		return err
	}
	h.Metrics.Verification(time.Since(start))
	if !d.Allowed {
		h.Metrics.RateLimited()
	}
	res.RateLimit = &rateLimits{Limit: d.Limit, Remaining: d.Remaining, Reset: ceilSeconds(d.Reset)}
	switch {
	case !d.Allowed:
		res.Code = keys.CodeRateLimited
	case !keys.Covers(k.Scopes, req.Scopes):
		res.Code = keys.CodeInsufficientScope
	default:
		res.Valid = true
	}
	h.Verifier.Count(k, verifyOutcomes[res.Code])
	return c.JSON(http.StatusOK, res)
}

// verifyOutcomes counts each verify answer about a known key as the API's
// answer with that code would count.
var verifyOutcomes = map[keys.Code]keys.Outcome{
	keys.CodeValid:             keys.OutcomeSuccess,
	keys.CodeRateLimited:       keys.OutcomeRateLimited,
	keys.CodeInsufficientScope: keys.OutcomeForbidden,
	keys.CodeIPNotAllowed:      keys.OutcomeForbidden,
	keys.CodeExpired:           keys.OutcomeOther,
	keys.CodeRevoked:           keys.OutcomeOther,
	keys.CodeDisabled:          keys.OutcomeOther,
}

// decodeJSON reads a request's JSON body into dst and answers 400
// invalid_body itself when it cannot: another content type (a form post
// is not JSON), malformed JSON, or text no column can hold (a NUL byte,
// even escaped as \u0000, or invalid UTF-8). An empty body leaves dst as
// it is. It reports whether the handler may go on.
func decodeJSON(c echo.Context, dst any, example string) (bool, error) {
	r := c.Request()
	notJSON := func() (bool, error) {
		return false, apiFail(c, http.StatusBadRequest, errInvalidRequest, "invalid_body", "Send the body as JSON with Content-Type: application/json, like "+example+".")
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get(echo.HeaderContentType))
	if r.ContentLength > 0 && mt != echo.MIMEApplicationJSON {
		return notJSON()
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return false, apiFail(c, http.StatusBadRequest, errInvalidRequest, "invalid_body", "The body could not be read.")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return true, nil
	}
	if mt != echo.MIMEApplicationJSON {
		return notJSON()
	}
	// A raw NUL is not valid JSON; an escaped one is the only way in, so
	// only a body holding one needs its strings walked.
	if !utf8.Valid(body) || bytes.Contains(body, []byte(`\u0000`)) && !jsonTextStorable(body) {
		return false, apiFail(c, http.StatusBadRequest, errInvalidRequest, "invalid_body", "The body contains characters that cannot be stored: a NUL byte or invalid UTF-8.")
	}
	if err := json.Unmarshal(body, dst); err != nil {
		msg := "The body must be a JSON object like " + example + "."
		if te := (*json.UnmarshalTypeError)(nil); errors.As(err, &te) && te.Field != "" {
			msg = te.Field + ": expected a " + te.Type.Kind().String() + ", got a JSON " + te.Value + ". " + msg
		}
		return false, apiFail(c, http.StatusBadRequest, errInvalidRequest, "invalid_body", msg)
	}
	return true, nil
}

// jsonTextStorable reports whether no string in a JSON document, key or
// value, holds a NUL once unescaped. Malformed JSON passes: Unmarshal
// refuses it next.
func jsonTextStorable(body []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.Token()
		if err != nil {
			return true
		}
		if s, ok := tok.(string); ok && strings.ContainsRune(s, 0) {
			return false
		}
	}
}
