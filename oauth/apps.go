package oauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/url"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"

	"keysmith/keys"
	"keysmith/models"
	"keysmith/validate"
)

// Errors the HTTP layer maps to pages and answers.
var (
	ErrNotFound  = errors.New("oauth: no such app in this workspace")
	ErrForbidden = errors.New("oauth: only owners and admins manage OAuth apps")
)

// Audit actions (SPEC §9).
const (
	ActionAppCreated     = "oauth_app.created"
	ActionSecretRotated  = "oauth_app.secret_rotated"
	ActionAppRevoked     = "oauth_app.revoked"
	ActionConsented      = "oauth.consented"
	ActionTokenIssued    = "oauth.token_issued"
	ActionGrantRevoked   = "oauth.grant_revoked"
	ActionReuseDetected  = "oauth.reuse_detected"
	ActionTokenRevoked   = "oauth.token_revoked"
	maxRedirectURIs      = 10
	maxAppNameLength     = 80
	maxRedirectURILength = 500
)

// Prefixes that make an app's credentials recognisable in a leak.
const (
	ClientIDPrefix = "ksapp_"
	SecretPrefix   = "ksapp_secret_"
)

// AppInput is what the registration form or the CLI asks for.
type AppInput struct {
	Name         string
	LogoURL      string
	RedirectURIs []string
	Public       bool // PKCE alone, no secret (mobile, single-page and CLI apps)
	Scopes       []string
}

// Registered is an app with its secret: the only time the secret exists
// (empty for a public app).
type Registered struct {
	App    models.OAuthClient
	Secret string
}

// AppSummary is an app in Settings → OAuth apps.
type AppSummary struct {
	App   models.OAuthClient
	Users int64 // users who have authorized it and not revoked it
}

// hashSecret is how a client secret is stored: SHA-256, since it is 130
// random bits (a password hash would only slow every token request).
func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// validateApp checks an app's input and returns it cleaned.
func (s *Service) validateApp(in AppInput) (AppInput, error) {
	errs := validate.Errors{}
	in.Name = strings.TrimSpace(in.Name)
	switch {
	case in.Name == "":
		errs["name"] = "Give the app a name; users see it on the consent screen."
	case len([]rune(in.Name)) > maxAppNameLength:
		errs["name"] = "Keep the name under 80 characters."
	}
	in.LogoURL = strings.TrimSpace(in.LogoURL)
	if in.LogoURL != "" {
		if u, err := url.Parse(in.LogoURL); err != nil || u.Scheme != "https" || u.Host == "" || len(in.LogoURL) > maxRedirectURILength {
			errs["logo_url"] = "The logo URL must be an https:// address."
		}
	}
	var uris []string
	for _, raw := range in.RedirectURIs {
		for _, u := range strings.Fields(raw) {
			if !slices.Contains(uris, u) {
				uris = append(uris, u)
			}
		}
	}
	in.RedirectURIs = uris
	switch {
	case len(uris) == 0:
		errs["redirect_uris"] = "Add at least one redirect URI: where users return after they allow or deny the app."
	case len(uris) > maxRedirectURIs:
		errs["redirect_uris"] = "Register at most 10 redirect URIs."
	default:
		for _, u := range uris {
			if msg := checkRedirectURI(u); msg != "" {
				errs["redirect_uris"] = msg
				break
			}
		}
	}
	scopes, err := s.catalog.Normalize(in.Scopes)
	switch {
	case len(in.Scopes) == 0:
		errs["scopes"] = "Choose at least one scope the app may ask for."
	case err != nil:
		errs["scopes"] = err.Error()
	}
	in.Scopes = scopes
	return in, errs.Err()
}

// checkRedirectURI says what is wrong with a redirect URI, or "". RFC 9700
// §2.1: https, or http only on the loopback interface (native apps); a
// private-use scheme for native apps; never a fragment.
func checkRedirectURI(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil || !u.IsAbs() || len(raw) > maxRedirectURILength:
		return raw + " is not an absolute URI."
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return raw + " has a fragment (#…); redirect URIs may not."
	case u.Scheme == "https" && u.Host != "":
		return ""
	case u.Scheme == "http":
		if h := u.Hostname(); h == "localhost" || h == "127.0.0.1" || h == "::1" {
			return ""
		}
		return raw + " uses http: only https, or http on localhost / 127.0.0.1 for apps on the user's own machine, are allowed."
	case u.Scheme == "javascript" || u.Scheme == "data" || u.Scheme == "file":
		return raw + " uses a scheme that cannot be a redirect URI."
	case strings.Contains(u.Scheme, "."): // com.example.app:/callback (RFC 8252 §7.1)
		return ""
	}
	return raw + " must use https (or a reverse-domain scheme such as com.example.app: for a native app)."
}

