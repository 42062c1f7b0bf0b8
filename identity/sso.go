package identity

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"gorm.io/gorm"

	"keysmith/accounts"
	"keysmith/clock"
	"keysmith/config"
	"keysmith/models"
	"keysmith/teams"
)

// CallbackPath is where the provider sends the browser back: the redirect
// URI to register is KEYSMITH_BASE_URL followed by it.
const CallbackPath = "/login/oidc/callback"

// Errors of single sign-on.
var (
	// ErrSSOUnavailable: single sign-on is off, or the provider's discovery
	// document has not been read yet (the provider is unreachable).
	ErrSSOUnavailable = errors.New("identity: the identity provider is unavailable")
	// ErrSSORefused: the provider's answer did not prove a sign-in: the
	// code exchange failed, or the ID token's signature, issuer, audience,
	// expiry or nonce is wrong. The wrapped error says which, for the log.
	ErrSSORefused = errors.New("identity: the identity provider's answer was refused")
	// ErrEmailUnverified: the provider does not vouch for the address.
	ErrEmailUnverified = errors.New("identity: the provider has not verified the email address")
	// ErrNoEmail: the provider sent no email address (the email scope).
	ErrNoEmail = errors.New("identity: the provider sent no email address")
	// ErrIdentityTaken: the provider's account is linked to another user.
	ErrIdentityTaken = errors.New("identity: that account of the provider is linked to another user")
	// ErrAlreadyLinked: the user has an account of the provider linked.
	ErrAlreadyLinked = errors.New("identity: an account of the provider is linked already")
	// ErrNotLinked: the user has no account of the provider linked.
	ErrNotLinked = errors.New("identity: no account of the provider is linked")
	// ErrLastSignIn: unlinking would leave the user no way to sign in.
	ErrLastSignIn = errors.New("identity: the provider is the only way this user signs in")
	// ErrReauthTooOld: a confirmation through the provider came back with
	// an authentication older than ReauthWithin (or none).
	ErrReauthTooOld = errors.New("identity: the provider did not sign the user in again")
)

// LinkRequiredError: a Keysmith account has the provider's verified
// address but is not linked to it. An identity provider that asserts
// someone else's address must not get into their account, so the link
// waits for the account's password (or a link from Settings → Security).
type LinkRequiredError struct{ User models.User }

func (e *LinkRequiredError) Error() string {
	return "identity: an account with this email exists; it must prove its password before it is linked"
}

// Audit actions of single sign-on, written to the user's workspaces.
const (
	ActionSSOLinked   = "sso.linked"
	ActionSSOUnlinked = "sso.unlinked"
)

// ReauthWithin is how recent the provider's auth_time must be for a
// confirmation of access (sudo) through it.
const ReauthWithin = 5 * time.Minute

// discoveryTimeout bounds one attempt to read the discovery document.
const discoveryTimeout = 5 * time.Second

// Identity is who the provider says signed in, from a verified ID token
// (and the userinfo endpoint for what the token leaves out).
type Identity struct {
	Issuer, Subject string
	Email           string
	EmailVerified   bool
	Name            string
	AuthTime        time.Time // zero when the token has no auth_time
	// Workspace is the workspace claim's value ("" without one),
	// WorkspaceName the name claim's; Roles the role claim's values.
	Workspace, WorkspaceName string
	Roles                    []string
	// IDToken is the raw token, kept as the hint of RP-initiated logout.
	IDToken string
}

// Attempt is one authorization request, kept in the browser's session
// until its callback: the state the callback must echo, the nonce the ID
// token must carry, and the PKCE verifier.
type Attempt struct {
	State, Nonce, Verifier string
	Reauth                 bool // a confirmation of access (sudo), not a sign-in
}

// SSO is the OpenID Connect relying party: it reads the provider's
// discovery document (retrying in the background while the provider is
// unreachable), builds authorization requests, verifies their answers, and
// signs users in by (issuer, subject), provisioning accounts and
// workspaces from claims.
type SSO struct {
	db       *gorm.DB
	accounts *accounts.Service
	clock    clock.Clock
	log      *slog.Logger
	cfg      config.OIDC
	redirect string
	client   *http.Client
	// Backoff is the wait before the n-th retry of discovery (n from 0).
	Backoff func(n int) time.Duration

	mu      sync.RWMutex
	rp      *relyingParty
	lastErr error
	stop    context.CancelFunc
	done    chan struct{}
}

