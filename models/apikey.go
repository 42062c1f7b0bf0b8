package models

import (
	"strings"
	"time"
)

// APIKey is one key. Its plaintext is never stored: SecretHash is the
// SHA-256 of the whole key, Hint the part the dashboard shows.
type APIKey struct {
	ID          int64
	WorkspaceID int64
	Name        string
	Description string
	Kind        string // sk or pk
	Environment string // live or test
	Permission  string // read, write, admin or custom
	Scopes      string // space-separated, canonical and sorted
	SecretHash  string
	Hint        string
	// ExpiresAt is when the key stops working, nil for never. A rotation
	// moves the old key's ExpiresAt to the end of its grace period.
	ExpiresAt         *time.Time
	CreatedAt         time.Time
	UpdatedAt         time.Time
	CreatedByID       *int64
	CreatedBy         *User `gorm:"foreignKey:CreatedByID"`
	LastUsedAt        *time.Time
	LastUsedIP        string
	LastUsedUserAgent string
	RevokedAt         *time.Time
	RevokedByID       *int64
	RevokedBy         *User      `gorm:"foreignKey:RevokedByID"`
	DisabledAt        *time.Time // paused: refused until enabled again
	DisabledByID      *int64
	DisabledBy        *User   `gorm:"foreignKey:DisabledByID"`
	ReplacesID        *int64  // the key this one was rotated from
	Replaces          *APIKey `gorm:"foreignKey:ReplacesID"`
	RotatedToID       *int64  // the key that replaced this one
	RotatedTo         *APIKey `gorm:"foreignKey:RotatedToID"`
	RotatedAt         *time.Time
	RateLimit         *int       // requests per minute; nil for the kind's default
	HourlyQuota       *int       // requests per hour; nil for none
	DailyQuota        *int       // requests per day; nil for none
	AllowedIPs        string     // addresses and networks it may be used from, space-separated; "" for anywhere
	ReminderDueAt     *time.Time // when the next expiry reminder falls due; nil for none
	// InactivityWarnedAt is when the inactivity policy last warned of this
	// key; a use since then (or an action on it) ends that warning's cycle.
	InactivityWarnedAt *time.Time
}

// ScopeList splits Scopes.
func (k APIKey) ScopeList() []string { return strings.Fields(k.Scopes) }

// AuditEvent records who did what to which key; rows are only ever added.
type AuditEvent struct {
	ID          int64
	WorkspaceID int64
	ActorUserID *int64
	ActorKeyID  *int64
	ActorLabel  string // the actor's email or key hint at the time
	Action      string // key.created, key.renamed, key.rotated, key.revoked
	KeyID       *int64
	KeyLabel    string // the key's name and hint at the time
	Detail      string
	IP          string
	UserAgent   string
	CreatedAt   time.Time
}
