// Package teams is the domain of shared workspaces: invitations, roles,
// removing and leaving, ownership, and each workspace's key policy. Every
// change writes an audit event in the same transaction. No HTTP here.
package teams

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"keysmith/accounts"
	"keysmith/clock"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/validate"
)

// Errors the HTTP layer maps to messages.
var (
	ErrNotFound          = errors.New("teams: not found")
	ErrLastOwner         = errors.New("teams: a workspace needs at least one owner")
	ErrAlreadyMember     = errors.New("teams: already a member")
	ErrAlreadyInvited    = errors.New("teams: an invitation to this email is open")
	ErrInvitationInvalid = errors.New("teams: invitation is invalid, used, cancelled or expired")
	ErrWrongAccount      = errors.New("teams: invitation is for another email")
)

// ForbiddenError says what the actor's role does not allow.
type ForbiddenError struct{ Reason string }

func (e *ForbiddenError) Error() string { return "teams: forbidden: " + e.Reason }

func forbidden(reason string) error { return &ForbiddenError{Reason: reason} }

// InvitationLifetime is how long an invitation link works.
const InvitationLifetime = 7 * 24 * time.Hour

// Limits on the invitation mails admins can send, in any 24 hours: new
// invitations per workspace, and resends per invitation. Cancelled and
// accepted invitations still count; refused requests do not.
const (
	InvitationWindow              = 24 * time.Hour
	InvitationsPerWorkspacePerDay = 50
	ResendsPerInvitationPerDay    = 3
)

// ThrottledError refuses an invitation mail for now: the workspace sent its
// day's worth of new invitations or, when Resend is set, the invitation to
// Email was resent its day's worth of times. RetryAfter is when the next
// one is allowed.
type ThrottledError struct {
	Resend     bool
	Email      string
	Limit      int
	RetryAfter time.Duration
}

func (e *ThrottledError) Error() string {
	what := "new invitations in the workspace"
	if e.Resend {
		what = "resends of the invitation"
	}
	return fmt.Sprintf("teams: %d %s in %s, retry after %s", e.Limit, what, InvitationWindow, e.RetryAfter)
}

// throttled is given the times of the newest rows in the window, newest
// first, at most `limit` of them. It refuses when there are `limit`: the
// next is allowed once the oldest of them leaves the window.
func (s *Service) throttled(newest []time.Time, limit int) (time.Duration, bool) {
	if len(newest) < limit {
		return 0, false
	}
	return max(newest[limit-1].Add(InvitationWindow).Sub(s.clock.Now()), time.Second), true
}

// forUpdate locks the rows a query reads until the transaction ends, so
// two requests counting the same window take turns. SQLite runs one writer
// at a time and needs no lock (gorm leaves the clause out there).
var forUpdate = clause.Locking{Strength: "NO KEY UPDATE"}

// Audit actions of this package.
const (
	ActionInvited     = "member.invited"
	ActionReinvited   = "member.invitation_resent"
	ActionUninvited   = "member.invitation_cancelled"
	ActionJoined      = "member.joined"
	ActionRoleChanged = "member.role_changed"
	ActionRemoved     = "member.removed"
	ActionLeft        = "member.left"
	ActionOwnerMoved  = "workspace.ownership_transferred"
	ActionRenamed     = "workspace.renamed"
	ActionKeyPolicy   = "workspace.key_policy_changed"
)

// Actor is a member acting on their workspace.
type Actor struct {
	User      models.User
	Role      models.Role
	IP        string
	UserAgent string
}

// Service carries out team operations.
type Service struct {
	db    *gorm.DB
	clock clock.Clock
	// operatorMaxDays is KEYSMITH_MAX_KEY_LIFETIME in days; 0 for none.
	operatorMaxDays int
	onRename        func(workspaceID int64) // after a rename commits: cached keys carry the name
	feed            *keys.ChangeFeed        // on PostgreSQL: tells the other replicas' caches
}

// SetChangeFeed makes a rename announce itself to the other replicas.
func (s *Service) SetChangeFeed(f *keys.ChangeFeed) { s.feed = f }

// OnRename registers f to run after a workspace's name changed.
func (s *Service) OnRename(f func(workspaceID int64)) { s.onRename = f }

// New returns the teams service.
func New(db *gorm.DB, clk clock.Clock, operatorMaxLifetime time.Duration) *Service {
	return &Service{db: db, clock: clk, operatorMaxDays: int(operatorMaxLifetime / (24 * time.Hour))}
}

