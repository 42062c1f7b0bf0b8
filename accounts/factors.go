package accounts

import (
	"context"
	"errors"

	"gorm.io/gorm"

	"keysmith/models"
)

// What other second factors (identity.Passkeys) share with the
// authenticator app: the sign-in throttle, the audit log of the user's
// workspaces and the session epoch.

// Throttled records a sign-in attempt under key (an email address, or
// another name for the account being tried) and ip, refuses it with a
// *ThrottledError past the password throttle's limits, and runs check in a
// transaction: an error from check counts as a failed sign-in, nil as a
// successful one, which resets the account's count as VerifySecondStep's
// success does.
func (s *Service) Throttled(ctx context.Context, key, ip string, check func(tx *gorm.DB) error) error {
	db := s.db.WithContext(ctx)
	attempt := models.LoginAttempt{Email: key, IP: ip}
	if err := db.Create(&attempt).Error; err != nil {
		return err
	}
	if err := s.checkThrottle(db, attempt); err != nil {
		if derr := db.Delete(&attempt).Error; derr != nil {
			return errors.Join(err, derr)
		}
		return err
	}
	return db.Transaction(func(tx *gorm.DB) error {
		if err := check(tx); err != nil {
			return err
		}
		return tx.Model(&attempt).Update("succeeded", true).Error
	})
}

// Audit records a change to the user's account security, in tx, in the
// audit log of every workspace they are a member of. detail must carry
// no secret material.
func (s *Service) Audit(tx *gorm.DB, user models.User, a Actor, action, detail string) error {
	return s.audit(tx, user, a, action, detail)
}

// EndOtherSessions moves the user's session epoch on, in tx: every session
// ends but the one the caller renews at the returned user's epoch.
func EndOtherSessions(tx *gorm.DB, userID int64) (models.User, error) {
	return bumpEpoch(tx, userID)
}
