package keys

import (
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// Failed key authentications per client IP: a flood of random well-formed
// keys from one address would otherwise cost a database read and a
// negative-cache entry each.
const (
	FailuresPerMinute = 60
	FailureIPs        = 10_000 // addresses remembered; the least recent go first
)

// FailedAuths limits, per client IP, how many presented keys may turn out
// unknown: past FailuresPerMinute (a minute's worth may come at once), the
// address is refused before its keys are looked up, until the bucket
// refills. Known keys, even revoked or expired ones, spend nothing: they
// cost no more than a cache hit.
type FailedAuths struct {
	ips *lru.Cache[string, *rate.Limiter]
}

// NewFailedAuths returns an empty limiter.
func NewFailedAuths() *FailedAuths {
	ips, _ := lru.New[string, *rate.Limiter](FailureIPs)
	return &FailedAuths{ips: ips}
}

// Blocked reports whether ip has no unknown-key lookups left, and when
// the next one is allowed.
func (f *FailedAuths) Blocked(ip string, now time.Time) (bool, time.Duration) {
	l, ok := f.ips.Get(ip)
	if !ok {
		return false, 0
	}
	tokens := l.TokensAt(now)
	if tokens >= 1 {
		return false, 0
	}
	return true, time.Duration((1 - tokens) * float64(time.Minute) / FailuresPerMinute)
}

// Failed spends one of ip's unknown-key lookups.
func (f *FailedAuths) Failed(ip string, now time.Time) {
	l, ok := f.ips.Get(ip)
	if !ok {
		l = rate.NewLimiter(rate.Limit(float64(FailuresPerMinute)/60), FailuresPerMinute)
		l.SetBurstAt(now, FailuresPerMinute)
		f.ips.Add(ip, l)
	}
	l.AllowN(now, 1)
}
