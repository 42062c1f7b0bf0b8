package oauth

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ory/fosite"
	"gorm.io/gorm"

	"keysmith/clock"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/tokens"
)

// ErrRevoked: the token's authorization, consent or app has ended, or
// the user has left the workspace.
var ErrRevoked = errors.New("oauth: the authorization has ended")

// ErrNothingGrantable: the user's role allows none of the scopes asked for.
var ErrNothingGrantable = errors.New("oauth: the role allows none of the requested scopes")

// LiveApp is a live app by its client_id, with its workspace, for the
// consent screen.
func (s *Service) LiveApp(ctx context.Context, clientID string) (models.OAuthClient, error) {
	var app models.OAuthClient
	err := s.db.WithContext(ctx).Preload("Workspace").Where("client_id = ? AND revoked_at IS NULL", clientID).Take(&app).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return app, ErrNotFound
	}
	return app, err
}

// Consent records that user allowed app to act for them in the
// membership's workspace with the grantable part of scopes, and returns
// the session the authorization code carries.
func (s *Service) Consent(ctx context.Context, app models.OAuthClient, user models.User, m models.Membership, scopes []string, actor keys.Actor) (*Session, []string, error) {
	granted := s.Grantable(app, m.Role, scopes)
	if len(granted) == 0 {
		return nil, nil, ErrNothingGrantable
	}
	now := s.clock.Now().UTC()
	var g models.OAuthGrant
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		err := tx.Where("client_pk = ? AND user_id = ? AND workspace_id = ?", app.ID, user.ID, m.WorkspaceID).Take(&g).Error
		switch {
		case errors.Is(err, gorm.ErrRecordNotFound):
			g = models.OAuthGrant{ClientPK: app.ID, UserID: user.ID, WorkspaceID: m.WorkspaceID,
				Scopes: strings.Join(granted, " "), CreatedAt: now, UpdatedAt: now}
			if err := tx.Create(&g).Error; err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			held := granted
			if g.RevokedAt == nil { // a second consent adds to the first
				held = g.ScopeList()
				for _, sc := range granted {
					if !slices.Contains(held, sc) {
						held = append(held, sc)
					}
				}
			} else {
				g.CreatedAt = now
			}
			g.Scopes, g.UpdatedAt, g.RevokedAt = strings.Join(held, " "), now, nil
			if err := tx.Model(&g).Select("scopes", "updated_at", "revoked_at", "created_at").Updates(&g).Error; err != nil {
				return err
			}
		}
		return tx.Create(s.event(m.WorkspaceID, actor, ActionConsented, app, "scopes "+strings.Join(granted, " "))).Error
	})
	if err != nil {
		return nil, nil, err
	}
	// fosite keeps the protocol's time by the wall clock, not Keysmith's
	// clock: so must the deadline it compares.
	return &Session{UserID: user.ID, WorkspaceID: m.WorkspaceID, GrantID: g.ID, ClientPK: app.ID,
		RefreshDeadline: time.Now().UTC().Add(RefreshAbsolute)}, granted, nil
}

// PrepareClientCredentials fills the session of a client-credentials
// request: the app acts for itself in its own workspace, with every scope
// it may ask for unless it asked for fewer.
func (s *Service) PrepareClientCredentials(ar fosite.AccessRequester) {
	c, ok := ar.GetClient().(client)
	sess, ok2 := ar.GetSession().(*Session)
	if !ok || !ok2 {
		return
	}
	sess.ClientPK, sess.WorkspaceID = c.ID, c.WorkspaceID
	scopes := ar.GetRequestedScopes() // fosite has checked them against the app's
	if len(scopes) == 0 {
		scopes = c.ScopeList()
	}
	for _, sc := range scopes {
		ar.GrantScope(sc)
	}
}

// StillAllowed refuses a refresh for a user who has left the workspace the
// app acts in: their access tokens would be refused anyway.
func (s *Service) StillAllowed(ctx context.Context, ar fosite.AccessRequester) error {
	sess, ok := ar.GetSession().(*Session)
	if !ok || sess.GrantID == 0 {
		return nil
	}
	var n int64
	err := s.db.WithContext(ctx).Model(&models.Membership{}).
		Where("workspace_id = ? AND user_id = ?", sess.WorkspaceID, sess.UserID).Count(&n).Error
	if err == nil && n == 0 {
		return ErrRevoked
	}
	return err
}

