package teams

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"

	"keysmith/models"
	"keysmith/validate"
)

// Audit actions of the two-step verification policy.
const (
	ActionTwoFactorRequired    = "workspace.two_factor_required"
	ActionTwoFactorNotRequired = "workspace.two_factor_not_required"
)

// MaxTwoFactorGraceDays is the longest grace a workspace may give its
// members to turn on two-step verification.
const MaxTwoFactorGraceDays = 90

// SetTwoFactorPolicy requires two-step verification of every member of the
// workspace (on), with graceDays to turn it on, or stops requiring it.
// Only owners may, and an owner only with two-step verification on for
// themselves. Changing the grace of a policy already on keeps its start.
// It returns the workspace as it now is.
func (s *Service) SetTwoFactorPolicy(ctx context.Context, ws int64, a Actor, on bool, graceDays int) (models.Workspace, error) {
	var w models.Workspace
	if a.Role != models.RoleOwner {
		return w, forbidden("only owners require two-step verification")
	}
	if on && (graceDays < 0 || graceDays > MaxTwoFactorGraceDays) {
		return w, validate.Errors{"grace_days": fmt.Sprintf("Enter a number of days from 0 to %d.", MaxTwoFactorGraceDays)}
	}
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if on {
			has, err := membersWithTwoFactor(tx, ws, a.User.ID)
			if err != nil {
				return err
			}
			if !has[a.User.ID] {
				return validate.Errors{"require_two_factor": "Turn on two-step verification for your own account first (Settings → Security)."}
			}
		}
		if err := tx.Clauses(forUpdate).Take(&w, ws).Error; err != nil {
			return err
		}
		wasOn := w.TwoFactorRequiredAt != nil
		var since *time.Time
		switch {
		case on && wasOn:
			since = w.TwoFactorRequiredAt
		case on:
			now := s.clock.Now()
			since = &now
		default:
			graceDays = w.TwoFactorGraceDays
		}
		if err := tx.Model(&w).Updates(map[string]any{"two_factor_required_at": since, "two_factor_grace_days": graceDays}).Error; err != nil {
			return err
		}
		w.TwoFactorRequiredAt, w.TwoFactorGraceDays = since, graceDays
		switch {
		case on:
			return audit(tx, ws, a, ActionTwoFactorRequired, "two-step verification", fmt.Sprintf("grace %d days", graceDays))
		case wasOn:
			return audit(tx, ws, a, ActionTwoFactorNotRequired, "two-step verification", "")
		}
		return nil
	})
	return w, err
}

// TwoFactorMembers tells which of the workspace's members have two-step
// verification on.
func (s *Service) TwoFactorMembers(ctx context.Context, ws int64) (map[int64]bool, error) {
	return membersWithTwoFactor(s.db.WithContext(ctx), ws, 0)
}

// membersWithTwoFactor is the set of the workspace's members (and the
// user also, if not 0) whose two-step verification is on.
func membersWithTwoFactor(db *gorm.DB, ws, also int64) (map[int64]bool, error) {
	var ids []int64
	err := db.Model(&models.UserTOTP{}).
		Where("confirmed_at IS NOT NULL AND (user_id = ? OR user_id IN (?))", also,
			db.Model(&models.Membership{}).Select("user_id").Where("workspace_id = ?", ws)).
		Pluck("user_id", &ids).Error
	has := make(map[int64]bool, len(ids))
	for _, id := range ids {
		has[id] = true
	}
	return has, err
}

// TwoFactorStanding is where a member stands under the workspace's policy.
type TwoFactorStanding struct {
	Required bool      // the workspace requires it, and the member has it off
	Deadline time.Time // when the grace ends
	Blocked  bool      // past the deadline: only Settings → Security until they enroll
}

// StandingOf says where a member with (or without) two-step verification
// stands under the workspace's policy at now.
func StandingOf(w models.Workspace, hasTwoFactor bool, now time.Time) TwoFactorStanding {
	if w.TwoFactorRequiredAt == nil || hasTwoFactor {
		return TwoFactorStanding{}
	}
	deadline := w.TwoFactorRequiredAt.AddDate(0, 0, w.TwoFactorGraceDays)
	return TwoFactorStanding{Required: true, Deadline: deadline, Blocked: !now.Before(deadline)}
}