type relyingParty struct {
	provider   *oidc.Provider
	verifier   *oidc.IDTokenVerifier
	oauth      oauth2.Config
	endSession string
	userinfo   bool
}

// NewSSO returns the relying party for cfg (nil when single sign-on is off)
// on the dashboard at baseURL. Nothing is fetched until Start.
func NewSSO(db *gorm.DB, acc *accounts.Service, clk clock.Clock, log *slog.Logger, cfg config.OIDC, baseURL string) *SSO {
	if !cfg.Enabled() {
		return nil
	}
	if len(cfg.Roles) > 0 && !slices.ContainsFunc(slices.Collect(maps.Values(cfg.Roles)), func(r string) bool { return models.Role(r).IsAdmin() }) {
		log.Warn("single sign-on: KEYSMITH_OIDC_ROLES maps no value to admin or owner, so a workspace single sign-on makes has no owner until someone is given the role by hand; map the group of the people who run your workspaces to admin")
	}
	return &SSO{
		db: db, accounts: acc, clock: clk, log: log, cfg: cfg,
		redirect: strings.TrimRight(baseURL, "/") + CallbackPath,
		client:   &http.Client{Timeout: 10 * time.Second},
		Backoff: func(n int) time.Duration {
			return min(time.Second<<min(n, 6), time.Minute)
		},
	}
}

// Name is the provider's name for the sign-in button.
func (s *SSO) Name() string { return s.cfg.Name }

// Issuer is the provider's issuer URL.
func (s *SSO) Issuer() string { return s.cfg.Issuer }

// Start reads the discovery document once; if the provider does not
// answer, it logs why and keeps trying in the background (with Backoff)
// until it does or Close. It never fails: password sign-in works meanwhile.
func (s *SSO) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.stop, s.done = cancel, make(chan struct{})
	if err := s.Discover(ctx); err == nil {
		close(s.done)
		return
	}
	go func() {
		defer close(s.done)
		for n := 0; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-time.After(s.Backoff(n)):
			}
			if s.Discover(ctx) == nil {
				return
			}
		}
	}()
}

// Close stops retrying discovery.
func (s *SSO) Close() {
	if s.stop != nil {
		s.stop()
		<-s.done
	}
}

// Discover reads the provider's discovery document and keys the relying
// party with it; a provider read once stays (go-oidc fetches rotated keys
// itself).
func (s *SSO) Discover(ctx context.Context) error {
	if s.Ready() {
		return nil
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, s.client), discoveryTimeout)
	defer cancel()
	provider, err := oidc.NewProvider(ctx, s.cfg.Issuer)
	if err != nil {
		s.mu.Lock()
		first := s.lastErr == nil
		s.lastErr = err
		s.mu.Unlock()
		if first {
			s.log.Error("single sign-on: the identity provider is unreachable; password sign-in works, retrying in the background", "issuer", s.cfg.Issuer, "err", err)
		} else {
			s.log.Debug("single sign-on: the identity provider is still unreachable", "issuer", s.cfg.Issuer, "err", err)
		}
		return err
	}
	var extra struct {
		EndSession string `json:"end_session_endpoint"`
	}
	_ = provider.Claims(&extra)
	rp := &relyingParty{
		provider: provider,
		verifier: provider.VerifierContext(oidc.ClientContext(context.Background(), s.client), &oidc.Config{ClientID: s.cfg.ClientID, Now: s.clock.Now}),
		oauth: oauth2.Config{
			ClientID: s.cfg.ClientID, ClientSecret: s.cfg.ClientSecret,
			Endpoint: provider.Endpoint(), RedirectURL: s.redirect, Scopes: s.cfg.Scopes,
		},
		endSession: extra.EndSession,
		userinfo:   provider.UserInfoEndpoint() != "",
	}
	s.mu.Lock()
	s.rp, s.lastErr = rp, nil
	s.mu.Unlock()
	s.log.Info("single sign-on: identity provider discovered", "issuer", s.cfg.Issuer)
	return nil
}

// Ready reports whether the discovery document has been read.
func (s *SSO) Ready() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rp != nil
}

// Status is the provider's state for /readyz: "ok" or "unreachable".
func (s *SSO) Status() string {
	if s.Ready() {
		return "ok"
	}
	return "unreachable"
}

