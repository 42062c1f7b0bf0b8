// Package accounts is the domain logic of people and workspaces: sign-up,
// login with attempt limits, password changes and single-use reset links.
// It knows nothing of HTTP.
package accounts

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
	"gorm.io/gorm"

	"keysmith/clock"
	"keysmith/models"
	"keysmith/validate"
)

// Errors callers map to messages. Only these leave the package, besides
// validate.Errors and *ThrottledError.
var (
	ErrEmailTaken         = errors.New("accounts: email already registered")
	ErrInvalidCredentials = errors.New("accounts: wrong email or password")
	ErrWrongPassword      = errors.New("accounts: current password is wrong")
	ErrResetLinkInvalid   = errors.New("accounts: reset link is invalid, used or expired")
	ErrSignUpLinkInvalid  = errors.New("accounts: sign-up link is invalid, used or expired")
	ErrNotMember          = errors.New("accounts: not a member of that workspace")
	ErrNotFound           = errors.New("accounts: not found")
)

// ThrottledError says a login or an account email is refused for now, and
// for how long. By names the limit that refused it.
type ThrottledError struct {
	RetryAfter time.Duration
	By         ThrottledBy
}

// ThrottledBy names a limit: per account or email address, or per client IP.
type ThrottledBy string

const (
	ByAddress ThrottledBy = "address"
	ByIP      ThrottledBy = "ip"
)

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("accounts: too many requests per %s, retry after %s", e.By, e.RetryAfter)
}

// Limits on login attempts: failures counted in a sliding window, per
// account (a correct login resets it) and per client IP (nothing resets it).
const (
	LoginWindow        = 15 * time.Minute
	MaxFailuresPerUser = 5
	MaxFailuresPerIP   = 20
	ResetLinkLifetime  = time.Hour
	MinPasswordLength  = 8
	// MaxPasswordBytes is bcrypt's limit; longer input would be cut silently.
	MaxPasswordBytes = 72
)

// Service carries out account operations.
type Service struct {
	db    *gorm.DB
	clock clock.Clock
	cost  int
	// dummyHash is compared against when an email is unknown, so a login
	// takes as long whether or not the account exists. It is made at the
	// configured cost on first need (or by PrepareLogin), not at start:
	// a start, or a CLI command, need not pay for a hash it may never use.
	dummyHash func() []byte
	dummyMade atomic.Bool
}

// New returns a Service hashing passwords with the given bcrypt cost.
func New(db *gorm.DB, clk clock.Clock, bcryptCost int) *Service {
	s := &Service{db: db, clock: clk, cost: bcryptCost}
	s.dummyHash = sync.OnceValue(func() []byte {
		dummy, err := bcrypt.GenerateFromPassword([]byte("keysmith-timing-equaliser"), bcryptCost)
		if err != nil {
			panic(fmt.Sprintf("accounts: bcrypt cost %d: %v", bcryptCost, err))
		}
		s.dummyMade.Store(true)
		return dummy
	})
	return s
}

// PrepareLogin makes the dummy hash in the background, so even the first
// login with an unknown email costs one comparison, as a known one does.
// The server calls it at start; a login arriving before it is done waits.
func (s *Service) PrepareLogin() { go s.dummyHash() }

// NormalizeEmail trims and lower-cases an address, the form it is stored in.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// SignUpInput is what a new user gives.
type SignUpInput struct {
	Email    string
	Name     string
	Password string
}

func validatePassword(errs validate.Errors, field, password string) {
	switch {
	case utf8.RuneCountInString(password) < MinPasswordLength:
		errs[field] = fmt.Sprintf("Use at least %d characters.", MinPasswordLength)
	case len(password) > MaxPasswordBytes:
		errs[field] = fmt.Sprintf("Use at most %d bytes (about %d letters).", MaxPasswordBytes, MaxPasswordBytes)
	}
}

func (in SignUpInput) validate() validate.Errors {
	errs := validate.Errors{}
	email := NormalizeEmail(in.Email)
	if email == "" {
		errs["email"] = "Enter your email address."
	} else if a, err := mail.ParseAddress(email); err != nil || a.Address != email || len(email) > 254 {
		errs["email"] = "Enter a valid email address, like name@example.com."
	}
	if utf8.RuneCountInString(strings.TrimSpace(in.Name)) > 100 {
		errs["name"] = "Use at most 100 characters."
	}
	validatePassword(errs, "password", in.Password)
	return errs
}