// newSecret returns a random credential with prefix.
func newSecret(prefix string) string { return prefix + strings.ToLower(rand.Text()) }

// Register adds an app to the workspace. Owners and admins only.
func (s *Service) Register(ctx context.Context, workspaceID int64, actor keys.Actor, in AppInput) (Registered, error) {
	if !actor.Admin || actor.UserID == 0 {
		return Registered{}, ErrForbidden
	}
	in, err := s.validateApp(in)
	if err != nil {
		return Registered{}, err
	}
	now := s.clock.Now().UTC()
	app := models.OAuthClient{
		WorkspaceID: workspaceID, ClientID: newSecret(ClientIDPrefix), Name: in.Name, LogoURL: in.LogoURL,
		RedirectURIs: strings.Join(in.RedirectURIs, "\n"), Scopes: strings.Join(in.Scopes, " "), Public: in.Public,
		CreatedByID: &actor.UserID, CreatedAt: now, UpdatedAt: now,
	}
	var secret string
	if !in.Public {
		secret = newSecret(SecretPrefix)
		app.SecretHash = hashSecret(secret)
	}
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(&app).Error; err != nil {
			return err
		}
		kind := "confidential"
		if app.Public {
			kind = "public"
		}
		return tx.Create(s.event(workspaceID, actor, ActionAppCreated, app,
			kind+", scopes "+app.Scopes+", redirect URIs "+strings.Join(in.RedirectURIs, " "))).Error
	})
	return Registered{App: app, Secret: secret}, err
}

// App is one app of the workspace, revoked or not.
func (s *Service) App(ctx context.Context, workspaceID, id int64) (models.OAuthClient, error) {
	var app models.OAuthClient
	err := s.db.WithContext(ctx).Where("workspace_id = ? AND id = ?", workspaceID, id).Take(&app).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return app, ErrNotFound
	}
	return app, err
}

// Apps lists the workspace's apps, newest first, with how many users
// have authorized each.
func (s *Service) Apps(ctx context.Context, workspaceID int64) ([]AppSummary, error) {
	var apps []models.OAuthClient
	db := s.db.WithContext(ctx)
	if err := db.Where("workspace_id = ?", workspaceID).Order("revoked_at IS NOT NULL, created_at DESC, id DESC").Find(&apps).Error; err != nil {
		return nil, err
	}
	var counts []struct {
		ClientPK int64
		N        int64
	}
	if err := db.Model(&models.OAuthGrant{}).Select("oauth_grants.client_pk, COUNT(DISTINCT oauth_grants.user_id) AS n").
		Joins("JOIN oauth_clients c ON c.id = oauth_grants.client_pk").
		Where("c.workspace_id = ? AND oauth_grants.revoked_at IS NULL", workspaceID).
		Group("oauth_grants.client_pk").Scan(&counts).Error; err != nil {
		return nil, err
	}
	out := make([]AppSummary, len(apps))
	for i, a := range apps {
		out[i].App = a
		for _, c := range counts {
			if c.ClientPK == a.ID {
				out[i].Users = c.N
			}
		}
	}
	return out, nil
}

// RotateSecret gives a confidential app a new secret; the old one stops
// working at once. Tokens already issued keep working.
func (s *Service) RotateSecret(ctx context.Context, workspaceID int64, actor keys.Actor, id int64) (Registered, error) {
	if !actor.Admin || actor.UserID == 0 {
		return Registered{}, ErrForbidden
	}
	app, err := s.App(ctx, workspaceID, id)
	switch {
	case err != nil:
		return Registered{}, err
	case app.RevokedAt != nil:
		return Registered{}, ErrNotFound
	case app.Public:
		return Registered{}, validate.Errors{"secret": "A public app has no secret to rotate: PKCE proves it."}
	}
	secret := newSecret(SecretPrefix)
	app.SecretHash, app.UpdatedAt = hashSecret(secret), s.clock.Now().UTC()
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Model(&app).Updates(map[string]any{"secret_hash": app.SecretHash, "updated_at": app.UpdatedAt}).Error; err != nil {
			return err
		}
		return tx.Create(s.event(workspaceID, actor, ActionSecretRotated, app, "")).Error
	})
	return Registered{App: app, Secret: secret}, err
}