func (s *SSO) party(ctx context.Context) (*relyingParty, error) {
	s.mu.RLock()
	rp := s.rp
	s.mu.RUnlock()
	if rp != nil {
		return rp, nil
	}
	// Someone is waiting: try now rather than at the next retry.
	if err := s.Discover(ctx); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSSOUnavailable, err)
	}
	return s.party(ctx)
}

// Begin makes an authorization request (code flow, PKCE S256, state and
// nonce) and returns the provider's URL for it and the attempt to keep in
// the session. A confirmation of access (reauth) asks the provider to sign
// the user in again (prompt=login, max_age=0).
func (s *SSO) Begin(ctx context.Context, reauth bool) (string, Attempt, error) {
	rp, err := s.party(ctx)
	if err != nil {
		return "", Attempt{}, err
	}
	a := Attempt{State: rand.Text(), Nonce: rand.Text(), Verifier: oauth2.GenerateVerifier(), Reauth: reauth}
	opts := []oauth2.AuthCodeOption{oidc.Nonce(a.Nonce), oauth2.S256ChallengeOption(a.Verifier)}
	if reauth {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "login"), oauth2.SetAuthURLParam("max_age", "0"))
	}
	return rp.oauth.AuthCodeURL(a.State, opts...), a, nil
}

// Finish redeems the callback's code for the attempt and returns the
// identity its ID token proves: signed by the provider's keys, from its
// issuer, for this client, unexpired, and carrying the attempt's nonce.
func (s *SSO) Finish(ctx context.Context, a Attempt, code string) (Identity, error) {
	rp, err := s.party(ctx)
	if err != nil {
		return Identity{}, err
	}
	ctx = oidc.ClientContext(ctx, s.client)
	tok, err := rp.oauth.Exchange(ctx, code, oauth2.VerifierOption(a.Verifier))
	if err != nil {
		return Identity{}, fmt.Errorf("%w: code exchange: %v", ErrSSORefused, err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return Identity{}, fmt.Errorf("%w: the token response has no id_token", ErrSSORefused)
	}
	idt, err := rp.verifier.Verify(ctx, raw)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrSSORefused, err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(a.Nonce)) != 1 {
		return Identity{}, fmt.Errorf("%w: the ID token's nonce is not this sign-in's", ErrSSORefused)
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return Identity{}, fmt.Errorf("%w: claims: %v", ErrSSORefused, err)
	}
	// Some providers keep email and profile out of the ID token when an
	// access token comes with it: the userinfo endpoint has them, for the
	// same subject.
	if _, ok := claims["email"]; !ok && rp.userinfo {
		if info, err := rp.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok)); err == nil && info.Subject == idt.Subject {
			more := map[string]any{}
			if info.Claims(&more) == nil {
				for k, v := range more {
					if _, ok := claims[k]; !ok {
						claims[k] = v
					}
				}
			}
		} else if err != nil {
			s.log.Warn("single sign-on: userinfo", "err", err)
		}
	}
	id := Identity{
		Issuer: idt.Issuer, Subject: idt.Subject, IDToken: raw,
		Email:         accounts.NormalizeEmail(claimString(claims["email"])),
		EmailVerified: claimBool(claims["email_verified"]),
		Name:          strings.TrimSpace(claimString(claims["name"])),
	}
	if at, ok := claims["auth_time"].(float64); ok && at > 0 {
		id.AuthTime = time.Unix(int64(at), 0).UTC()
	}
	if s.cfg.WorkspaceClaim != "" {
		id.Workspace = strings.TrimSpace(claimString(claims[s.cfg.WorkspaceClaim]))
	}
	if s.cfg.WorkspaceNameClaim != "" {
		id.WorkspaceName = strings.TrimSpace(claimString(claims[s.cfg.WorkspaceNameClaim]))
	}
	if s.cfg.RoleClaim != "" {
		id.Roles = claimStrings(claims[s.cfg.RoleClaim])
	}
	if a.Reauth {
		now := s.clock.Now()
		if id.AuthTime.IsZero() || now.Sub(id.AuthTime) > ReauthWithin || id.AuthTime.Sub(now) > ReauthWithin {
			return id, ErrReauthTooOld
		}
	}
	return id, nil
}

