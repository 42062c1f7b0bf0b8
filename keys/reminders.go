package keys

import "time"

// Stage is one expiry reminder (SPEC §7): 14, 7 and 1 day before a key
// expires, and once it has expired.
type Stage string

const (
	Stage14d     Stage = "14d"
	Stage7d      Stage = "7d"
	Stage1d      Stage = "1d"
	StageExpired Stage = "expired"
)

// Stages in the order they fall due, each with how long before expiry.
var Stages = []struct {
	Stage  Stage
	Before time.Duration
}{
	{Stage14d, 14 * 24 * time.Hour},
	{Stage7d, 7 * 24 * time.Hour},
	{Stage1d, 24 * time.Hour},
	{StageExpired, 0},
}

// ExpiredReminderWindow bounds the "has expired" mail: a key that expired
// longer ago than this (while Keysmith was down, or before reminders
// existed) gets none.
const ExpiredReminderWindow = 7 * 24 * time.Hour

// relevant reports whether a stage applies to a key created at created:
// the key must have lived through the stage's moment, so a key created
// with 10 days left never gets the 14-day mail, and one created with
// exactly 7 days left (or a few seconds more, a client's clock ahead of
// ours) does not get the 7-day mail within seconds of its creation.
func relevant(before time.Duration, created, expires time.Time) bool {
	return expires.Add(-before).After(created.Add(stageSlack))
}

// stageSlack is how long a key must have existed before a stage's moment
// for that stage to count as lived through.
const stageSlack = time.Minute

// FirstReminderAt is when a new key's first reminder falls due; nil for a
// key that never expires.
func FirstReminderAt(created time.Time, expires *time.Time) *time.Time {
	if expires == nil {
		return nil
	}
	for _, s := range Stages {
		if relevant(s.Before, created, *expires) {
			at := expires.Add(-s.Before)
			return &at
		}
	}
	return nil
}

// CurrentStage is the most urgent reminder due at now, and when the next
// one falls due (nil: none). Stages skipped while Keysmith was down are
// never sent: only the most urgent relevant one is.
func CurrentStage(created, expires, now time.Time) (stage Stage, due bool, next *time.Time) {
	if now.After(expires.Add(ExpiredReminderWindow)) {
		return "", false, nil
	}
	for i := len(Stages) - 1; i >= 0; i-- {
		s := Stages[i]
		at := expires.Add(-s.Before)
		if !now.Before(at) && relevant(s.Before, created, expires) {
			if i+1 < len(Stages) {
				n := expires.Add(-Stages[i+1].Before)
				next = &n
			}
			return s.Stage, true, next
		}
	}
	return "", false, FirstReminderAt(created, &expires)
}
