package keys

import (
	"fmt"

	"keysmith/ratelimit"
	"keysmith/validate"
)

// Default rate limits per minute (SPEC §6); admins may set one per key.
const (
	DefaultSecretLimit      = 1000
	DefaultPublishableLimit = 100
)

// The highest limits an admin may set: requests per minute, and quotas
// per hour and per day that such a limit could fill.
const (
	MaxRateLimit   = 1_000_000
	MaxHourlyQuota = 60 * MaxRateLimit
	MaxDailyQuota  = 24 * MaxHourlyQuota // still an INTEGER column on PostgreSQL
)

// Limiter and Decision are package ratelimit's; the verifier's signatures
// name them here.
type (
	Limiter  = ratelimit.Limiter
	Decision = ratelimit.Decision
)

// LimitFor is a key's limit per minute: its own, or its kind's default.
func LimitFor(kind string, own *int) int {
	if own != nil {
		return *own
	}
	if Kind(kind) == Publishable {
		return DefaultPublishableLimit
	}
	return DefaultSecretLimit
}

// Limits is what the key may spend, for the rate limiter.
func (a Authenticated) Limits() ratelimit.Limits {
	return ratelimit.Limits{PerMinute: a.RateLimit, PerHour: a.HourlyQuota, PerDay: a.DailyQuota}
}

// quota is a stored quota for the limiter: 0 for none.
func quota(q *int) int {
	if q == nil {
		return 0
	}
	return *q
}

// LimitSettings is what an owner or admin sets on a key, all at once: its
// requests per minute (nil: the kind's default) and its hourly and daily
// quotas (nil: none).
type LimitSettings struct {
	PerMinute *int
	PerHour   *int
	PerDay    *int
}

// CheckLimits validates settings for a key of kind: each within its range,
// and each longer window at least the shorter ones in force, since a quota
// below them would make them unreachable. Fields: rate_limit,
// hourly_quota, daily_quota.
func CheckLimits(kind Kind, s LimitSettings) validate.Errors {
	errs := validate.Errors{}
	if s.PerMinute != nil && (*s.PerMinute < 1 || *s.PerMinute > MaxRateLimit) {
		errs["rate_limit"] = fmt.Sprintf("Enter a number of requests per minute from 1 to %d, or leave it empty for the default.", MaxRateLimit)
	}
	if s.PerHour != nil && (*s.PerHour < 1 || *s.PerHour > MaxHourlyQuota) {
		errs["hourly_quota"] = fmt.Sprintf("Enter a number of requests per hour from 1 to %d, or leave it empty for no hourly quota.", MaxHourlyQuota)
	}
	if s.PerDay != nil && (*s.PerDay < 1 || *s.PerDay > MaxDailyQuota) {
		errs["daily_quota"] = fmt.Sprintf("Enter a number of requests per day from 1 to %d, or leave it empty for no daily quota.", MaxDailyQuota)
	}
	// Compared only where both sides are valid numbers: each longer window
	// against the next shorter one set (the minute always is, by default).
	perMinute := LimitFor(string(kind), s.PerMinute)
	_, badMinute := errs["rate_limit"]
	_, badHour := errs["hourly_quota"]
	_, badDay := errs["daily_quota"]
	if s.PerHour != nil && !badHour && !badMinute && *s.PerHour < perMinute {
		errs["hourly_quota"] = fmt.Sprintf("Enter at least %d, the requests per minute this key may make, or lower that limit too.", perMinute)
	}
	switch {
	case s.PerDay == nil || badDay:
	case s.PerHour != nil:
		if !badHour && *s.PerDay < *s.PerHour {
			errs["daily_quota"] = fmt.Sprintf("Enter at least %d, the key's hourly quota, or lower that quota too.", *s.PerHour)
		}
	case !badMinute && *s.PerDay < perMinute:
		errs["daily_quota"] = fmt.Sprintf("Enter at least %d, the requests per minute this key may make, or lower that limit too.", perMinute)
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// describeLimits is the audit detail of a limits change.
func describeLimits(kind string, s LimitSettings) string {
	d := fmt.Sprintf("%d requests per minute", LimitFor(kind, s.PerMinute))
	if s.PerHour != nil {
		d += fmt.Sprintf(", %d per hour", *s.PerHour)
	}
	if s.PerDay != nil {
		d += fmt.Sprintf(", %d per day", *s.PerDay)
	}
	return d
}