func audit(tx *gorm.DB, ws int64, a Actor, action, subject, detail string) error {
	return tx.Create(&models.AuditEvent{
		WorkspaceID: ws, ActorUserID: &a.User.ID, ActorLabel: a.User.Email, Action: action,
		KeyLabel: subject, Detail: detail, IP: a.IP, UserAgent: models.StorableText(a.UserAgent, 300),
	}).Error
}

func requireAdmin(a Actor) error {
	if !a.Role.IsAdmin() {
		return forbidden("only owners and admins manage the team")
	}
	return nil
}

// Invite asks someone to join as admin, editor or viewer, and returns the
// plaintext token for the emailed link (only its hash is stored).
func (s *Service) Invite(ctx context.Context, ws int64, a Actor, email string, role models.Role) (models.Invitation, string, error) {
	if err := requireAdmin(a); err != nil {
		return models.Invitation{}, "", err
	}
	email = accounts.NormalizeEmail(email)
	errs := validate.Errors{}
	if addr, err := mail.ParseAddress(email); err != nil || addr.Address != email {
		errs["email"] = "Enter a valid email address, like name@example.com."
	}
	if role != models.RoleAdmin && role != models.RoleEditor && role != models.RoleViewer {
		errs["role"] = "Choose admin, editor or viewer. Ownership is transferred, not invited."
	}
	if err := errs.Err(); err != nil {
		return models.Invitation{}, "", err
	}
	now := s.clock.Now()
	token := rand.Text()
	inv := models.Invitation{
		WorkspaceID: ws, Email: email, Role: role, TokenHash: accounts.HashToken(token),
		InvitedByID: &a.User.ID, ExpiresAt: now.Add(InvitationLifetime),
	}
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		// A workspace's invitations take turns, so each counts all the others.
		if err := tx.Clauses(forUpdate).Select("id").Take(&models.Workspace{}, ws).Error; err != nil {
			return err
		}
		var n int64
		err := tx.Model(&models.Membership{}).Joins("JOIN users ON users.id = memberships.user_id").
			Where("memberships.workspace_id = ? AND users.email = ?", ws, email).Count(&n).Error
		if err != nil {
			return err
		}
		if n > 0 {
			return ErrAlreadyMember
		}
		err = tx.Model(&models.Invitation{}).
			Where("workspace_id = ? AND email = ? AND accepted_at IS NULL AND cancelled_at IS NULL AND expires_at > ?", ws, email, now).
			Count(&n).Error
		if err != nil {
			return err
		}
		if n > 0 {
			return ErrAlreadyInvited
		}
		var recent []time.Time
		err = tx.Model(&models.Invitation{}).Where("workspace_id = ? AND created_at > ?", ws, now.Add(-InvitationWindow)).
			Order("created_at DESC").Limit(InvitationsPerWorkspacePerDay).Pluck("created_at", &recent).Error // invitations_workspace_idx
		if err != nil {
			return err
		}
		if retry, ok := s.throttled(recent, InvitationsPerWorkspacePerDay); ok {
			return &ThrottledError{Email: email, Limit: InvitationsPerWorkspacePerDay, RetryAfter: retry}
		}
		if err := tx.Create(&inv).Error; err != nil {
			return err
		}
		return audit(tx, ws, a, ActionInvited, email, "as "+string(role))
	})
	return inv, token, err
}

// openInvitation loads an invitation of the workspace that can still be used.
func (s *Service) openInvitation(tx *gorm.DB, ws, id int64) (models.Invitation, error) {
	var inv models.Invitation
	err := tx.Where("id = ? AND workspace_id = ? AND accepted_at IS NULL AND cancelled_at IS NULL", id, ws).Take(&inv).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return inv, ErrNotFound
	}
	return inv, err
}

// Resend gives an open (or expired) invitation a new token and a fresh
// week; the old link stops working. Past the invitation's resends of the
// day it returns a *ThrottledError and the old link keeps working.
func (s *Service) Resend(ctx context.Context, ws int64, a Actor, id int64) (models.Invitation, string, error) {
	if err := requireAdmin(a); err != nil {
		return models.Invitation{}, "", err
	}
	token := rand.Text()
	var inv models.Invitation
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var err error
		// Resends of an invitation take turns, so each counts all the others.
		if inv, err = s.openInvitation(tx.Clauses(forUpdate), ws, id); err != nil {
			return err
		}
		now := s.clock.Now()
		var recent []time.Time
		err = tx.Model(&models.MailSend{}).Where("invitation_id = ? AND created_at > ?", inv.ID, now.Add(-InvitationWindow)).
			Order("created_at DESC").Limit(ResendsPerInvitationPerDay).Pluck("created_at", &recent).Error // mail_sends_invitation_idx
		if err != nil {
			return err
		}
		if retry, ok := s.throttled(recent, ResendsPerInvitationPerDay); ok {
			return &ThrottledError{Resend: true, Email: inv.Email, Limit: ResendsPerInvitationPerDay, RetryAfter: retry}
		}
		if err := tx.Create(&models.MailSend{Address: inv.Email, InvitationID: &inv.ID}).Error; err != nil {
			return err
		}
		inv.TokenHash, inv.ExpiresAt = accounts.HashToken(token), now.Add(InvitationLifetime)
		if err := tx.Model(&inv).Select("token_hash", "expires_at", "updated_at").Updates(&inv).Error; err != nil {
			return err
		}
		return audit(tx, ws, a, ActionReinvited, inv.Email, "")
	})
	return inv, token, err
}

