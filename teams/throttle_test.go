package teams_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"keysmith/models"
	"keysmith/teams"
	"keysmith/testutil"
)

func throttled(t *testing.T, err error) *teams.ThrottledError {
	t.Helper()
	var te *teams.ThrottledError
	if !errors.As(err, &te) {
		t.Fatalf("got %v, want a *teams.ThrottledError", err)
	}
	return te
}

// A workspace sends at most its day's worth of new invitations; cancelled
// ones count, a refused one is neither saved nor audited, other workspaces
// are not affected, and a day after the first the next one goes.
func TestInvitationsPerWorkspacePerDay(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := setup(t, dbURL)
		owner := f.users[models.RoleOwner]
		const limit = teams.InvitationsPerWorkspacePerDay
		var first models.Invitation
		for i := range limit {
			inv, _, err := f.svc.Invite(ctx, f.ws, owner, fmt.Sprintf("guest%d@example.com", i), models.RoleViewer)
			if err != nil {
				t.Fatalf("invitation %d of %d: %v", i+1, limit, err)
			}
			if i == 0 {
				first = inv
			}
			f.clk.Advance(time.Minute)
		}
		// Cancelling does not give the invitation back.
		if err := f.svc.Cancel(ctx, f.ws, owner, first.ID); err != nil {
			t.Fatal(err)
		}
		_, _, err := f.svc.Invite(ctx, f.ws, f.users[models.RoleAdmin], "one-more@example.com", models.RoleEditor)
		te := throttled(t, err)
		if want := teams.InvitationWindow - limit*time.Minute; te.Resend || te.Limit != limit || te.RetryAfter != want {
			t.Fatalf("past the limit: %+v, want a workspace limit of %d, retry after %s", te, limit, want)
		}
		var saved, audited int64
		f.db.Model(&models.Invitation{}).Where("email = ?", "one-more@example.com").Count(&saved)
		f.db.Model(&models.AuditEvent{}).Where("key_label = ?", "one-more@example.com").Count(&audited)
		if saved != 0 || audited != 0 {
			t.Fatalf("a refused invitation left %d invitations and %d audit events", saved, audited)
		}

		other := f.newUser(t, "other-owner@example.com")
		ms, _ := f.acc.Memberships(ctx, other.ID)
		if _, _, err := f.svc.Invite(ctx, ms[0].WorkspaceID, teams.Actor{User: other, Role: models.RoleOwner}, "one-more@example.com", models.RoleEditor); err != nil {
			t.Fatalf("another workspace: %v", err)
		}

		f.clk.Advance(te.RetryAfter - time.Second)
		if _, _, err := f.svc.Invite(ctx, f.ws, owner, "one-more@example.com", models.RoleEditor); err == nil {
			t.Fatal("a second before the first invitation left the day: sent")
		}
		f.clk.Advance(time.Second)
		if _, _, err := f.svc.Invite(ctx, f.ws, owner, "one-more@example.com", models.RoleEditor); err != nil {
			t.Fatalf("once the first invitation left the day: %v", err)
		}
		if _, _, err := f.svc.Invite(ctx, f.ws, owner, "and-another@example.com", models.RoleEditor); err == nil {
			t.Fatal("the second left the day a minute after the first, not yet: sent")
		}
	})
}

// An invitation is resent at most its day's worth of times; a refused
// resend keeps the link that works and the invitation open, and other
// invitations may still be resent.
func TestResendsPerInvitationPerDay(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := setup(t, dbURL)
		admin := f.users[models.RoleAdmin]
		inv, _, err := f.svc.Invite(ctx, f.ws, admin, "bob@example.com", models.RoleEditor)
		if err != nil {
			t.Fatal(err)
		}
		other, _, err := f.svc.Invite(ctx, f.ws, admin, "carol@example.com", models.RoleEditor)
		if err != nil {
			t.Fatal(err)
		}
		const limit = teams.ResendsPerInvitationPerDay
		var token string
		for i := range limit {
			f.clk.Advance(time.Hour)
			if _, token, err = f.svc.Resend(ctx, f.ws, admin, inv.ID); err != nil {
				t.Fatalf("resend %d of %d: %v", i+1, limit, err)
			}
		}
		f.clk.Advance(time.Hour)
		_, _, err = f.svc.Resend(ctx, f.ws, f.users[models.RoleOwner], inv.ID)
		te := throttled(t, err)
		if want := teams.InvitationWindow - limit*time.Hour; !te.Resend || te.Email != "bob@example.com" || te.Limit != limit || te.RetryAfter != want {
			t.Fatalf("past the limit: %+v, want bob's resends, limit %d, retry after %s", te, limit, want)
		}
		if _, err := f.svc.Invitation(ctx, token); err != nil {
			t.Fatalf("the last link sent after a refused resend: %v", err)
		}
		pending, _ := f.svc.Pending(ctx, f.ws)
		if len(pending) != 2 {
			t.Fatalf("%d open invitations after a refused resend, want both", len(pending))
		}
		if _, _, err := f.svc.Resend(ctx, f.ws, admin, other.ID); err != nil {
			t.Fatalf("another invitation: %v", err)
		}

		f.clk.Advance(te.RetryAfter)
		if _, _, err := f.svc.Resend(ctx, f.ws, admin, inv.ID); err != nil {
			t.Fatalf("once the first resend left the day: %v", err)
		}
		_, _, err = f.svc.Resend(ctx, f.ws, admin, inv.ID)
		if te := throttled(t, err); te.RetryAfter != time.Hour {
			t.Fatalf("the next: retry after %s, want an hour (the second resend)", te.RetryAfter)
		}
	})
}

// Parallel requests do not slip past either limit, on either engine.
func TestInvitationLimitsHoldUnderABurst(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := setup(t, dbURL)
		owner := f.users[models.RoleOwner]
		const room = 3
		for i := range teams.InvitationsPerWorkspacePerDay - room {
			if _, _, err := f.svc.Invite(ctx, f.ws, owner, fmt.Sprintf("early%d@example.com", i), models.RoleViewer); err != nil {
				t.Fatal(err)
			}
		}
		inv, _, err := f.svc.Invite(ctx, f.ws, owner, "bob@example.com", models.RoleViewer)
		if err != nil {
			t.Fatal(err)
		}
		const burst = 12
		var (
			wg                 sync.WaitGroup
			mu                 sync.Mutex
			invited, resent    int
			refusedI, refusedR int
			others             []error
		)
		for i := range burst {
			wg.Go(func() {
				_, _, err := f.svc.Invite(ctx, f.ws, owner, fmt.Sprintf("burst%d@example.com", i), models.RoleViewer)
				var te *teams.ThrottledError
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					invited++
				case errors.As(err, &te):
					refusedI++
				default:
					others = append(others, err)
				}
			})
			wg.Go(func() {
				_, _, err := f.svc.Resend(ctx, f.ws, owner, inv.ID)
				var te *teams.ThrottledError
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					resent++
				case errors.As(err, &te):
					refusedR++
				default:
					others = append(others, err)
				}
			})
		}
		wg.Wait()
		if len(others) > 0 {
			t.Fatalf("%d requests failed otherwise, first: %v", len(others), others[0])
		}
		if invited != room-1 || resent != teams.ResendsPerInvitationPerDay {
			t.Fatalf("%d invited and %d resent of %d each, want %d and %d", invited, resent, burst, room-1, teams.ResendsPerInvitationPerDay)
		}
	})
}
