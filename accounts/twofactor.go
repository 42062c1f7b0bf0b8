package accounts

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/bcrypt"
	"gorm.io/gorm"

	"keysmith/models"
)

// Errors of two-step verification.
var (
	ErrWrongCode     = errors.New("accounts: wrong or already used code")
	ErrNoEnrollment  = errors.New("accounts: no authenticator app is being set up")
	ErrTwoFactorOn   = errors.New("accounts: two-step verification is already on")
	ErrTwoFactorOff  = errors.New("accounts: two-step verification is off")
	ErrNeedsPassword = errors.New("accounts: confirm with your password or a current code")
)

// TOTP parameters (RFC 6238): 6 digits every 30 s, SHA-1 (what every
// authenticator app supports), and one step of skew either way.
const (
	TOTPPeriod         = 30
	TOTPSkew           = 1
	RecoveryCodeCount  = 10
	totpIssuer         = "Keysmith"
	totpSealPurpose    = "totp-secret"
	recoveryCodeGroups = 2
)

// Audit actions of account security, written to every workspace the user
// is a member of. None carries secret material.
const (
	ActionTwoFactorEnabled    = "account.two_factor_enabled"
	ActionTwoFactorDisabled   = "account.two_factor_disabled"
	ActionTwoFactorReset      = "account.two_factor_reset"
	ActionRecoveryRegenerated = "account.recovery_codes_regenerated"
	ActionRecoveryCodeUsed    = "account.recovery_code_used"
	ActionPasswordChanged     = "account.password_changed"
	ActionPasswordReset       = "account.password_reset"
	ActionSessionEnded        = "account.session_ended"
)

// Sealer encrypts secrets at rest (tokens.Service).
type Sealer interface {
	Seal(purpose string, plaintext []byte) ([]byte, error)
	Open(purpose string, sealed []byte) ([]byte, error)
}

// Actor is who asks for a security change, and from where.
type Actor struct {
	IP        string
	UserAgent string
	Label     string // for the audit log when not the user (the CLI)
}

// TwoFactor is two-step verification: an authenticator app (TOTP) and
// single-use recovery codes. Wrong codes at sign-in count against the same
// throttle as wrong passwords.
type TwoFactor struct {
	accounts *Service
	sealer   Sealer
}

// NewTwoFactor returns the two-step verification service.
func NewTwoFactor(accounts *Service, sealer Sealer) *TwoFactor {
	return &TwoFactor{accounts: accounts, sealer: sealer}
}

// TwoFactorStatus is what Settings → Security shows.
type TwoFactorStatus struct {
	Enabled       bool
	EnabledAt     time.Time
	RecoveryLeft  int
	RecoveryTotal int
}

// Status tells whether the user has two-step verification on, and how
// many recovery codes remain.
func (t *TwoFactor) Status(ctx context.Context, userID int64) (TwoFactorStatus, error) {
	db := t.accounts.db.WithContext(ctx)
	var st TwoFactorStatus
	var row models.UserTOTP
	err := db.Where("user_id = ? AND confirmed_at IS NOT NULL", userID).Limit(1).Find(&row).Error
	if err != nil || row.ConfirmedAt == nil {
		return st, err
	}
	st.Enabled, st.EnabledAt = true, *row.ConfirmedAt
	var left, total int64
	if err := db.Model(&models.RecoveryCode{}).Where("user_id = ?", userID).Count(&total).Error; err != nil {
		return st, err
	}
	if err := db.Model(&models.RecoveryCode{}).Where("user_id = ? AND used_at IS NULL", userID).Count(&left).Error; err != nil {
		return st, err
	}
	st.RecoveryLeft, st.RecoveryTotal = int(left), int(total)
	return st, nil
}

// Enabled reports whether signing in as the user takes a second step: an
// authenticator app or a passkey.
func (t *TwoFactor) Enabled(ctx context.Context, userID int64) (bool, error) {
	return needsSecondStep(t.accounts.db.WithContext(ctx), userID)
}

// hasSecondFactor reports whether the user's authenticator app is on.
func hasSecondFactor(db *gorm.DB, userID int64) (bool, error) {
	var n int64
	err := db.Model(&models.UserTOTP{}).Where("user_id = ? AND confirmed_at IS NOT NULL", userID).Count(&n).Error
	return n > 0, err
}

// needsSecondStep reports whether a right password is only half a
// sign-in: the user has an authenticator app or a passkey
// (passkeys_user_idx).
func needsSecondStep(db *gorm.DB, userID int64) (bool, error) {
	if on, err := hasSecondFactor(db, userID); on || err != nil {
		return on, err
	}
	var n int64
	err := db.Model(&models.Passkey{}).Where("user_id = ?", userID).Count(&n).Error
	return n > 0, err
}