// SignUp creates a user, a personal workspace and the user's owner
// membership of it, all or nothing. The dashboard goes through
// RequestSignUp and ConfirmSignUp instead; SignUp is for the admin CLI and
// the demo account.
func (s *Service) SignUp(ctx context.Context, in SignUpInput) (models.User, error) {
	if errs := in.validate(); len(errs) > 0 {
		return models.User{}, errs
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(in.Password), s.cost)
	if err != nil {
		return models.User{}, err
	}
	var user models.User
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if user, err = createUser(tx, NormalizeEmail(in.Email), strings.TrimSpace(in.Name), string(hash)); err != nil {
			return err
		}
		return createPersonalWorkspace(tx, user)
	})
	return user, err
}

func createUser(tx *gorm.DB, email, name, passwordHash string) (models.User, error) {
	user := models.User{Email: email, Name: name, PasswordHash: passwordHash}
	if err := tx.Create(&user).Error; err != nil {
		if errors.Is(err, gorm.ErrDuplicatedKey) {
			return models.User{}, ErrEmailTaken
		}
		return models.User{}, err
	}
	return user, nil
}

func createPersonalWorkspace(tx *gorm.DB, user models.User) error {
	ws := models.Workspace{Name: personalWorkspaceName(user), Personal: true}
	if err := tx.Create(&ws).Error; err != nil {
		return err
	}
	return tx.Create(&models.Membership{WorkspaceID: ws.ID, UserID: user.ID, Role: models.RoleOwner}).Error
}

// CreatePersonalWorkspaceTx is CreatePersonalWorkspace inside the
// caller's transaction: for an account made by single sign-on.
func (s *Service) CreatePersonalWorkspaceTx(tx *gorm.DB, user models.User) error {
	return createPersonalWorkspace(tx, user)
}

// CreatePersonalWorkspace gives a user their own workspace, as sign-up
// does: for one who signed up to join a workspace whose invitation was
// then cancelled, so they are not left with none.
func (s *Service) CreatePersonalWorkspace(ctx context.Context, user models.User) error {
	return createPersonalWorkspace(s.db.WithContext(ctx), user)
}

// SignUpLinkLifetime is how long an emailed sign-up confirmation works.
const SignUpLinkLifetime = 24 * time.Hour

// Limits on the account emails (sign-up links, "you already have an
// account", reset links) the public forms send, so they cannot flood an
// inbox, nor many inboxes from one place. Requests are counted, not mails:
// one about an unknown address counts as one about an account does, so a
// refusal tells nothing about which addresses have accounts.
const (
	MailWindow             = time.Hour
	MailsPerAddressPerHour = 3
	MailsPerIPPerHour      = 10
)

// throttleMail records a request from ip for an account email to address,
// and refuses it with a *ThrottledError when the address or the IP had
// their hour's worth already. Like login attempts, the request is recorded
// before it is counted, so parallel requests cannot all slip through; a
// refused request is not kept, or a flood would keep the address silenced
// for ever.
func (s *Service) throttleMail(db *gorm.DB, address, ip string) error {
	send := models.MailSend{Address: address, IP: ip}
	if err := db.Create(&send).Error; err != nil {
		return err
	}
	now := s.clock.Now()
	checks := []struct {
		column, value string
		limit         int
		by            ThrottledBy
	}{
		{"address", address, MailsPerAddressPerHour, ByAddress}, // mail_sends_address_idx
		{"ip", ip, MailsPerIPPerHour, ByIP},                     // mail_sends_ip_idx
	}
	for _, c := range checks {
		// This request and the `limit` recorded before it, at most.
		var sends []models.MailSend
		err := db.Where(c.column+" = ? AND invitation_id IS NULL AND created_at > ? AND id <= ?", c.value, now.Add(-MailWindow), send.ID).
			Order("created_at DESC, id DESC").Limit(c.limit + 1).Find(&sends).Error
		if err != nil {
			return err
		}
		if len(sends) > c.limit {
			// The next request gets through when the oldest of the newest
			// `limit` others leaves the window.
			others := slices.DeleteFunc(sends, func(m models.MailSend) bool { return m.ID == send.ID })
			retry := others[c.limit-1].CreatedAt.Add(MailWindow).Sub(now)
			throttled := &ThrottledError{RetryAfter: max(retry, time.Second), By: c.by}
			if err := db.Delete(&send).Error; err != nil {
				return errors.Join(throttled, err)
			}
			return throttled
		}
	}
	return nil
}

