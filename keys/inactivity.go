package keys

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"keysmith/models"
	"keysmith/validate"
)

// The inactivity policy (issue 13): a workspace may disable, or revoke, the
// keys nobody has used for a number of days. A key is idle since its last
// use, or since it was created if it was never used. InactivityNotice
// before the action its people are warned, once per idle period; a key is
// never acted on less than InactivityNotice after its warning, and a use
// after the warning starts a new period (and, once idle again, a new
// warning).
//
// A warning belongs to the key's current idle period when it was given
// after the policy was switched on and at least Days−InactivityNotice into
// that period: a use since the warning (so a later idle start), a longer
// Days, or a policy switched off and on again all make it stale, and the
// key is warned again before anything happens to it. Acting clears the
// warning, so a key an admin enables again is warned again too.

// InactivityAction is what the policy does to an unused key; "" is off.
type InactivityAction string

const (
	InactivityOff     InactivityAction = ""
	InactivityDisable InactivityAction = "disable"
	InactivityRevoke  InactivityAction = "revoke"
)

// Bounds of the policy's number of days, and the default the form offers.
const (
	MinInactivityDays     = 30
	MaxInactivityDays     = 365
	DefaultInactivityDays = 90
)

// InactivityNotice is how long before the action a key's people are
// warned, and the least time between warning and action.
const InactivityNotice = 7 * 24 * time.Hour

// ActionInactivityPolicy is the audit action of a change of the policy.
const ActionInactivityPolicy = "workspace.inactivity_policy_changed"

// InactivityPolicy is one workspace's policy.
type InactivityPolicy struct {
	WorkspaceID int64
	Action      InactivityAction
	Days        int
	Since       time.Time // when it was last switched on; zero while off
}

// PolicyOf reads a workspace's inactivity policy.
func PolicyOf(w models.Workspace) InactivityPolicy {
	p := InactivityPolicy{WorkspaceID: w.ID, Action: InactivityAction(w.InactivityAction), Days: w.InactivityDays}
	if p.Days == 0 {
		p.Days = DefaultInactivityDays
	}
	if w.InactivitySince != nil && p.On() {
		p.Since = *w.InactivitySince
	}
	return p
}

// On reports whether the policy acts at all.
func (p InactivityPolicy) On() bool { return p.Action != InactivityOff }

func (p InactivityPolicy) idleFor() time.Duration { return time.Duration(p.Days) * 24 * time.Hour }

// Label names the policy as the actor of what it does, in the audit log.
func (p InactivityPolicy) Label() string {
	return fmt.Sprintf("inactivity policy (unused %d days)", p.Days)
}

// String says what the policy does: "disable keys unused for 90 days", or "off".
func (p InactivityPolicy) String() string {
	if !p.On() {
		return "off"
	}
	return fmt.Sprintf("%s keys unused for %d days", p.Action, p.Days)
}

// IdleSince is when a key was last used, or created if it never was.
func IdleSince(k models.APIKey) time.Time {
	if k.LastUsedAt != nil {
		return *k.LastUsedAt
	}
	return k.CreatedAt
}

// Warned reports whether k has been warned in its current idle period.
func (p InactivityPolicy) Warned(k models.APIKey) bool {
	w := k.InactivityWarnedAt
	return w != nil && p.On() && !w.Before(p.Since) && !w.Before(IdleSince(k).Add(p.idleFor()-InactivityNotice))
}

// ActAt is when the policy acts on k if it stays unused, k having been
// warned at warnedAt: Days after its last use, and never less than
// InactivityNotice after the warning.
func (p InactivityPolicy) ActAt(k models.APIKey, warnedAt time.Time) time.Time {
	at := IdleSince(k).Add(p.idleFor())
	if least := warnedAt.Add(InactivityNotice); at.Before(least) {
		return least
	}
	return at
}

