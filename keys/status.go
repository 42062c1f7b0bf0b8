package keys

import (
	"time"

	"keysmith/models"
)

// Status is what the dashboard says about a key (SPEC §3).
type Status string

const (
	StatusActive   Status = "active"
	StatusExpiring Status = "expiring"
	StatusExpired  Status = "expired"
	StatusRevoked  Status = "revoked"
	StatusRotating Status = "rotating" // replaced, in its grace period
	StatusDisabled Status = "disabled" // paused: refused until enabled
)

// Label is the status as a badge shows it.
func (s Status) Label() string {
	switch s {
	case StatusActive:
		return "Active"
	case StatusExpiring:
		return "Expiring soon"
	case StatusExpired:
		return "Expired"
	case StatusRevoked:
		return "Revoked"
	case StatusRotating:
		return "Rotating"
	case StatusDisabled:
		return "Disabled"
	}
	return string(s)
}

// Dead reports whether a key in this status no longer authenticates.
func (s Status) Dead() bool { return s == StatusExpired || s == StatusRevoked }

// StatusOf tells a key's status at now.
func StatusOf(k models.APIKey, now time.Time) Status {
	switch {
	case k.RevokedAt != nil:
		return StatusRevoked
	case k.ExpiresAt != nil && !k.ExpiresAt.After(now):
		return StatusExpired
	case k.DisabledAt != nil:
		return StatusDisabled
	case k.RotatedToID != nil:
		return StatusRotating
	case k.ExpiresAt != nil && k.ExpiresAt.Sub(now) <= ExpiringSoon:
		return StatusExpiring
	}
	return StatusActive
}