// SignUpRequest is what the sign-up form leads to. Exactly one of Token
// and Existing is set: a confirmation link to mail to a new address, or the
// account that already has the address (mail its owner instead). The
// caller must answer both alike.
type SignUpRequest struct {
	Email    string
	Name     string
	Token    string
	Existing *models.User
}

// RequestSignUp validates a sign-up from ip and, for a new address, keeps
// it pending until its emailed link is used. Either way it pays for one
// password hash, so the answer's timing does not tell the cases apart. A
// valid request past the address's or the IP's limit gets a
// *ThrottledError, alike for new and registered addresses.
func (s *Service) RequestSignUp(ctx context.Context, in SignUpInput, ip string) (SignUpRequest, error) {
	if errs := in.validate(); len(errs) > 0 {
		return SignUpRequest{}, errs
	}
	req := SignUpRequest{Email: NormalizeEmail(in.Email), Name: strings.TrimSpace(in.Name)}
	db := s.db.WithContext(ctx)
	if err := s.throttleMail(db, req.Email, ip); err != nil {
		return SignUpRequest{}, err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(in.Password), s.cost)
	if err != nil {
		return SignUpRequest{}, err
	}
	var existing models.User
	err = db.Where("email = ?", req.Email).Take(&existing).Error
	switch {
	case err == nil:
		req.Existing = &existing
		return req, nil
	case !errors.Is(err, gorm.ErrRecordNotFound):
		return SignUpRequest{}, err
	}
	req.Token = rand.Text()
	pending := models.PendingSignup{
		Email:        req.Email,
		Name:         req.Name,
		PasswordHash: string(hash),
		TokenHash:    HashToken(req.Token),
		ExpiresAt:    s.clock.Now().Add(SignUpLinkLifetime),
	}
	if err := db.Create(&pending).Error; err != nil {
		return SignUpRequest{}, err
	}
	return req, nil
}

// CheckSignUpToken tells whether a confirmation link still works, without
// using it, and returns the address it confirms.
func (s *Service) CheckSignUpToken(ctx context.Context, token string) (string, error) {
	p, err := s.livePendingSignup(s.db.WithContext(ctx), token)
	return p.Email, err
}

func (s *Service) livePendingSignup(db *gorm.DB, token string) (models.PendingSignup, error) {
	var p models.PendingSignup
	err := db.Where("token_hash = ? AND expires_at > ?", HashToken(token), s.clock.Now()).Take(&p).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return p, ErrSignUpLinkInvalid
	}
	return p, err
}

// ConfirmSignUp spends a confirmation link and creates the account it
// confirms, with the name and password given at sign-up. Every other
// pending sign-up of the address ends with it. ErrEmailTaken: the address
// got an account meanwhile.
func (s *Service) ConfirmSignUp(ctx context.Context, token string) (models.User, error) {
	return s.confirmSignUp(ctx, token, true)
}

// ConfirmInvitedSignUp is ConfirmSignUp for someone who signed up from an
// invitation: no personal workspace, since they are about to join one
// (teams.Service.Accept).
func (s *Service) ConfirmInvitedSignUp(ctx context.Context, token string) (models.User, error) {
	return s.confirmSignUp(ctx, token, false)
}

func (s *Service) confirmSignUp(ctx context.Context, token string, personal bool) (models.User, error) {
	var user models.User
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		p, err := s.livePendingSignup(tx, token)
		if err != nil {
			return err
		}
		// Deleting first makes a concurrent second use of the link lose.
		res := tx.Where("email = ?", p.Email).Delete(&models.PendingSignup{})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return ErrSignUpLinkInvalid
		}
		if user, err = createUser(tx, p.Email, p.Name, p.PasswordHash); err != nil || !personal {
			return err
		}
		return createPersonalWorkspace(tx, user)
	})
	return user, err
}

func personalWorkspaceName(u models.User) string {
	if u.Name != "" {
		return u.Name + "'s workspace"
	}
	return "Personal"
}