// Cancel withdraws an open invitation.
func (s *Service) Cancel(ctx context.Context, ws int64, a Actor, id int64) error {
	if err := requireAdmin(a); err != nil {
		return err
	}
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		inv, err := s.openInvitation(tx, ws, id)
		if err != nil {
			return err
		}
		if err := tx.Model(&inv).Update("cancelled_at", s.clock.Now()).Error; err != nil {
			return err
		}
		return audit(tx, ws, a, ActionUninvited, inv.Email, "")
	})
}

// Pending lists a workspace's invitations not yet accepted or cancelled.
func (s *Service) Pending(ctx context.Context, ws int64) ([]models.Invitation, error) {
	var out []models.Invitation
	err := s.db.WithContext(ctx).Preload("InvitedBy").
		Where("workspace_id = ? AND accepted_at IS NULL AND cancelled_at IS NULL", ws).
		Order("created_at DESC").Find(&out).Error
	return out, err
}

// Invitation looks up a usable invitation by its token, for the page the
// emailed link opens.
func (s *Service) Invitation(ctx context.Context, token string) (models.Invitation, error) {
	var inv models.Invitation
	err := s.db.WithContext(ctx).Preload("Workspace").Preload("InvitedBy").
		Where("token_hash = ? AND accepted_at IS NULL AND cancelled_at IS NULL AND expires_at > ?", accounts.HashToken(token), s.clock.Now()).
		Take(&inv).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return inv, ErrInvitationInvalid
	}
	return inv, err
}

// Accept spends an invitation: the user, whose email must be the invited
// one, joins the workspace with the invited role.
func (s *Service) Accept(ctx context.Context, token string, user models.User, ip, userAgent string) (models.Invitation, error) {
	var inv models.Invitation
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var err error
		if inv, err = s.Invitation(ctx, token); err != nil {
			return err
		}
		if inv.Email != user.Email {
			return ErrWrongAccount
		}
		// The guard makes a second use of the same link lose the race.
		res := tx.Model(&models.Invitation{}).Where("id = ? AND accepted_at IS NULL", inv.ID).Update("accepted_at", s.clock.Now())
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return ErrInvitationInvalid
		}
		var n int64
		if err := tx.Model(&models.Membership{}).Where("workspace_id = ? AND user_id = ?", inv.WorkspaceID, user.ID).Count(&n).Error; err != nil {
			return err
		}
		if n == 0 {
			if err := tx.Create(&models.Membership{WorkspaceID: inv.WorkspaceID, UserID: user.ID, Role: inv.Role}).Error; err != nil {
				return err
			}
		}
		return audit(tx, inv.WorkspaceID, Actor{User: user, Role: inv.Role, IP: ip, UserAgent: userAgent}, ActionJoined, user.Email, "as "+string(inv.Role))
	})
	return inv, err
}

// member loads a membership of the workspace, with its user.
func member(tx *gorm.DB, ws, userID int64) (models.Membership, error) {
	var m models.Membership
	err := tx.Joins("User").Where("memberships.workspace_id = ? AND memberships.user_id = ?", ws, userID).Take(&m).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return m, ErrNotFound
	}
	return m, err
}

// Owners counts the workspace's owners, holding the workspace's row until
// tx ends: two transactions that each count before changing an owner (two
// owners demoted or leaving at once, two first members of a workspace)
// take turns, so neither acts on a count the other is about to change.
func Owners(tx *gorm.DB, ws int64) (int64, error) {
	if err := tx.Clauses(forUpdate).Select("id").Take(&models.Workspace{}, ws).Error; err != nil {
		return 0, err
	}
	var n int64
	err := tx.Model(&models.Membership{}).Where("workspace_id = ? AND role = ?", ws, models.RoleOwner).Count(&n).Error
	return n, err
}

