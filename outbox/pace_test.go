package outbox

import (
	"testing"
	"time"
)

// Claims follow the senders' pace since the last claim: one per sender
// before any answer, the most a claim takes for a fast relay, and one per
// sender again once the relay slows down, after a single claim.
func TestClaimSizeFollowsThePace(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	p := &pass{lastClaim: t0}
	step := func(answers int, after time.Duration, want int) {
		t.Helper()
		p.answers += answers
		t0 = t0.Add(after)
		if got := p.claimSize(4, 128, t0); got != want {
			t.Fatalf("after %d answers in %s: a claim of %d, want %d", answers, after, got, want)
		}
	}
	step(0, 0, 4)                     // no answer yet: one per sender
	step(0, time.Second, 4)           // senders all waiting
	step(8, 10*time.Millisecond, 128) // 800 a second: the most
	step(60, 100*time.Millisecond, 128)
	step(128, 64*time.Second, 4) // 2 a second: back to one per sender
	step(30, time.Second, 30)    // 30 a second
	p.only = []int64{1, 2}
	step(0, 0, 128) // Deliver's pass takes its own in one go
}