// SetInactivityPolicy switches a workspace's inactivity policy off
// (InactivityOff) or on, with its action and number of days; owners and
// admins only. A change is audited; saving the policy as it stands changes
// nothing. Switching it on starts it afresh: keys are warned before
// anything is done to them, warnings from before not counting.
func (s *Service) SetInactivityPolicy(ctx context.Context, workspaceID int64, actor Actor, action InactivityAction, days int) (InactivityPolicy, error) {
	if !actor.Admin || actor.UserID == 0 {
		return InactivityPolicy{}, forbidden("only owners and admins can change the inactivity policy")
	}
	errs := validate.Errors{}
	switch action {
	case InactivityOff, InactivityDisable, InactivityRevoke:
	default:
		errs["inactivity_action"] = "Choose to disable or to revoke unused keys."
	}
	if days < MinInactivityDays || days > MaxInactivityDays {
		errs["inactivity_days"] = fmt.Sprintf("Enter a whole number of days from %d to %d.", MinInactivityDays, MaxInactivityDays)
	}
	if err := errs.Err(); err != nil {
		return InactivityPolicy{}, err
	}
	now := s.clock.Now()
	var out InactivityPolicy
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var w models.Workspace
		if err := tx.Take(&w, workspaceID).Error; err != nil {
			return err
		}
		before := PolicyOf(w)
		out = InactivityPolicy{WorkspaceID: workspaceID, Action: action, Days: days, Since: before.Since}
		if out.Action == before.Action && out.Days == before.Days {
			return nil
		}
		var since *time.Time
		switch {
		case !out.On():
			out.Since = time.Time{}
		case !before.On():
			out.Since, since = now, &now
		default:
			since = &before.Since
		}
		if err := tx.Model(&models.Workspace{}).Where("id = ?", workspaceID).Updates(map[string]any{
			"inactivity_action": string(action), "inactivity_days": days, "inactivity_since": since, "updated_at": now,
		}).Error; err != nil {
			return err
		}
		ev := models.AuditEvent{WorkspaceID: workspaceID, ActorUserID: &actor.UserID, ActorLabel: actor.Label, Action: ActionInactivityPolicy,
			KeyLabel: "inactivity policy", Detail: fmt.Sprintf("%s (was %s)", out, before), IP: actor.IP, UserAgent: models.StorableText(actor.UserAgent, 300)}
		return tx.Create(&ev).Error
	})
	return out, err
}

// InactivityPolicies lists the workspaces whose policy is on, by id, after
// the id given (0: from the start); workspaces_inactivity_idx holds just them.
func (s *Service) InactivityPolicies(ctx context.Context, after int64, limit int) ([]InactivityPolicy, error) {
	var ws []models.Workspace
	err := s.db.WithContext(ctx).Where("inactivity_action <> '' AND id > ?", after).Order("id").Limit(limit).Find(&ws).Error
	out := make([]InactivityPolicy, len(ws))
	for i, w := range ws {
		out[i] = PolicyOf(w)
	}
	return out, err
}

// idleKeys reads, in idle order after the cursor, the keys of the policy's
// workspace that it may act on and that have been idle since idleBefore:
// unrevoked, working at aliveAt, and not disabled when disabling is the
// action. The conditions are those of api_keys_workspace_used_idx
// (workspace_id, COALESCE(last_used_at, created_at), expires_at,
// environment, disabled_at) WHERE revoked_at IS NULL: one range of it,
// checked in the index.
func (s *Service) idleKeys(ctx context.Context, p InactivityPolicy, idleBefore, aliveAt time.Time, after Cursor, limit int) ([]models.APIKey, *Cursor, error) {
	q := s.db.WithContext(ctx).
		Where("workspace_id = ? AND revoked_at IS NULL AND COALESCE(last_used_at, created_at) <= ? AND (expires_at IS NULL OR expires_at > ?)",
			p.WorkspaceID, idleBefore, aliveAt)
	if p.Action == InactivityDisable {
		q = q.Where("disabled_at IS NULL")
	}
	if !after.At.IsZero() {
		q = q.Where("(COALESCE(last_used_at, created_at), id) > (?, ?)", after.At, after.ID)
	}
	var ks []models.APIKey
	if err := q.Order("COALESCE(last_used_at, created_at), id").Limit(limit).Find(&ks).Error; err != nil {
		return nil, nil, err
	}
	if len(ks) < limit {
		return ks, nil, nil
	}
	last := ks[len(ks)-1]
	return ks, &Cursor{At: IdleSince(last), ID: last.ID}, nil
}

// DueForWarning is one batch, after the cursor, of the keys the policy must
// warn of now: idle for Days−InactivityNotice, not yet warned in this idle
// period, and not expiring before the action would come. next is the
// cursor of the following batch, nil after the last.
func (s *Service) DueForWarning(ctx context.Context, p InactivityPolicy, now time.Time, after Cursor, limit int) (due []models.APIKey, next *Cursor, err error) {
	if !p.On() {
		return nil, nil, nil
	}
	ks, next, err := s.idleKeys(ctx, p, now.Add(-(p.idleFor() - InactivityNotice)), now.Add(InactivityNotice), after, limit)
	for _, k := range ks {
		if !p.Warned(k) && (k.ExpiresAt == nil || k.ExpiresAt.After(p.ActAt(k, now))) {
			due = append(due, k)
		}
	}
	return due, next, err
}