// RecordIssue audits tokens issued at the token endpoint (never the
// tokens) and marks the app and the consent used.
func (s *Service) RecordIssue(ctx context.Context, ar fosite.AccessRequester, ip, userAgent string) error {
	c, ok := ar.GetClient().(client)
	sess, ok2 := ar.GetSession().(*Session)
	if !ok || !ok2 {
		return nil
	}
	now := s.clock.Now().UTC()
	db := s.db.WithContext(ctx)
	if err := db.Model(&models.OAuthClient{}).Where("id = ?", c.ID).Update("last_used_at", now).Error; err != nil {
		return err
	}
	label := c.Name + " (app)"
	if sess.GrantID != 0 {
		if err := db.Model(&models.OAuthGrant{}).Where("id = ?", sess.GrantID).Update("last_used_at", now).Error; err != nil {
			return err
		}
		var u models.User
		if err := db.Select("email").Where("id = ?", sess.UserID).Take(&u).Error; err == nil {
			label = u.Email + " via " + c.Name
		}
	}
	actor := keys.Actor{UserID: sess.UserID, Label: label, IP: ip, UserAgent: userAgent}
	detail := "grant " + strings.Join(ar.GetGrantTypes(), " ") + ", scopes " + strings.Join(ar.GetGrantedScopes(), " ") +
		", authorization " + ar.GetID()
	return db.Create(s.event(sess.WorkspaceID, actor, ActionTokenIssued, c.OAuthClient, detail)).Error
}

// RecordReuse audits a replayed code or refresh token, whose family
// fosite has just revoked. A token it does not know, or one still unused,
// is no replay.
func (s *Service) RecordReuse(ctx context.Context, grantType, presented, ip, userAgent string) error {
	kind, sig := kindRefresh, s.strategy.RefreshTokenSignature(ctx, presented)
	what := "refresh token"
	if grantType == GrantAuthorizationCode {
		kind, sig, what = kindCode, s.strategy.AuthorizeCodeSignature(ctx, presented), "authorization code"
	}
	var t models.OAuthToken
	if err := s.db.WithContext(ctx).Where("kind = ? AND signature = ? AND NOT active", kind, sig).Take(&t).Error; err != nil {
		return nil
	}
	return s.recordFamily(ctx, t.FamilyID, ActionReuseDetected,
		"a used "+what+" was presented again; authorization "+t.FamilyID+" and every token from it revoked", ip, userAgent)
}

// FamilyOf is the authorization a refresh or access token belongs to.
func (s *Service) FamilyOf(ctx context.Context, presented string) (string, error) {
	var t models.OAuthToken
	err := s.db.WithContext(ctx).Where("(kind = ? AND signature = ?) OR (kind = ? AND signature = ?)",
		kindRefresh, s.strategy.RefreshTokenSignature(ctx, presented),
		kindAccess, s.strategy.AccessTokenSignature(ctx, presented)).Take(&t).Error
	return t.FamilyID, err
}

// RecordRevocation audits an app revoking one of its tokens (RFC 7009).
func (s *Service) RecordRevocation(ctx context.Context, family, ip, userAgent string) error {
	return s.recordFamily(ctx, family, ActionTokenRevoked, "the app revoked authorization "+family+" and every token from it", ip, userAgent)
}

// recordFamily audits an event about one authorization, acted by its app.
func (s *Service) recordFamily(ctx context.Context, family, action, detail, ip, userAgent string) error {
	var app models.OAuthClient
	err := s.db.WithContext(ctx).Joins("JOIN oauth_families f ON f.client_pk = oauth_clients.id").
		Where("f.id = ?", family).Take(&app).Error
	if err != nil {
		return err
	}
	actor := keys.Actor{Label: app.Name + " (app)", IP: ip, UserAgent: userAgent}
	return s.db.WithContext(ctx).Create(s.event(app.WorkspaceID, actor, action, app, detail)).Error
}

// Principal is who an OAuth access token acts for, as things stand now.
type Principal struct {
	ClientPK      int64
	ClientID      string
	AppName       string
	WorkspaceID   int64
	WorkspaceName string
	UserID        int64  // 0: the app acts for itself
	UserEmail     string // "" for the app itself
	Role          models.Role
	// Ceiling is what the token's scopes are cut to: the user's role now
	// (a demotion narrows tokens already issued), or the app's own scopes.
	Ceiling []string
}

// Label names the principal in the audit log.
func (p Principal) Label() string {
	if p.UserID == 0 {
		return p.AppName + " (app)"
	}
	return p.UserEmail + " via " + p.AppName
}