// Authenticate checks an email and password. It refuses with a
// *ThrottledError while too many recent attempts failed for that account or
// from that IP.
//
// The attempt is recorded before anything is counted, and counted as a
// failure until the password proves right: of N concurrent attempts, the
// k-th to be recorded sees at least k, so no more than the limit ever reach
// bcrypt, however many arrive at once and on however many replicas.
func (s *Service) Authenticate(ctx context.Context, email, password, ip string) (models.User, error) {
	email = NormalizeEmail(email)
	db := s.db.WithContext(ctx)
	attempt := models.LoginAttempt{Email: email, IP: ip}
	if err := db.Create(&attempt).Error; err != nil {
		return models.User{}, err
	}
	if err := s.checkThrottle(db, attempt); err != nil {
		// A refused attempt is not a guess: it does not count against the
		// account or the IP, or a flood would keep them locked for ever.
		if derr := db.Delete(&attempt).Error; derr != nil {
			return models.User{}, errors.Join(err, derr)
		}
		return models.User{}, err
	}

	var user models.User
	err := db.Where("email = ?", email).Take(&user).Error
	switch {
	case errors.Is(err, gorm.ErrRecordNotFound):
		_ = bcrypt.CompareHashAndPassword(s.dummyHash(), []byte(password))
		return models.User{}, ErrInvalidCredentials
	case err != nil:
		return models.User{}, err
	}
	if bcrypt.CompareHashAndPassword([]byte(user.PasswordHash), []byte(password)) != nil {
		return models.User{}, ErrInvalidCredentials
	}
	// With two-step verification on, a right password is only half a
	// login: its attempt neither counts as a failure nor resets the
	// account's count, which only the second step's success does
	// (TwoFactor.VerifySecondStep). Else a known password would let
	// wrong codes be tried without end.
	on, err := needsSecondStep(db, user.ID)
	if err != nil {
		return models.User{}, err
	}
	if on {
		return user, db.Delete(&attempt).Error
	}
	if err := db.Model(&attempt).Update("succeeded", true).Error; err != nil {
		return models.User{}, err
	}
	return user, nil
}

// checkThrottle counts the failures (and attempts in flight) recorded in
// the window up to and including this attempt; the indexes
// login_attempts_email_idx and login_attempts_ip_idx serve the counts. For
// the account, only failures after its last successful login count.
func (s *Service) checkThrottle(db *gorm.DB, attempt models.LoginAttempt) error {
	now := s.clock.Now()
	since := now.Add(-LoginWindow)

	var lastSuccess models.LoginAttempt
	err := db.Where("email = ? AND succeeded = ? AND created_at > ?", attempt.Email, true, since).
		Order("id DESC").Limit(1).Find(&lastSuccess).Error
	if err != nil {
		return err
	}
	checks := []struct {
		column, value string
		afterID       int64
		limit         int
		by            ThrottledBy
	}{
		{"email", attempt.Email, lastSuccess.ID, MaxFailuresPerUser, ByAddress},
		{"ip", attempt.IP, 0, MaxFailuresPerIP, ByIP},
	}
	for _, c := range checks {
		// This attempt and up to `limit` others: more than `limit` in all
		// means this one is past it.
		var failures []models.LoginAttempt
		err := db.Where(c.column+" = ? AND succeeded = ? AND created_at > ? AND id > ?", c.value, false, since, c.afterID).
			Order("created_at DESC, id DESC").Limit(c.limit + 1).Find(&failures).Error
		if err != nil {
			return err
		}
		if len(failures) > c.limit {
			// The next attempt gets through once fewer than `limit` failures
			// remain: when the oldest of the newest `limit` others leaves.
			others := slices.DeleteFunc(failures, func(f models.LoginAttempt) bool { return f.ID == attempt.ID })
			retry := others[c.limit-1].CreatedAt.Add(LoginWindow).Sub(now)
			return &ThrottledError{RetryAfter: max(retry, time.Second), By: c.by}
		}
	}
	return nil
}

// ChangePassword replaces a user's password after checking the current one,
// and moves the user's session epoch on so every other session ends.
func (s *Service) ChangePassword(ctx context.Context, userID int64, current, next string) (models.User, error) {
	errs := validate.Errors{}
	validatePassword(errs, "new_password", next)
	if len(errs) > 0 {
		return models.User{}, errs
	}
	user, err := s.User(ctx, userID)
	if err != nil {
		return models.User{}, err
	}
	if bcrypt.CompareHashAndPassword([]byte(user.PasswordHash), []byte(current)) != nil {
		return models.User{}, ErrWrongPassword
	}
	return s.setPassword(s.db.WithContext(ctx), user, next)
}