// keepLastOwner refuses, with ErrLastOwner, to take the owner role from
// the workspace's last owner: a workspace without one cannot be
// administered.
func keepLastOwner(tx *gorm.DB, ws int64, m models.Membership) error {
	if m.Role != models.RoleOwner {
		return nil
	}
	n, err := Owners(tx, ws)
	if err != nil {
		return err
	}
	if n <= 1 {
		return ErrLastOwner
	}
	return nil
}

// Changes nobody makes by hand (single sign-on bringing a member's
// workspaces in line with the provider's claims) go through JoinTx,
// SetRoleTx and RemoveTx, inside the caller's transaction. They check no
// permission, as nobody asked, but keep the rules and write the audit
// events a member's change does: a is the actor the event names, and why
// ends its detail (" (single sign-on)").

// JoinTx makes user a member of the workspace with role.
func JoinTx(tx *gorm.DB, ws int64, a Actor, user models.User, role models.Role, why string) error {
	if err := tx.Create(&models.Membership{WorkspaceID: ws, UserID: user.ID, Role: role}).Error; err != nil {
		return err
	}
	return audit(tx, ws, a, ActionJoined, user.Email, "as "+string(role)+why)
}

// SetRoleTx gives a member another role; the last owner keeps theirs
// (ErrLastOwner).
func SetRoleTx(tx *gorm.DB, ws int64, a Actor, userID int64, role models.Role, why string) error {
	m, err := member(tx, ws, userID)
	if err != nil {
		return err
	}
	return setRole(tx, ws, a, m, role, why)
}

// RemoveTx takes a member out of the workspace and returns how many of
// their keys keep working; the last owner stays (ErrLastOwner).
func RemoveTx(tx *gorm.DB, ws int64, a Actor, userID int64, why string) (keysKept int64, err error) {
	m, err := member(tx, ws, userID)
	if err != nil {
		return 0, err
	}
	return remove(tx, ws, a, m, why)
}

func setRole(tx *gorm.DB, ws int64, a Actor, m models.Membership, role models.Role, why string) error {
	if role != models.RoleOwner {
		if err := keepLastOwner(tx, ws, m); err != nil {
			return err
		}
	}
	if m.Role == role {
		return nil
	}
	if err := tx.Model(&models.Membership{}).Where("id = ?", m.ID).Update("role", role).Error; err != nil {
		return err
	}
	return audit(tx, ws, a, ActionRoleChanged, m.User.Email, fmt.Sprintf("%s → %s", m.Role, role)+why)
}

func remove(tx *gorm.DB, ws int64, a Actor, m models.Membership, why string) (keysKept int64, err error) {
	if err := keepLastOwner(tx, ws, m); err != nil {
		return 0, err
	}
	if keysKept, err = deleteMembership(tx, m.ID, ws, m.UserID); err != nil {
		return 0, err
	}
	return keysKept, audit(tx, ws, a, ActionRemoved, m.User.Email, fmt.Sprintf("was %s; %d of their keys keep working", m.Role, keysKept)+why)
}

// ChangeRole gives a member another role. Owners and admins may; only an
// owner may make or unmake owners; the last owner keeps the role.
func (s *Service) ChangeRole(ctx context.Context, ws int64, a Actor, userID int64, role models.Role) error {
	if err := requireAdmin(a); err != nil {
		return err
	}
	if !role.Valid() {
		return validate.Errors{"role": "Choose owner, admin, editor or viewer."}
	}
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		m, err := member(tx, ws, userID)
		if err != nil {
			return err
		}
		if (m.Role == models.RoleOwner || role == models.RoleOwner) && a.Role != models.RoleOwner {
			return forbidden("only owners can make or unmake owners")
		}
		return setRole(tx, ws, a, m, role, "")
	})
}

// Remove takes a member out of the workspace and returns how many keys
// they created there: those keys keep working, as they belong to the
// workspace. Leave is for removing oneself.
func (s *Service) Remove(ctx context.Context, ws int64, a Actor, userID int64) (keysCreated int64, err error) {
	if err := requireAdmin(a); err != nil {
		return 0, err
	}
	if userID == a.User.ID {
		return 0, forbidden("use Leave workspace to remove yourself")
	}
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		m, err := member(tx, ws, userID)
		if err != nil {
			return err
		}
		if m.Role == models.RoleOwner && a.Role != models.RoleOwner {
			return forbidden("only owners can remove an owner")
		}
		keysCreated, err = remove(tx, ws, a, m, "")
		return err
	})
	return keysCreated, err
}