// Enrollment is an authenticator app being set up: the secret in base32
// for typing in, and the otpauth:// URL the QR code carries.
type Enrollment struct {
	Secret string
	URL    string
}

// BeginTOTP starts (or starts over) setting up an authenticator app: a new
// secret, stored sealed and unconfirmed until ConfirmTOTP.
func (t *TwoFactor) BeginTOTP(ctx context.Context, user models.User) (Enrollment, error) {
	key, err := totp.Generate(totp.GenerateOpts{Issuer: totpIssuer, AccountName: user.Email, Period: TOTPPeriod})
	if err != nil {
		return Enrollment{}, err
	}
	sealed, err := t.sealer.Seal(totpSealPurpose, []byte(key.Secret()))
	if err != nil {
		return Enrollment{}, err
	}
	err = t.accounts.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		on, err := hasSecondFactor(tx, user.ID)
		if err != nil {
			return err
		}
		if on {
			return ErrTwoFactorOn
		}
		if err := tx.Where("user_id = ?", user.ID).Delete(&models.UserTOTP{}).Error; err != nil {
			return err
		}
		return tx.Create(&models.UserTOTP{UserID: user.ID, Secret: sealed, CreatedAt: t.accounts.clock.Now()}).Error
	})
	if err != nil {
		return Enrollment{}, err
	}
	return Enrollment{Secret: key.Secret(), URL: key.URL()}, nil
}

// PendingTOTP returns the enrollment BeginTOTP started and ConfirmTOTP has
// not finished, so its page can be shown again.
func (t *TwoFactor) PendingTOTP(ctx context.Context, user models.User) (Enrollment, error) {
	var row models.UserTOTP
	err := t.accounts.db.WithContext(ctx).Where("user_id = ? AND confirmed_at IS NULL", user.ID).Limit(1).Find(&row).Error
	if err != nil {
		return Enrollment{}, err
	}
	if row.UserID == 0 {
		return Enrollment{}, ErrNoEnrollment
	}
	secret, err := t.sealer.Open(totpSealPurpose, row.Secret)
	if err != nil {
		return Enrollment{}, err
	}
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(string(secret))
	if err != nil {
		return Enrollment{}, err
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: totpIssuer, AccountName: user.Email, Period: TOTPPeriod, Secret: raw})
	if err != nil {
		return Enrollment{}, err
	}
	return Enrollment{Secret: key.Secret(), URL: key.URL()}, nil
}

// ConfirmTOTP finishes enrollment with a current code from the app: two-step
// verification is on, the user gets RecoveryCodeCount fresh recovery codes
// (returned here, once), and every other session ends (the returned user
// carries the new session epoch).
func (t *TwoFactor) ConfirmTOTP(ctx context.Context, userID int64, code string, a Actor) ([]string, models.User, error) {
	var codes []string
	var user models.User
	err := t.accounts.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var row models.UserTOTP
		if err := tx.Where("user_id = ?", userID).Limit(1).Find(&row).Error; err != nil {
			return err
		}
		switch {
		case row.UserID == 0:
			return ErrNoEnrollment
		case row.ConfirmedAt != nil:
			return ErrTwoFactorOn
		}
		if err := t.useTOTP(tx, row, code); err != nil {
			return err
		}
		now := t.accounts.clock.Now()
		if err := tx.Model(&models.UserTOTP{}).Where("user_id = ?", userID).Update("confirmed_at", now).Error; err != nil {
			return err
		}
		var err error
		if codes, err = t.newRecoveryCodes(tx, userID); err != nil {
			return err
		}
		if user, err = bumpEpoch(tx, userID); err != nil {
			return err
		}
		return t.accounts.audit(tx, user, a, ActionTwoFactorEnabled, "authenticator app")
	})
	return codes, user, err
}

// DisableTOTP turns two-step verification off after the user proves it is
// them with their password or a current code (TOTP or recovery). The app's
// secret and the recovery codes are deleted, and every other session ends.
func (t *TwoFactor) DisableTOTP(ctx context.Context, userID int64, password, code string, a Actor) (models.User, error) {
	var user models.User
	err := t.accounts.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Take(&user, userID).Error; err != nil {
			return err
		}
		on, err := hasSecondFactor(tx, userID)
		if err != nil {
			return err
		}
		if !on {
			return ErrTwoFactorOff
		}
		switch {
		case password != "":
			if bcrypt.CompareHashAndPassword([]byte(user.PasswordHash), []byte(password)) != nil {
				return ErrWrongPassword
			}
		case code != "":
			if _, err := t.useCode(tx, userID, code); err != nil {
				return err
			}
		default:
			return ErrNeedsPassword
		}
		if err := removeFactors(tx, userID); err != nil {
			return err
		}
		if user, err = bumpEpoch(tx, userID); err != nil {
			return err
		}
		return t.accounts.audit(tx, user, a, ActionTwoFactorDisabled, "authenticator app")
	})
	return user, err
}

