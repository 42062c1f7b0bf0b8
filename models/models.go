package models

import "time"

// Role is what a member may do in a workspace (SPEC §1).
type Role string

// The roles, from most to least powerful.
const (
	RoleOwner  Role = "owner"
	RoleAdmin  Role = "admin"
	RoleEditor Role = "editor"
	RoleViewer Role = "viewer"
)

// Roles lists every role, most powerful first.
var Roles = []Role{RoleOwner, RoleAdmin, RoleEditor, RoleViewer}

// Valid reports whether r is one of the four roles.
func (r Role) Valid() bool {
	switch r {
	case RoleOwner, RoleAdmin, RoleEditor, RoleViewer:
		return true
	}
	return false
}

// IsAdmin reports whether r may do everything in a workspace: manage other
// people's keys, create admin-permission keys, read the audit log.
func (r Role) IsAdmin() bool { return r == RoleOwner || r == RoleAdmin }

// CanCreateKeys reports whether r may create keys at all (viewers may not).
func (r Role) CanCreateKeys() bool { return r != RoleViewer && r.Valid() }

// User is a person who logs in to the dashboard.
type User struct {
	ID           int64
	Email        string // stored lower-cased; unique
	Name         string
	PasswordHash string
	// SessionEpoch goes up on every password change; a session remembers the
	// epoch it logged in at and ends when they differ.
	SessionEpoch    int
	IsDemo          bool
	RemindersOptOut bool // no expiry reminder emails
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

// DisplayName is the name if the user gave one, else the email address.
func (u User) DisplayName() string {
	if u.Name != "" {
		return u.Name
	}
	return u.Email
}

// UnsubscribeToken is the secret of one reminder mail's one-click
// unsubscribe link. Every mail gets its own; only its SHA-256 is stored,
// and each of a user's links works until it is a year old.
type UnsubscribeToken struct {
	ID        int64
	UserID    int64
	TokenHash string
	CreatedAt time.Time
}

// Workspace owns keys; users reach it through memberships.
type Workspace struct {
	ID                int64
	Name              string
	Personal          bool
	DefaultExpiryDays *int // preselected expiry of new keys; nil: 90 days
	MaxLifetimeDays   *int // longest a new key may live here; nil: the operator's maximum
	// The inactivity policy (keys/inactivity.go): disable or revoke keys
	// unused for InactivityDays; "" is off. Only keys.SetInactivityPolicy
	// writes them: a new workspace takes the columns' defaults (off, 90).
	InactivityAction string     `gorm:"<-:update"`
	InactivityDays   int        `gorm:"<-:update"` // 30 to 365, kept while off
	InactivitySince  *time.Time `gorm:"<-:update"` // when the policy was last switched on
	// The two-step verification policy (teams/twofactor.go): required of
	// every member since TwoFactorRequiredAt (nil: not required), after
	// TwoFactorGraceDays. Only teams.SetTwoFactorPolicy writes them.
	TwoFactorRequiredAt *time.Time `gorm:"<-:update"`
	TwoFactorGraceDays  int        `gorm:"<-:update"`
	CreatedAt           time.Time
	UpdatedAt           time.Time
}

// Invitation asks someone to join a workspace; only the token's SHA-256
// is stored, and it works once, until it expires.
type Invitation struct {
	ID          int64
	WorkspaceID int64
	Workspace   Workspace `gorm:"foreignKey:WorkspaceID"`
	Email       string
	Role        Role
	TokenHash   string
	InvitedByID *int64
	InvitedBy   *User `gorm:"foreignKey:InvitedByID"`
	ExpiresAt   time.Time
	AcceptedAt  *time.Time
	CancelledAt *time.Time
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Membership gives a user a role in a workspace.
type Membership struct {
	ID          int64
	WorkspaceID int64
	UserID      int64
	Role        Role
	CreatedAt   time.Time
	Workspace   Workspace `gorm:"foreignKey:WorkspaceID"`
	User        User      `gorm:"foreignKey:UserID"`
}

// PasswordReset is a single-use emailed link; only its SHA-256 is stored.
type PasswordReset struct {
	ID        int64
	UserID    int64
	TokenHash string
	ExpiresAt time.Time
	UsedAt    *time.Time
	CreatedAt time.Time
}

// LoginAttempt records each login try, so attempts can be limited per
// account and per IP across every replica sharing the database.
type LoginAttempt struct {
	ID        int64
	Email     string
	IP        string
	Succeeded bool
	CreatedAt time.Time
}

// PendingSignup is a sign-up waiting for its emailed confirmation link:
// the account is created only when the link is used, so the sign-up form
// answers alike for new and registered addresses. Only the link's SHA-256
// is stored.
type PendingSignup struct {
	ID           int64
	Email        string
	Name         string
	PasswordHash string
	TokenHash    string
	ExpiresAt    time.Time
	CreatedAt    time.Time
}

// MailSend records a request for a mail someone can trigger, to limit how
// many they may: an account email asked for on a public form (by address
// and client IP, whether or not the address has an account), or an
// invitation's resend (InvitationID).
type MailSend struct {
	ID           int64
	Address      string
	IP           string
	InvitationID *int64
	CreatedAt    time.Time
}