// LogoutURL is the provider's end_session_endpoint with the ID token as
// hint and back to the dashboard afterwards; "" when the provider has none.
func (s *SSO) LogoutURL(idToken, postLogout string) string {
	s.mu.RLock()
	rp := s.rp
	s.mu.RUnlock()
	if rp == nil || rp.endSession == "" {
		return ""
	}
	u, err := url.Parse(rp.endSession)
	if err != nil {
		return ""
	}
	q := u.Query()
	if idToken != "" {
		q.Set("id_token_hint", idToken)
	}
	q.Set("client_id", s.cfg.ClientID)
	q.Set("post_logout_redirect_uri", postLogout)
	u.RawQuery = q.Encode()
	return u.String()
}

// SignInResult is the user a sign-in is for, and the workspace the
// workspace claim names (0 without one), where they land.
type SignInResult struct {
	User        models.User
	WorkspaceID int64
	Created     bool
}

// SignIn finds the user linked to the identity, or makes one from its
// verified email and name; then brings their workspace membership in line
// with the claims. An account with the same email that is not linked is a
// LinkRequiredError: it is never linked by email alone.
func (s *SSO) SignIn(ctx context.Context, id Identity, a accounts.Actor) (SignInResult, error) {
	var res SignInResult
	var err error
	// Two first sign-ins of the same subject at once: the second one's
	// insert meets the first one's unique index; it reads what the first
	// made and signs in to it.
	for try := 0; try < 2; try++ {
		res, err = s.signIn(ctx, id)
		if !errors.Is(err, gorm.ErrDuplicatedKey) && !errors.Is(err, accounts.ErrEmailTaken) {
			break
		}
	}
	if err != nil {
		return res, err
	}
	res.WorkspaceID, err = s.syncWorkspace(ctx, res.User, id, a)
	return res, err
}

func (s *SSO) signIn(ctx context.Context, id Identity) (SignInResult, error) {
	var res SignInResult
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		now := s.clock.Now()
		linked := func() (bool, error) {
			var link models.UserIdentity
			err := tx.Where("issuer = ? AND subject = ?", id.Issuer, id.Subject).Take(&link).Error // user_identities_subject_idx
			if errors.Is(err, gorm.ErrRecordNotFound) {
				return false, nil
			}
			if err != nil {
				return false, err
			}
			updates := map[string]any{"last_used_at": now}
			if id.Email != "" {
				updates["email"] = id.Email
			}
			if err := tx.Model(&link).Updates(updates).Error; err != nil {
				return false, err
			}
			return true, tx.Take(&res.User, link.UserID).Error
		}
		if ok, err := linked(); ok || err != nil {
			return err
		}
		if id.Email == "" {
			return ErrNoEmail
		}
		if !id.EmailVerified {
			return ErrEmailUnverified
		}
		var existing models.User
		err := tx.Where("email = ?", id.Email).Take(&existing).Error
		if err == nil {
			// A first sign-in of the same subject may have made this
			// account since the lookup above (each statement sees what
			// committed before it).
			if ok, err := linked(); ok || err != nil {
				return err
			}
			return &LinkRequiredError{User: existing}
		}
		if !errors.Is(err, gorm.ErrRecordNotFound) {
			return err
		}
		user := models.User{Email: id.Email, Name: id.Name} // no password: the provider signs them in
		if err := tx.Create(&user).Error; err != nil {
			if errors.Is(err, gorm.ErrDuplicatedKey) {
				return accounts.ErrEmailTaken
			}
			return err
		}
		if err := tx.Create(&models.UserIdentity{UserID: user.ID, Issuer: id.Issuer, Subject: id.Subject, Email: id.Email, LastUsedAt: &now}).Error; err != nil {
			return err
		}
		// A workspace claim gives the user their workspace; without one
		// (or without its value), a personal one, as sign-up does.
		if s.cfg.WorkspaceClaim == "" || id.Workspace == "" {
			if err := s.accounts.CreatePersonalWorkspaceTx(tx, user); err != nil {
				return err
			}
		}
		res.User, res.Created = user, true
		return nil
	})
	return res, err
}

