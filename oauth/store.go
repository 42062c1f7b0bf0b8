package oauth

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/url"
	"time"

	"github.com/ory/fosite"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"keysmith/clock"
	"keysmith/models"
)

// Kinds of oauth_tokens rows.
const (
	kindCode    = "code"
	kindPKCE    = "pkce"
	kindAccess  = "access"
	kindRefresh = "refresh"
)

// keptForm is the part of a request's form a stored request keeps: what
// the later steps check (the redirect URI, the PKCE challenge), never a
// secret or a verifier.
var keptForm = []string{"client_id", "redirect_uri", "response_type", "scope", "code_challenge", "code_challenge_method"}

// storedRequest is a fosite request as a JSON column.
type storedRequest struct {
	ID                string     `json:"id"`
	RequestedAt       time.Time  `json:"requested_at"`
	ClientID          string     `json:"client_id"`
	RequestedScopes   []string   `json:"requested_scopes"`
	GrantedScopes     []string   `json:"granted_scopes"`
	RequestedAudience []string   `json:"requested_audience,omitempty"`
	GrantedAudience   []string   `json:"granted_audience,omitempty"`
	Form              url.Values `json:"form"`
	Session           *Session   `json:"session"`
}

// store keeps what fosite asks for in oauth_families and oauth_tokens.
// It is fosite.Storage, oauth2.CoreStorage, oauth2.TokenRevocationStorage,
// pkce.PKCERequestStorage and storage.Transactional.
type store struct {
	db       *gorm.DB
	clock    clock.Clock
	onRevoke func() // a family ended: drop cached principals
}

type txKey struct{}

// conn is the transaction fosite began, or the database.
func (s *store) conn(ctx context.Context) *gorm.DB {
	if tx, ok := ctx.Value(txKey{}).(*gorm.DB); ok {
		return tx
	}
	return s.db.WithContext(ctx)
}

func (s *store) BeginTX(ctx context.Context) (context.Context, error) {
	tx := s.db.WithContext(ctx).Begin()
	if tx.Error != nil {
		return ctx, tx.Error
	}
	return context.WithValue(ctx, txKey{}, tx), nil
}

func (s *store) Commit(ctx context.Context) error {
	if tx, ok := ctx.Value(txKey{}).(*gorm.DB); ok {
		return tx.Commit().Error
	}
	return nil
}

func (s *store) Rollback(ctx context.Context) error {
	if tx, ok := ctx.Value(txKey{}).(*gorm.DB); ok {
		return tx.Rollback().Error
	}
	return nil
}

// GetClient is a live app by its client_id.
func (s *store) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	var app models.OAuthClient
	err := s.conn(ctx).Where("client_id = ? AND revoked_at IS NULL", id).Take(&app).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, fosite.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return client{app}, nil
}

// Keysmith's apps authenticate with a secret or PKCE, never with a signed
// JWT assertion, so there are no assertion ids to remember.
func (s *store) ClientAssertionJWTValid(context.Context, string) error { return nil }
func (s *store) SetClientAssertionJWT(context.Context, string, time.Time) error {
	return nil
}

// ensureFamily records the authorization a request belongs to, once.
func (s *store) ensureFamily(db *gorm.DB, req fosite.Requester) error {
	sess, ok := req.GetSession().(*Session)
	if !ok || sess.ClientPK == 0 {
		return errors.New("oauth: a request without Keysmith's session")
	}
	f := models.OAuthFamily{ID: req.GetID(), ClientPK: sess.ClientPK, CreatedAt: s.clock.Now().UTC()}
	if sess.GrantID != 0 {
		f.GrantID = &sess.GrantID
	}
	return db.Clauses(clause.OnConflict{DoNothing: true}).Create(&f).Error
}

