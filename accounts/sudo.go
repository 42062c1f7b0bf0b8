package accounts

import (
	"context"
	"errors"
	"time"

	"golang.org/x/crypto/bcrypt"
	"gorm.io/gorm"

	"keysmith/clock"
	"keysmith/models"
)

// Audit actions of sudo mode: a wrong password or code given to confirm
// access, and access confirmed (its detail says how).
const (
	ActionSudoFailed    = "account.sudo_failed"
	ActionSudoConfirmed = "account.sudo_confirmed"
)

// How access was confirmed, as the audit log says it.
const (
	SudoByPassword = "password"
	SudoByCode     = "authenticator code"
	SudoByPasskey  = "passkey"
	SudoBySSO      = "single sign-on"
)

// Sudo is "sudo mode": a signed-in user confirms it is them (password, or
// a current code when two-step verification is on) before a sensitive
// action, and the confirmation holds for a window. The caller keeps when
// the session last confirmed (signing in counts); Sudo says whether that
// is recent enough and checks a new confirmation.
type Sudo struct {
	twoFactor *TwoFactor
	clock     clock.Clock
	window    time.Duration
}

// NewSudo returns sudo mode with confirmations valid for window.
func NewSudo(t *TwoFactor, window time.Duration) *Sudo {
	return &Sudo{twoFactor: t, clock: t.accounts.clock, window: window}
}

// Fresh reports whether a confirmation made at confirmedAt still holds.
// The zero time (never confirmed) never does.
func (s *Sudo) Fresh(confirmedAt time.Time) bool {
	if confirmedAt.IsZero() {
		return false
	}
	age := s.clock.Now().Sub(confirmedAt)
	return age >= 0 && age < s.window
}

// Window is how long a confirmation holds.
func (s *Sudo) Window() time.Duration { return s.window }

// Confirm checks the user's password, or else a current TOTP code (each
// time step works once; recovery codes are for signing in, not for this),
// and returns the time of the confirmation. It goes through the login
// throttle like a sign-in: the attempt is recorded under the user's email
// and the IP before it is checked, and a wrong password or code counts as
// a failed login and is written to the audit log. Errors: ErrNeedsPassword
// (nothing given), ErrWrongPassword, ErrWrongCode, *ThrottledError.
func (s *Sudo) Confirm(ctx context.Context, userID int64, password, code, ip string, a Actor) (time.Time, error) {
	if password == "" && code == "" {
		return time.Time{}, ErrNeedsPassword
	}
	acc := s.twoFactor.accounts
	db := acc.db.WithContext(ctx)
	user, err := acc.User(ctx, userID)
	if err != nil {
		return time.Time{}, err
	}
	attempt := models.LoginAttempt{Email: user.Email, IP: ip}
	if err := db.Create(&attempt).Error; err != nil {
		return time.Time{}, err
	}
	if err := acc.checkThrottle(db, attempt); err != nil {
		if derr := db.Delete(&attempt).Error; derr != nil {
			return time.Time{}, errors.Join(err, derr)
		}
		return time.Time{}, err
	}
	on, err := hasSecondFactor(db, userID)
	if err != nil {
		return time.Time{}, err
	}
	var wrong error
	if password != "" {
		if bcrypt.CompareHashAndPassword([]byte(user.PasswordHash), []byte(password)) != nil {
			wrong = ErrWrongPassword
		}
	} else {
		wrong = db.Transaction(func(tx *gorm.DB) error {
			var row models.UserTOTP
			if err := tx.Where("user_id = ? AND confirmed_at IS NOT NULL", userID).Limit(1).Find(&row).Error; err != nil {
				return err
			}
			if row.UserID == 0 || !isTOTPCode(code) {
				return ErrWrongCode
			}
			return s.twoFactor.useTOTP(tx, row, code)
		})
	}
	switch {
	case errors.Is(wrong, ErrWrongPassword), errors.Is(wrong, ErrWrongCode):
		// The attempt stays a failure, for the throttle.
		if err := acc.audit(db, user, a, ActionSudoFailed, ""); err != nil {
			return time.Time{}, err
		}
		return time.Time{}, wrong
	case wrong != nil:
		return time.Time{}, wrong
	}
	by := SudoByPassword
	if password == "" {
		by = SudoByCode
	}
	err = db.Transaction(func(tx *gorm.DB) error {
		// As at sign-in, a password alone does not reset the account's
		// count of failures when two-step verification is on: only a code
		// does.
		var err error
		if on && password != "" {
			err = tx.Delete(&attempt).Error
		} else {
			err = tx.Model(&attempt).Update("succeeded", true).Error
		}
		if err != nil {
			return err
		}
		return acc.audit(tx, user, a, ActionSudoConfirmed, by)
	})
	if err != nil {
		return time.Time{}, err
	}
	return s.clock.Now(), nil
}

// Confirmed writes to the audit log that the user confirmed access in a
// way Confirm does not check (a passkey, the identity provider), and
// returns the time of the confirmation.
func (s *Sudo) Confirmed(ctx context.Context, user models.User, by string, a Actor) (time.Time, error) {
	acc := s.twoFactor.accounts
	if err := acc.audit(acc.db.WithContext(ctx), user, a, ActionSudoConfirmed, by); err != nil {
		return time.Time{}, err
	}
	return s.clock.Now(), nil
}