func (s *Service) setPassword(db *gorm.DB, user models.User, password string) (models.User, error) {
	hash, err := bcrypt.GenerateFromPassword([]byte(password), s.cost)
	if err != nil {
		return models.User{}, err
	}
	user.PasswordHash = string(hash)
	user.SessionEpoch++
	user.IsDemo = false
	err = db.Model(&user).Select("password_hash", "session_epoch", "is_demo", "updated_at").Updates(&user).Error
	return user, err
}

// RequestPasswordReset makes a single-use reset token for the account with
// that email, asked for from ip. For an unknown email it returns a zero
// user, an empty token and no error: the caller must answer the same way
// either way. Past the address's or the IP's limit it returns a
// *ThrottledError, counted alike for unknown emails and accounts.
func (s *Service) RequestPasswordReset(ctx context.Context, email, ip string) (models.User, string, error) {
	db := s.db.WithContext(ctx)
	email = NormalizeEmail(email)
	if err := s.throttleMail(db, email, ip); err != nil {
		return models.User{}, "", err
	}
	var user models.User
	err := db.Where("email = ?", email).Take(&user).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return models.User{}, "", nil
	}
	if err != nil {
		return models.User{}, "", err
	}
	token := rand.Text()
	reset := models.PasswordReset{
		UserID:    user.ID,
		TokenHash: HashToken(token),
		ExpiresAt: s.clock.Now().Add(ResetLinkLifetime),
	}
	if err := db.Create(&reset).Error; err != nil {
		return models.User{}, "", err
	}
	return user, token, nil
}

// CheckReset tells whether the reset link whose token hashes to tokenHash
// (HashToken) can still be used, without using it, so the form is only
// shown for a live link. Callers that must keep the link between requests
// keep only its hash, which cannot be replayed as the link.
func (s *Service) CheckReset(ctx context.Context, tokenHash string) error {
	_, err := s.liveReset(s.db.WithContext(ctx), tokenHash)
	return err
}

func (s *Service) liveReset(db *gorm.DB, tokenHash string) (models.PasswordReset, error) {
	var reset models.PasswordReset
	err := db.Where("token_hash = ? AND used_at IS NULL AND expires_at > ?", tokenHash, s.clock.Now()).
		Take(&reset).Error // password_resets_token_hash_idx
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return reset, ErrResetLinkInvalid
	}
	return reset, err
}

// ResetPasswordByHash spends the reset link whose token hashes to
// tokenHash (HashToken) and sets a new password. Every other reset link of
// that user stops working too, and every session ends.
func (s *Service) ResetPasswordByHash(ctx context.Context, tokenHash, password string) (models.User, error) {
	errs := validate.Errors{}
	validatePassword(errs, "password", password)
	if len(errs) > 0 {
		return models.User{}, errs
	}
	var user models.User
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		reset, err := s.liveReset(tx, tokenHash)
		if err != nil {
			return err
		}
		// Spend every open link of this user; the guard on used_at makes a
		// concurrent second use of the same link lose the race.
		res := tx.Model(&models.PasswordReset{}).
			Where("user_id = ? AND used_at IS NULL", reset.UserID).
			Update("used_at", s.clock.Now())
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return ErrResetLinkInvalid
		}
		if err := tx.Take(&user, reset.UserID).Error; err != nil {
			return err
		}
		user, err = s.setPassword(tx, user, password)
		return err
	})
	return user, err
}

// User loads one user.
func (s *Service) User(ctx context.Context, id int64) (models.User, error) {
	var u models.User
	err := s.db.WithContext(ctx).Take(&u, id).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return u, ErrNotFound
	}
	return u, err
}

// Memberships lists a user's workspaces, personal first, then by name.
func (s *Service) Memberships(ctx context.Context, userID int64) ([]models.Membership, error) {
	var ms []models.Membership
	err := s.db.WithContext(ctx).Joins("Workspace").
		Where("memberships.user_id = ?", userID).
		Order(`"Workspace"."personal" DESC, "Workspace"."name", memberships.id`).
		Find(&ms).Error
	return ms, err
}