// Link ties the identity to a user who proved they are them (their
// password, or their session), and records it in their workspaces' logs.
func (s *SSO) Link(ctx context.Context, user models.User, id Identity, a accounts.Actor) error {
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var links []models.UserIdentity
		if err := tx.Where("(issuer = ? AND subject = ?) OR (user_id = ? AND issuer = ?)", id.Issuer, id.Subject, user.ID, id.Issuer).Find(&links).Error; err != nil {
			return err
		}
		for _, l := range links {
			switch {
			case l.Subject == id.Subject && l.UserID == user.ID:
				return nil
			case l.Subject == id.Subject:
				return ErrIdentityTaken
			default:
				return ErrAlreadyLinked
			}
		}
		now := s.clock.Now()
		err := tx.Create(&models.UserIdentity{UserID: user.ID, Issuer: id.Issuer, Subject: id.Subject, Email: id.Email, LastUsedAt: &now}).Error
		if errors.Is(err, gorm.ErrDuplicatedKey) {
			return ErrIdentityTaken
		}
		if err != nil {
			return err
		}
		return s.accounts.AuditSecurityTx(tx, user, a, ActionSSOLinked, s.cfg.Name+" ("+id.Email+")")
	})
}

// Linked is the user's identity at the provider, if any.
func (s *SSO) Linked(ctx context.Context, userID int64) (*models.UserIdentity, error) {
	var link models.UserIdentity
	err := s.db.WithContext(ctx).Where("user_id = ? AND issuer = ?", userID, s.cfg.Issuer).Take(&link).Error // user_identities_user_idx
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &link, nil
}

// Unlink removes the user's identity at the provider, as long as they keep
// a password or a passkey to sign in with.
func (s *SSO) Unlink(ctx context.Context, user models.User, a accounts.Actor) error {
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var passkeys int64
		if err := tx.Model(&models.Passkey{}).Where("user_id = ?", user.ID).Count(&passkeys).Error; err != nil {
			return err
		}
		var fresh models.User
		if err := tx.Take(&fresh, user.ID).Error; err != nil {
			return err
		}
		if fresh.PasswordHash == "" && passkeys == 0 {
			return ErrLastSignIn
		}
		res := tx.Where("user_id = ? AND issuer = ?", user.ID, s.cfg.Issuer).Delete(&models.UserIdentity{})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return ErrNotLinked
		}
		return s.accounts.AuditSecurityTx(tx, fresh, a, ActionSSOUnlinked, s.cfg.Name)
	})
}

// syncWorkspace brings the user's memberships of the workspaces tied to
// claim values in line with this sign-in's claims: the workspace the
// claim names (made now if it is new) with the mapped role, and none of
// the others. The last owner of a workspace is never demoted nor removed
// here: that is logged and left to the workspace. It returns the
// workspace the claim names, 0 for none.
func (s *SSO) syncWorkspace(ctx context.Context, user models.User, id Identity, a accounts.Actor) (int64, error) {
	if s.cfg.WorkspaceClaim == "" {
		return 0, nil
	}
	// Two first sign-ins naming a new workspace at once: the second one's
	// insert meets the first one's unique index, and tries again.
	wsID, err := s.syncWorkspaceOnce(ctx, user, id, a)
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		wsID, err = s.syncWorkspaceOnce(ctx, user, id, a)
	}
	return wsID, err
}

// via ends the audit detail of a change single sign-on makes.
const via = " (single sign-on)"