func (s *store) create(ctx context.Context, kind, signature string, req fosite.Requester, exp time.Time) error {
	db := s.conn(ctx)
	if err := s.ensureFamily(db, req); err != nil {
		return err
	}
	sr := storedRequest{
		ID: req.GetID(), RequestedAt: req.GetRequestedAt(), ClientID: req.GetClient().GetID(),
		RequestedScopes: req.GetRequestedScopes(), GrantedScopes: req.GetGrantedScopes(),
		RequestedAudience: req.GetRequestedAudience(), GrantedAudience: req.GetGrantedAudience(),
		Form: url.Values{}, Session: req.GetSession().(*Session),
	}
	for _, k := range keptForm {
		if v, ok := req.GetRequestForm()[k]; ok {
			sr.Form[k] = v
		}
	}
	body, err := json.Marshal(sr)
	if err != nil {
		return err
	}
	if exp.IsZero() {
		exp = time.Now().Add(RefreshAbsolute) // fosite's wall clock, as the session's expiries
	}
	return db.Create(&models.OAuthToken{
		Kind: kind, Signature: signature, FamilyID: req.GetID(), Active: true,
		Request: string(body), ExpiresAt: exp.UTC(), CreatedAt: s.clock.Now().UTC(),
	}).Error
}

// get reads a row and rebuilds its request. A row whose family was
// revoked, or whose app was, is not found.
func (s *store) get(ctx context.Context, kind, signature string) (*fosite.Request, bool, error) {
	db := s.conn(ctx)
	var row struct {
		models.OAuthToken
		FamilyRevoked *time.Time
	}
	err := db.Table("oauth_tokens t").Select("t.*, f.revoked_at AS family_revoked").
		Joins("JOIN oauth_families f ON f.id = t.family_id").
		Where("t.kind = ? AND t.signature = ?", kind, signature).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) || err == nil && row.FamilyRevoked != nil {
		return nil, false, fosite.ErrNotFound
	}
	if err != nil {
		return nil, false, err
	}
	var sr storedRequest
	if err := json.Unmarshal([]byte(row.Request), &sr); err != nil {
		return nil, false, err
	}
	c, err := s.GetClient(ctx, sr.ClientID)
	if err != nil {
		return nil, false, err
	}
	if sr.Session == nil {
		sr.Session = &Session{}
	}
	return &fosite.Request{
		ID: sr.ID, RequestedAt: sr.RequestedAt, Client: c,
		RequestedScope: sr.RequestedScopes, GrantedScope: sr.GrantedScopes,
		RequestedAudience: sr.RequestedAudience, GrantedAudience: sr.GrantedAudience,
		Form: sr.Form, Session: sr.Session,
	}, row.Active, nil
}

func (s *store) deactivate(ctx context.Context, kind, signature string) error {
	return s.conn(ctx).Model(&models.OAuthToken{}).Where("kind = ? AND signature = ?", kind, signature).Update("active", false).Error
}

func (s *store) remove(ctx context.Context, kind, signature string) error {
	return s.conn(ctx).Where("kind = ? AND signature = ?", kind, signature).Delete(&models.OAuthToken{}).Error
}

func (s *store) CreateAuthorizeCodeSession(ctx context.Context, code string, req fosite.Requester) error {
	return s.create(ctx, kindCode, code, req, req.GetSession().GetExpiresAt(fosite.AuthorizeCode))
}

// GetAuthorizeCodeSession answers a used code with
// ErrInvalidatedAuthorizeCode and its request, so fosite revokes what the
// code issued (RFC 9700 §4.2.1).
func (s *store) GetAuthorizeCodeSession(ctx context.Context, code string, _ fosite.Session) (fosite.Requester, error) {
	req, active, err := s.get(ctx, kindCode, code)
	if err != nil {
		return nil, err
	}
	if !active {
		return req, fosite.ErrInvalidatedAuthorizeCode
	}
	return req, nil
}

func (s *store) InvalidateAuthorizeCodeSession(ctx context.Context, code string) error {
	return s.deactivate(ctx, kindCode, code)
}

func (s *store) CreatePKCERequestSession(ctx context.Context, signature string, req fosite.Requester) error {
	return s.create(ctx, kindPKCE, signature, req, req.GetSession().GetExpiresAt(fosite.AuthorizeCode))
}