// Membership returns the user's membership of one workspace.
func (s *Service) Membership(ctx context.Context, userID, workspaceID int64) (models.Membership, error) {
	var m models.Membership
	err := s.db.WithContext(ctx).Joins("Workspace").
		Where("memberships.user_id = ? AND memberships.workspace_id = ?", userID, workspaceID).
		Take(&m).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return m, ErrNotMember
	}
	return m, err
}

// Members lists the members of a workspace, owners first.
func (s *Service) Members(ctx context.Context, workspaceID int64) ([]models.Membership, error) {
	var ms []models.Membership
	err := s.db.WithContext(ctx).Joins("User").
		Where("memberships.workspace_id = ?", workspaceID).
		Order(`CASE memberships.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 WHEN 'editor' THEN 2 ELSE 3 END, "User"."email"`).
		Find(&ms).Error
	return ms, err
}

// The demo account seeded on a development database (KEYSMITH_DEMO).
const (
	DemoEmail    = "demo@keysmith.localhost"
	DemoPassword = "keysmith-demo"
)

// DemoActive reports whether the demo account still has its documented
// password, so the login page may show it.
func (s *Service) DemoActive(ctx context.Context) (bool, error) {
	var n int64
	err := s.db.WithContext(ctx).Model(&models.User{}).Where("email = ? AND is_demo = ?", DemoEmail, true).Count(&n).Error
	return n > 0, err
}

// EnsureDemo creates the demo account on an empty database. It reports
// whether a demo account with the demo password exists afterwards.
func (s *Service) EnsureDemo(ctx context.Context) (bool, error) {
	var count int64
	if err := s.db.WithContext(ctx).Model(&models.User{}).Count(&count).Error; err != nil {
		return false, err
	}
	if count == 0 {
		user, err := s.SignUp(ctx, SignUpInput{Email: DemoEmail, Name: "Demo User", Password: DemoPassword})
		if err != nil {
			return false, err
		}
		return true, s.db.WithContext(ctx).Model(&user).Update("is_demo", true).Error
	}
	return s.DemoActive(ctx)
}

// PurgeExpired deletes login attempts and reset links older than a day,
// and unsubscribe links past their lifetime; the scheduler calls it.
func (s *Service) PurgeExpired(ctx context.Context) error {
	now := s.clock.Now()
	cutoff := now.Add(-24 * time.Hour)
	db := s.db.WithContext(ctx)
	if err := db.Where("created_at < ?", cutoff).Delete(&models.LoginAttempt{}).Error; err != nil {
		return err
	}
	if err := db.Where("expires_at < ?", cutoff).Delete(&models.PasswordReset{}).Error; err != nil {
		return err
	}
	if err := db.Where("expires_at < ?", cutoff).Delete(&models.PendingSignup{}).Error; err != nil { // pending_signups_expires_idx
		return err
	}
	// Mail requests count for an hour, invitations' resends (teams) for a day.
	if err := db.Where("created_at < ?", cutoff).Delete(&models.MailSend{}).Error; err != nil {
		return err
	}
	return db.Where("created_at <= ?", now.Add(-UnsubscribeLinkLifetime)).Delete(&models.UnsubscribeToken{}).Error // unsubscribe_tokens_created_idx
}

// HashToken is how single-use tokens are stored: SHA-256, hex.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// SetReminders turns a user's expiry reminder emails on or off.
func (s *Service) SetReminders(ctx context.Context, userID int64, on bool) error {
	return s.db.WithContext(ctx).Model(&models.User{}).Where("id = ?", userID).UpdateColumn("reminders_opt_out", !on).Error
}

// UnsubscribeLinkLifetime is how long the unsubscribe link of a reminder
// mail works.
const UnsubscribeLinkLifetime = 365 * 24 * time.Hour

// UserByUnsubscribeToken finds the user an unsubscribe link belongs to.
// Each reminder mail carries its own token (scheduler.Reminders makes
// them); only their SHA-256s are stored.
func (s *Service) UserByUnsubscribeToken(ctx context.Context, token string) (models.User, error) {
	var u models.User
	if token == "" {
		return u, ErrNotFound
	}
	err := s.db.WithContext(ctx).
		Where("id IN (SELECT user_id FROM unsubscribe_tokens WHERE token_hash = ? AND created_at > ?)", // unsubscribe_tokens_hash_idx
			HashToken(token), s.clock.Now().Add(-UnsubscribeLinkLifetime)).
		Take(&u).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return u, ErrNotFound
	}
	return u, err
}