// deleteMembership deletes a membership and counts the keys its user
// created in the workspace that keep working (they belong to the
// workspace).
func deleteMembership(tx *gorm.DB, membershipID, ws, userID int64) (keysKept int64, err error) {
	if err := tx.Delete(&models.Membership{}, membershipID).Error; err != nil {
		return 0, err
	}
	err = tx.Model(&models.APIKey{}).Where("workspace_id = ? AND created_by_id = ? AND revoked_at IS NULL", ws, userID).Count(&keysKept).Error
	return keysKept, err
}

// Leave takes the actor out of the workspace; the last owner cannot leave.
func (s *Service) Leave(ctx context.Context, ws int64, a Actor) error {
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		m, err := member(tx, ws, a.User.ID)
		if err != nil {
			return err
		}
		if err := keepLastOwner(tx, ws, m); err != nil {
			return err
		}
		if err := tx.Delete(&models.Membership{}, m.ID).Error; err != nil {
			return err
		}
		return audit(tx, ws, a, ActionLeft, a.User.Email, "was "+string(m.Role))
	})
}

// TransferOwnership makes another member an owner and the acting owner an admin.
func (s *Service) TransferOwnership(ctx context.Context, ws int64, a Actor, toUserID int64) error {
	if a.Role != models.RoleOwner {
		return forbidden("only an owner can transfer ownership")
	}
	if toUserID == a.User.ID {
		return validate.Errors{"user_id": "Choose another member."}
	}
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		to, err := member(tx, ws, toUserID)
		if err != nil {
			return err
		}
		if err := tx.Model(&models.Membership{}).Where("id = ?", to.ID).Update("role", models.RoleOwner).Error; err != nil {
			return err
		}
		if err := tx.Model(&models.Membership{}).Where("workspace_id = ? AND user_id = ?", ws, a.User.ID).Update("role", models.RoleAdmin).Error; err != nil {
			return err
		}
		return audit(tx, ws, a, ActionOwnerMoved, to.User.Email, "from "+a.User.Email)
	})
}

// Rename changes a workspace's name.
func (s *Service) Rename(ctx context.Context, ws int64, a Actor, name string) error {
	if err := requireAdmin(a); err != nil {
		return err
	}
	name = strings.TrimSpace(name)
	if n := utf8.RuneCountInString(name); n == 0 || n > 100 {
		return validate.Errors{"name": "Use 1 to 100 characters."}
	}
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var w models.Workspace
		if err := tx.Take(&w, ws).Error; err != nil {
			return err
		}
		if err := tx.Model(&w).Update("name", name).Error; err != nil {
			return err
		}
		if err := s.feed.AnnounceWorkspace(tx, ws); err != nil {
			return err
		}
		return audit(tx, ws, a, ActionRenamed, name, fmt.Sprintf("from %q", w.Name))
	})
	if err == nil && s.onRename != nil {
		s.onRename(ws)
	}
	return err
}

// OperatorMaxDays is the operator's maximum key lifetime in days, 0 for none.
func (s *Service) OperatorMaxDays() int { return s.operatorMaxDays }

// SetKeyPolicy sets the workspace's default expiry for new keys and the
// longest lifetime it allows (nil: none beyond the operator's); neither may
// exceed the operator's maximum.
func (s *Service) SetKeyPolicy(ctx context.Context, ws int64, a Actor, defaultDays, maxDays *int) error {
	if err := requireAdmin(a); err != nil {
		return err
	}
	errs := validate.Errors{}
	limit := s.operatorMaxDays
	if maxDays != nil {
		switch {
		case *maxDays < 1 || *maxDays > keys.MaxExpiryDays:
			errs["max_lifetime_days"] = fmt.Sprintf("Enter a number of days from 1 to %d, or leave it empty.", keys.MaxExpiryDays)
		case limit > 0 && *maxDays > limit:
			errs["max_lifetime_days"] = fmt.Sprintf("The operator allows at most %d days.", limit)
		default:
			limit = *maxDays
		}
	}
	if defaultDays != nil && (!slices.Contains(keys.ExpiryChoices, *defaultDays) || (limit > 0 && *defaultDays > limit)) {
		errs["default_expiry_days"] = "Choose a default the create form offers, within the maximum lifetime."
	}
	if err := errs.Err(); err != nil {
		return err
	}
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Model(&models.Workspace{}).Where("id = ?", ws).
			Updates(map[string]any{"default_expiry_days": defaultDays, "max_lifetime_days": maxDays}).Error; err != nil {
			return err
		}
		return audit(tx, ws, a, ActionKeyPolicy, "key policy", fmt.Sprintf("default %s, maximum %s", days(defaultDays), days(maxDays)))
	})
}

func days(n *int) string {
	if n == nil {
		return "none"
	}
	return fmt.Sprintf("%d days", *n)
}