func (s *store) GetPKCERequestSession(ctx context.Context, signature string, _ fosite.Session) (fosite.Requester, error) {
	req, _, err := s.get(ctx, kindPKCE, signature)
	if err != nil {
		return nil, err
	}
	return req, nil
}

func (s *store) DeletePKCERequestSession(ctx context.Context, signature string) error {
	return s.remove(ctx, kindPKCE, signature)
}

func (s *store) CreateAccessTokenSession(ctx context.Context, signature string, req fosite.Requester) error {
	return s.create(ctx, kindAccess, signature, req, req.GetSession().GetExpiresAt(fosite.AccessToken))
}

func (s *store) GetAccessTokenSession(ctx context.Context, signature string, _ fosite.Session) (fosite.Requester, error) {
	req, _, err := s.get(ctx, kindAccess, signature)
	if err != nil {
		return nil, err
	}
	return req, nil
}

func (s *store) DeleteAccessTokenSession(ctx context.Context, signature string) error {
	return s.remove(ctx, kindAccess, signature)
}

func (s *store) CreateRefreshTokenSession(ctx context.Context, signature, _ string, req fosite.Requester) error {
	return s.create(ctx, kindRefresh, signature, req, req.GetSession().GetExpiresAt(fosite.RefreshToken))
}

// GetRefreshTokenSession answers a used refresh token of a live family
// with ErrInactiveToken and its request: fosite then revokes the family
// (ASVS 5.0 10.4.5).
func (s *store) GetRefreshTokenSession(ctx context.Context, signature string, _ fosite.Session) (fosite.Requester, error) {
	req, active, err := s.get(ctx, kindRefresh, signature)
	if err != nil {
		return nil, err
	}
	if !active {
		return req, fosite.ErrInactiveToken
	}
	return req, nil
}

func (s *store) DeleteRefreshTokenSession(ctx context.Context, signature string) error {
	return s.deactivate(ctx, kindRefresh, signature)
}

// RotateRefreshToken marks the presented refresh token used. Of two
// requests racing with one token, the second finds it used already: that
// is a replay, and the family ends.
func (s *store) RotateRefreshToken(ctx context.Context, requestID, signature string) error {
	db := s.conn(ctx)
	res := db.Model(&models.OAuthToken{}).Where("kind = ? AND signature = ? AND active", kindRefresh, signature).Update("active", false)
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		if err := s.RevokeRefreshToken(ctx, requestID); err != nil {
			return err
		}
		return fosite.ErrInactiveToken
	}
	return db.Where("kind = ? AND family_id = ?", kindAccess, requestID).Delete(&models.OAuthToken{}).Error
}

// RevokeRefreshToken ends the family: RFC 7009 revocation, a replayed
// code or refresh token. Its access tokens then fail verification.
func (s *store) RevokeRefreshToken(ctx context.Context, requestID string) error {
	if err := revokeFamilies(s.conn(ctx), "id = ?", requestID, s.clock.Now().UTC()); err != nil {
		return err
	}
	if s.onRevoke != nil {
		s.onRevoke()
	}
	return nil
}

// RevokeAccessToken ends the family too: an access token is a JWT that
// verification refuses once its family has ended.
func (s *store) RevokeAccessToken(ctx context.Context, requestID string) error {
	return s.RevokeRefreshToken(ctx, requestID)
}

func constantTimeEqual(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

// PruneAfter is how long an expired code, access or refresh token's row
// is kept: a used refresh token stays until then, so its replay is still
// recognised (and ends its family) for as long as it could have worked.
const PruneAfter = 24 * time.Hour

// PruneExpired deletes the token rows that expired more than PruneAfter
// ago (oauth_tokens_expires_idx), so the table holds live tokens, not
// every token ever issued. Families, grants and the audit log stay.
func (s *Service) PruneExpired(ctx context.Context) error {
	return s.db.WithContext(ctx).Where("expires_at < ?", s.clock.Now().Add(-PruneAfter).UTC()).
		Delete(&models.OAuthToken{}).Error
}