// DueForAction is one batch, after the cursor, of the keys the policy must
// act on now: idle for Days, and warned in this idle period at least
// InactivityNotice ago.
func (s *Service) DueForAction(ctx context.Context, p InactivityPolicy, now time.Time, after Cursor, limit int) (due []models.APIKey, next *Cursor, err error) {
	if !p.On() {
		return nil, nil, nil
	}
	ks, next, err := s.idleKeys(ctx, p, now.Add(-p.idleFor()), now, after, limit)
	for _, k := range ks {
		if p.Warned(k) && !now.Before(p.ActAt(k, *k.InactivityWarnedAt)) {
			due = append(due, k)
		}
	}
	return due, next, err
}

// MarkWarned records that k is warned of at now, and returns the key as
// marked and when the policy will act on it. ok is false when the key was
// used, changed or warned by another replica since it was read: then no
// warning is due from this caller.
func (s *Service) MarkWarned(ctx context.Context, p InactivityPolicy, k models.APIKey, now time.Time) (marked models.APIKey, actAt time.Time, ok bool, err error) {
	q := s.db.WithContext(ctx).Model(&models.APIKey{}).
		Where("id = ? AND revoked_at IS NULL AND COALESCE(last_used_at, created_at) <= ?", k.ID, now.Add(-(p.idleFor() - InactivityNotice)))
	if k.InactivityWarnedAt == nil {
		q = q.Where("inactivity_warned_at IS NULL")
	} else {
		q = q.Where("inactivity_warned_at = ?", k.InactivityWarnedAt.UTC())
	}
	res := q.Update("inactivity_warned_at", now)
	if res.Error != nil || res.RowsAffected == 0 {
		return k, time.Time{}, false, res.Error
	}
	k.InactivityWarnedAt = &now
	return k, p.ActAt(k, now), true, nil
}

// ErrNoLongerInactive: the key was used, changed or acted on since it was
// found due; the policy leaves it.
var ErrNoLongerInactive = errors.New("keys: the key is no longer due for the inactivity policy")

// ApplyInactivity disables or revokes k, as the policy says, with the
// semantics of SetDisabled and Revoke (same columns, counts, audit action
// and cache eviction) and the policy named as the actor. The update applies
// only while the key is still unused and still carries the warning it was
// found with, so a use that lands meanwhile, or another replica acting
// first, leaves it alone (ErrNoLongerInactive).
func (s *Service) ApplyInactivity(ctx context.Context, p InactivityPolicy, k models.APIKey, now time.Time) (models.APIKey, error) {
	if !p.On() || !p.Warned(k) {
		return k, ErrNoLongerInactive
	}
	actor := Actor{Label: p.Label(), Admin: true}
	warned := k.InactivityWarnedAt.UTC()
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		q := tx.Model(&models.APIKey{}).Where("id = ? AND revoked_at IS NULL AND COALESCE(last_used_at, created_at) <= ? AND inactivity_warned_at = ? AND (expires_at IS NULL OR expires_at > ?)",
			k.ID, now.Add(-p.idleFor()), warned, now)
		updates := map[string]any{"updated_at": now, "inactivity_warned_at": nil}
		action := ActionRevoked
		if p.Action == InactivityDisable {
			q = q.Where("disabled_at IS NULL")
			updates["disabled_at"], updates["disabled_by_id"], action = now, nil, ActionDisabled
		} else {
			updates["revoked_at"], updates["reminder_due_at"] = now, nil
		}
		res := q.Updates(updates)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return ErrNoLongerInactive
		}
		k.InactivityWarnedAt, k.UpdatedAt = nil, now
		if p.Action == InactivityDisable {
			k.DisabledAt, k.DisabledByID = &now, nil
		} else {
			k.RevokedAt, k.ReminderDueAt = &now, nil
			if err := tally(tx, k.WorkspaceID, k.Environment, false, -1); err != nil {
				return err
			}
			if err := tally(tx, k.WorkspaceID, k.Environment, true, 1); err != nil {
				return err
			}
		}
		detail := fmt.Sprintf("unused since %s; warned %s", IdleSince(k).Format(time.RFC3339), warned.Format(time.RFC3339))
		return s.audit(tx, k.WorkspaceID, actor, action, k, detail)
	})
	if err != nil {
		return k, err
	}
	s.changed(k.ID)
	return k, nil
}