// Reset turns two-step verification off for the account with that email,
// for an operator helping a locked-out user (keysmith user reset-2fa): the
// authenticator app, the recovery codes and every passkey go. Every
// session of the user ends.
func (t *TwoFactor) Reset(ctx context.Context, email string, a Actor) (models.User, error) {
	var user models.User
	err := t.accounts.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		err := tx.Where("email = ?", NormalizeEmail(email)).Take(&user).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		on, err := needsSecondStep(tx, user.ID)
		if err != nil {
			return err
		}
		if !on {
			return ErrTwoFactorOff
		}
		if err := removeFactors(tx, user.ID); err != nil {
			return err
		}
		if err := tx.Where("user_id = ?", user.ID).Delete(&models.Passkey{}).Error; err != nil {
			return err
		}
		if user, err = bumpEpoch(tx, user.ID); err != nil {
			return err
		}
		return t.accounts.audit(tx, user, a, ActionTwoFactorReset, "by an operator")
	})
	return user, err
}

func removeFactors(tx *gorm.DB, userID int64) error {
	if err := tx.Where("user_id = ?", userID).Delete(&models.UserTOTP{}).Error; err != nil {
		return err
	}
	return tx.Where("user_id = ?", userID).Delete(&models.RecoveryCode{}).Error
}

// RegenerateRecoveryCodes replaces the user's recovery codes with fresh
// ones, returned here once; the old set stops working.
func (t *TwoFactor) RegenerateRecoveryCodes(ctx context.Context, userID int64, a Actor) ([]string, error) {
	var codes []string
	err := t.accounts.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		on, err := hasSecondFactor(tx, userID)
		if err != nil {
			return err
		}
		if !on {
			return ErrTwoFactorOff
		}
		if codes, err = t.newRecoveryCodes(tx, userID); err != nil {
			return err
		}
		var user models.User
		if err := tx.Take(&user, userID).Error; err != nil {
			return err
		}
		return t.accounts.audit(tx, user, a, ActionRecoveryRegenerated, "")
	})
	return codes, err
}

func (t *TwoFactor) newRecoveryCodes(tx *gorm.DB, userID int64) ([]string, error) {
	if err := tx.Where("user_id = ?", userID).Delete(&models.RecoveryCode{}).Error; err != nil {
		return nil, err
	}
	now := t.accounts.clock.Now()
	codes := make([]string, RecoveryCodeCount)
	rows := make([]models.RecoveryCode, RecoveryCodeCount)
	for i := range codes {
		codes[i] = newRecoveryCode()
		rows[i] = models.RecoveryCode{UserID: userID, CodeHash: HashToken(codes[i]), CreatedAt: now}
	}
	return codes, tx.Create(&rows).Error
}

// newRecoveryCode is 80 random bits in base32, grouped for reading:
// "abcde-fghij-klmno-pqrst". High entropy, so a SHA-256 is enough to store.
func newRecoveryCode() string {
	raw := strings.ToLower(rand.Text()[:20])
	return raw[:5] + "-" + raw[5:10] + "-" + raw[10:15] + "-" + raw[15:]
}

// normalizeRecoveryCode accepts a code however it was typed: any case,
// with or without dashes and spaces.
func normalizeRecoveryCode(code string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(code) {
		if r != '-' && r != ' ' {
			b.WriteRune(r)
		}
	}
	s := b.String()
	if len(s) != 20 {
		return s
	}
	return s[:5] + "-" + s[5:10] + "-" + s[10:15] + "-" + s[15:]
}

// Method says which kind of code a second step used.
type Method string

const (
	MethodTOTP     Method = "totp"
	MethodRecovery Method = "recovery"
)

// VerifySecondStep checks the code given at sign-in after a correct
// password: a current TOTP code (each time step works once) or an unused
// recovery code (spent by this). It is throttled with the password
// throttle: the attempt is recorded under the user's email and the client
// IP before it is checked, a wrong code counts as a failed login, and a
// right one resets the account's count.
func (t *TwoFactor) VerifySecondStep(ctx context.Context, userID int64, code, ip string, a Actor) (Method, error) {
	db := t.accounts.db.WithContext(ctx)
	user, err := t.accounts.User(ctx, userID)
	if err != nil {
		return "", err
	}
	attempt := models.LoginAttempt{Email: user.Email, IP: ip}
	if err := db.Create(&attempt).Error; err != nil {
		return "", err
	}
	if err := t.accounts.checkThrottle(db, attempt); err != nil {
		if derr := db.Delete(&attempt).Error; derr != nil {
			return "", errors.Join(err, derr)
		}
		return "", err
	}
	var method Method
	err = db.Transaction(func(tx *gorm.DB) error {
		var err error
		if method, err = t.useCode(tx, userID, code); err != nil {
			return err
		}
		if method == MethodRecovery {
			if err := t.accounts.audit(tx, user, a, ActionRecoveryCodeUsed, "at sign-in"); err != nil {
				return err
			}
		}
		return tx.Model(&attempt).Update("succeeded", true).Error
	})
	return method, err
}