// RevokeApp ends an app: its credentials, every consent to it and every
// token it holds stop working at once.
func (s *Service) RevokeApp(ctx context.Context, workspaceID int64, actor keys.Actor, id int64) error {
	if !actor.Admin || actor.UserID == 0 {
		return ErrForbidden
	}
	app, err := s.App(ctx, workspaceID, id)
	if err != nil {
		return err
	}
	if app.RevokedAt != nil {
		return nil
	}
	now := s.clock.Now().UTC()
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Model(&app).Updates(map[string]any{"revoked_at": now, "updated_at": now}).Error; err != nil {
			return err
		}
		if err := tx.Model(&models.OAuthGrant{}).Where("client_pk = ? AND revoked_at IS NULL", app.ID).Update("revoked_at", now).Error; err != nil {
			return err
		}
		if err := revokeFamilies(tx, "client_pk = ?", app.ID, now); err != nil {
			return err
		}
		return tx.Create(s.event(workspaceID, actor, ActionAppRevoked, app, "")).Error
	})
	if err == nil {
		s.principals.clear()
	}
	return err
}

// revokeFamilies ends the families where cond holds: their refresh tokens
// and codes become unusable, their access tokens fail verification.
func revokeFamilies(tx *gorm.DB, cond string, arg any, now time.Time) error {
	ids := tx.Model(&models.OAuthFamily{}).Select("id").Where(cond, arg)
	if err := tx.Model(&models.OAuthToken{}).Where("family_id IN (?) AND active", ids).Update("active", false).Error; err != nil {
		return err
	}
	return tx.Model(&models.OAuthFamily{}).Where(cond+" AND revoked_at IS NULL", arg).Update("revoked_at", now).Error
}

// Authorized lists the apps a user has authorized, in every workspace,
// newest first.
func (s *Service) Authorized(ctx context.Context, userID int64) ([]models.OAuthGrant, error) {
	var grants []models.OAuthGrant
	err := s.db.WithContext(ctx).Preload("Client").Preload("Client.Workspace").Preload("Workspace").
		Where("user_id = ? AND revoked_at IS NULL", userID).Order("created_at DESC, id DESC").Find(&grants).Error
	return grants, err
}

// RevokeGrant ends a user's consent to an app: its refresh tokens at once,
// its access tokens at Keysmith's next verification.
func (s *Service) RevokeGrant(ctx context.Context, actor keys.Actor, grantID int64) error {
	var g models.OAuthGrant
	err := s.db.WithContext(ctx).Preload("Client").Where("id = ? AND user_id = ? AND revoked_at IS NULL", grantID, actor.UserID).Take(&g).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	now := s.clock.Now().UTC()
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Model(&g).Updates(map[string]any{"revoked_at": now, "updated_at": now}).Error; err != nil {
			return err
		}
		if err := revokeFamilies(tx, "grant_id = ?", g.ID, now); err != nil {
			return err
		}
		return tx.Create(s.event(g.WorkspaceID, actor, ActionGrantRevoked, g.Client, "scopes "+g.Scopes)).Error
	})
	if err == nil {
		s.principals.clear()
	}
	return err
}

// event is an audit event about an app; it names no key.
func (s *Service) event(workspaceID int64, actor keys.Actor, action string, app models.OAuthClient, detail string) *models.AuditEvent {
	ev := &models.AuditEvent{
		WorkspaceID: workspaceID, ActorLabel: actor.Label, Action: action,
		KeyLabel: app.Name + " (" + app.ClientID + ")", Detail: detail,
		IP: actor.IP, UserAgent: models.StorableText(actor.UserAgent, 300), CreatedAt: s.clock.Now().UTC(),
	}
	if actor.UserID != 0 {
		ev.ActorUserID = &actor.UserID
	}
	if actor.KeyID != 0 {
		ev.ActorKeyID = &actor.KeyID
	}
	return ev
}