func (s *SSO) syncWorkspaceOnce(ctx context.Context, user models.User, id Identity, a accounts.Actor) (int64, error) {
	var wsID int64
	// The member is the actor of the changes their sign-in makes.
	actor := teams.Actor{User: user, IP: a.IP, UserAgent: a.UserAgent}
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		// The memberships single sign-on manages: of workspaces tied to a
		// claim value of this issuer.
		var managed []struct {
			WorkspaceID int64
			Role        models.Role
			ClaimValue  string
		}
		err := tx.Table("memberships").
			Select("memberships.workspace_id, memberships.role, sso_workspaces.claim_value").
			Joins("JOIN sso_workspaces ON sso_workspaces.workspace_id = memberships.workspace_id").
			Where("memberships.user_id = ? AND sso_workspaces.issuer = ?", user.ID, id.Issuer).
			Scan(&managed).Error
		if err != nil {
			return err
		}
		var current *models.Membership
		for _, m := range managed {
			if m.ClaimValue == id.Workspace {
				current = &models.Membership{WorkspaceID: m.WorkspaceID, Role: m.Role}
				continue
			}
			why := fmt.Sprintf("; the %s claim no longer names this workspace", s.cfg.WorkspaceClaim) + via
			_, err := teams.RemoveTx(tx, m.WorkspaceID, actor, user.ID, why)
			switch {
			case errors.Is(err, teams.ErrLastOwner):
				s.log.Warn("single sign-on: the claim no longer names a workspace whose last owner this user is; they stay its owner", "user", user.Email, "workspace", m.WorkspaceID)
			case errors.Is(err, teams.ErrNotFound):
				// Another sign-in of theirs removed it since the query above.
			case err != nil:
				return err
			}
		}
		if id.Workspace == "" {
			return nil
		}
		mapped, hasMapping := s.mappedRole(id.Roles)
		if current == nil {
			var tie models.SSOWorkspace
			err := tx.Where("issuer = ? AND claim_value = ?", id.Issuer, id.Workspace).Take(&tie).Error // sso_workspaces_claim_idx
			if errors.Is(err, gorm.ErrRecordNotFound) {
				ws := models.Workspace{Name: workspaceName(id)}
				if err := tx.Create(&ws).Error; err != nil {
					return err
				}
				tie = models.SSOWorkspace{Issuer: id.Issuer, ClaimValue: id.Workspace, WorkspaceID: ws.ID}
				if err := tx.Create(&tie).Error; err != nil {
					return err // a duplicate: another sign-in made it first; SignIn tries again
				}
			} else if err != nil {
				return err
			}
			wsID = tie.WorkspaceID
			role := mapped
			if !hasMapping {
				role = models.RoleEditor
			}
			role, why, err := s.ownerIfNone(tx, wsID, role, hasMapping)
			if err != nil {
				return err
			}
			return teams.JoinTx(tx, wsID, actor, user, role, why)
		}
		wsID = current.WorkspaceID
		if !hasMapping || current.Role == mapped {
			return nil
		}
		role, why := mapped, via
		if current.Role != models.RoleOwner {
			if role, why, err = s.ownerIfNone(tx, wsID, mapped, hasMapping); err != nil {
				return err
			}
		}
		err = teams.SetRoleTx(tx, wsID, actor, user.ID, role, why)
		if errors.Is(err, teams.ErrLastOwner) {
			s.log.Info("single sign-on: the role claim would demote the workspace's last owner; they stay its owner", "user", user.Email, "workspace", wsID, "role", mapped)
			return nil
		}
		return err
	})
	return wsID, err
}

// ownerIfNone is the role a member joins with or moves to, and the end of
// its audit detail. A workspace nobody owns cannot be administered (only
// owners make owners): while it has none, its next member becomes its
// owner if the mapping makes them an admin, or, without a mapping, whoever
// they are. Below admin, nobody is made owner by signing in.
func (s *SSO) ownerIfNone(tx *gorm.DB, ws int64, role models.Role, hasMapping bool) (models.Role, string, error) {
	if hasMapping && role != models.RoleAdmin {
		return role, via, nil
	}
	if n, err := teams.Owners(tx, ws); err != nil || n > 0 {
		return role, via, err
	}
	if !hasMapping {
		return models.RoleOwner, " (single sign-on: the workspace had no owner)", nil
	}
	return models.RoleOwner, fmt.Sprintf(" (single sign-on: the workspace had no owner; the %s claim maps to %s)", s.cfg.RoleClaim, role), nil
}

// mappedRole is the most powerful role KEYSMITH_OIDC_ROLES gives the
// claim's values; with a mapping and no match, viewer. ok is false
// without a mapping.
func (s *SSO) mappedRole(values []string) (models.Role, bool) {
	if len(s.cfg.Roles) == 0 {
		return "", false
	}
	best := models.RoleViewer
	rank := func(r models.Role) int {
		for i, x := range models.Roles {
			if x == r {
				return i
			}
		}
		return len(models.Roles)
	}
	for _, v := range values {
		if r, ok := s.cfg.Roles[v]; ok && rank(models.Role(r)) < rank(best) {
			best = models.Role(r)
		}
	}
	return best, true
}

func workspaceName(id Identity) string {
	name := id.WorkspaceName
	if name == "" {
		name = id.Workspace
	}
	if len(name) > 100 {
		name = name[:100]
	}
	return name
}

func claimString(v any) string {
	s, _ := v.(string)
	return s
}

// claimBool reads a boolean claim; some providers send "true".
func claimBool(v any) bool {
	switch b := v.(type) {
	case bool:
		return b
	case string:
		return strings.EqualFold(b, "true")
	}
	return false
}

// claimStrings reads a claim that is a string or a list of strings.
func claimStrings(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