// useCode spends a TOTP or recovery code of a user whose two-step
// verification is on.
func (t *TwoFactor) useCode(tx *gorm.DB, userID int64, code string) (Method, error) {
	code = strings.TrimSpace(code)
	if isTOTPCode(code) {
		var row models.UserTOTP
		if err := tx.Where("user_id = ? AND confirmed_at IS NOT NULL", userID).Limit(1).Find(&row).Error; err != nil {
			return "", err
		}
		if row.UserID == 0 {
			return "", ErrTwoFactorOff
		}
		return MethodTOTP, t.useTOTP(tx, row, code)
	}
	// The unique index recovery_codes_user_hash_idx finds it; the guard on
	// used_at makes a concurrent second use lose.
	res := tx.Model(&models.RecoveryCode{}).
		Where("user_id = ? AND code_hash = ? AND used_at IS NULL", userID, HashToken(normalizeRecoveryCode(code))).
		Update("used_at", t.accounts.clock.Now())
	if res.Error != nil {
		return "", res.Error
	}
	if res.RowsAffected == 0 {
		return "", ErrWrongCode
	}
	return MethodRecovery, nil
}

func isTOTPCode(code string) bool {
	if len(code) != 6 {
		return false
	}
	for _, r := range code {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// useTOTP accepts a code of the current time step or one step either side,
// if that step is later than the last one accepted: a code works once, and
// no older code works after a newer one. The conditional update makes a
// concurrent second use of the same code lose.
func (t *TwoFactor) useTOTP(tx *gorm.DB, row models.UserTOTP, code string) error {
	secret, err := t.sealer.Open(totpSealPurpose, row.Secret)
	if err != nil {
		return err
	}
	now := t.accounts.clock.Now()
	current := now.Unix() / TOTPPeriod
	opts := totp.ValidateOpts{Period: TOTPPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}
	for step := current - TOTPSkew; step <= current+TOTPSkew; step++ {
		want, err := totp.GenerateCodeCustom(string(secret), time.Unix(step*TOTPPeriod, 0), opts)
		if err != nil {
			return err
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) != 1 {
			continue
		}
		res := tx.Model(&models.UserTOTP{}).Where("user_id = ? AND last_step < ?", row.UserID, step).Update("last_step", step)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return ErrWrongCode // replayed, or older than one already used
		}
		return nil
	}
	return ErrWrongCode
}

// bumpEpoch ends every session of the user but the one the caller renews.
func bumpEpoch(tx *gorm.DB, userID int64) (models.User, error) {
	var user models.User
	if err := tx.Model(&models.User{}).Where("id = ?", userID).UpdateColumn("session_epoch", gorm.Expr("session_epoch + 1")).Error; err != nil {
		return user, err
	}
	return user, tx.Take(&user, userID).Error
}

// audit records a change to the user's account security in the audit log
// of every workspace they are a member of, so its admins see it.
func (s *Service) audit(tx *gorm.DB, user models.User, a Actor, action, detail string) error {
	var wsIDs []int64
	if err := tx.Model(&models.Membership{}).Where("user_id = ?", user.ID).Order("workspace_id").Pluck("workspace_id", &wsIDs).Error; err != nil {
		return err
	}
	if len(wsIDs) == 0 {
		return nil
	}
	// The user is the actor, but for an operator's change (the CLI).
	actorID, label := &user.ID, user.Email
	if a.Label != "" {
		actorID, label = nil, a.Label
	}
	now := s.clock.Now()
	events := make([]models.AuditEvent, len(wsIDs))
	for i, ws := range wsIDs {
		events[i] = models.AuditEvent{
			WorkspaceID: ws, ActorUserID: actorID, ActorLabel: label, Action: action,
			KeyLabel: user.Email, Detail: detail, IP: a.IP, UserAgent: models.StorableText(a.UserAgent, 300), CreatedAt: now,
		}
	}
	return tx.Create(&events).Error
}

// AuditSecurityTx records a change to the user's account security made
// elsewhere (a provider linked) inside the caller's transaction.
func (s *Service) AuditSecurityTx(tx *gorm.DB, user models.User, a Actor, action, detail string) error {
	return s.audit(tx, user, a, action, detail)
}

// RecordSecurityEvent writes an account security change made elsewhere
// (a password changed or reset) to the user's workspaces' audit logs.
func (s *Service) RecordSecurityEvent(ctx context.Context, user models.User, a Actor, action string) error {
	return s.audit(s.db.WithContext(ctx), user, a, action, "")
}