// Principal checks that an OAuth access token's authorization, consent
// and app are live and its user still a member, and says who it acts for.
// Answers are cached for ShortCacheTTL; a revocation in this process
// clears them at once.
func (s *Service) Principal(ctx context.Context, tok *tokens.Token) (*Principal, error) {
	if p, ok := s.principals.get(tok.Family); ok {
		return check(p, tok)
	}
	var row struct {
		ClientPK      int64
		ClientID      string
		AppName       string
		ClientScopes  string
		WorkspaceID   int64
		WorkspaceName string
		UserID        *int64
		UserEmail     *string
		Role          *string
		FamilyRevoked *time.Time
		GrantID       *int64
		GrantRevoked  *time.Time
	}
	err := s.db.WithContext(ctx).Table("oauth_families f").
		Select(`c.id AS client_pk, c.client_id, c.name AS app_name, c.scopes AS client_scopes,
			COALESCE(g.workspace_id, c.workspace_id) AS workspace_id, w.name AS workspace_name,
			g.user_id, u.email AS user_email, m.role, f.revoked_at AS family_revoked, f.grant_id, g.revoked_at AS grant_revoked`).
		Joins("JOIN oauth_clients c ON c.id = f.client_pk AND c.revoked_at IS NULL").
		Joins("LEFT JOIN oauth_grants g ON g.id = f.grant_id").
		Joins("LEFT JOIN users u ON u.id = g.user_id").
		Joins("LEFT JOIN memberships m ON m.workspace_id = g.workspace_id AND m.user_id = g.user_id").
		Joins("JOIN workspaces w ON w.id = COALESCE(g.workspace_id, c.workspace_id)").
		Where("f.id = ?", tok.Family).Take(&row).Error
	var p *Principal
	switch {
	case errors.Is(err, gorm.ErrRecordNotFound):
	case err != nil:
		return nil, err
	case row.FamilyRevoked != nil, row.GrantID != nil && (row.GrantRevoked != nil || row.Role == nil):
	default:
		p = &Principal{ClientPK: row.ClientPK, ClientID: row.ClientID, AppName: row.AppName,
			WorkspaceID: row.WorkspaceID, WorkspaceName: row.WorkspaceName, Ceiling: strings.Fields(row.ClientScopes)}
		if row.GrantID != nil {
			p.UserID, p.UserEmail, p.Role = *row.UserID, *row.UserEmail, models.Role(*row.Role)
			p.Ceiling = s.Ceiling(p.Role)
		}
	}
	s.principals.put(tok.Family, p)
	return check(p, tok)
}

// check holds a token to what its principal is now.
func check(p *Principal, tok *tokens.Token) (*Principal, error) {
	if p == nil || p.ClientID != tok.ClientID || p.WorkspaceID != tok.WorkspaceID || p.UserID != tok.UserID {
		return nil, ErrRevoked
	}
	return p, nil
}

// Scopes cuts a token's scopes to what its principal may hold now.
func (p Principal) Scopes(tokenScopes []string) []string {
	var out []string
	for _, sc := range tokenScopes {
		if keys.Covers(p.Ceiling, []string{sc}) {
			out = append(out, sc)
		}
	}
	return out
}

// principalCache remembers, per family, who its tokens act for (nil: no
// one), for keys.ShortCacheTTL.
type principalCache struct {
	clock clock.Clock
	mu    sync.Mutex
	m     map[string]principalEntry
}

type principalEntry struct {
	p     *Principal
	until time.Time
}

const principalCacheSize = 10_000

func newPrincipalCache(clk clock.Clock) *principalCache {
	return &principalCache{clock: clk, m: map[string]principalEntry{}}
}

func (c *principalCache) get(family string) (*Principal, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[family]
	if !ok || !c.clock.Now().Before(e.until) {
		return nil, false
	}
	return e.p, true
}

func (c *principalCache) put(family string, p *Principal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= principalCacheSize {
		clear(c.m)
	}
	c.m[family] = principalEntry{p: p, until: c.clock.Now().Add(keys.ShortCacheTTL)}
}

func (c *principalCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.m)
}

// IntrospectRefresh says whether a refresh token is live, and its request.
func (s *Service) IntrospectRefresh(ctx context.Context, presented string) (fosite.Requester, bool) {
	req, active, err := s.store.get(ctx, kindRefresh, s.strategy.RefreshTokenSignature(ctx, presented))
	if err != nil || !active {
		return nil, false
	}
	if err := s.strategy.ValidateRefreshToken(ctx, req, presented); err != nil {
		return nil, false
	}
	return req, true
}
