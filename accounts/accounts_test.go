package accounts_test

import (
	"context"
	"errors"
	"gorm.io/gorm"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"keysmith/accounts"
	"keysmith/clock"
	"keysmith/models"
	"keysmith/testutil"
	"keysmith/validate"
)

func newService(t *testing.T, dbURL string) (*accounts.Service, *clock.Fake) {
	t.Helper()
	svc, clk, _ := newServiceDB(t, dbURL)
	return svc, clk
}

func newServiceDB(t *testing.T, dbURL string) (*accounts.Service, *clock.Fake, *gorm.DB) {
	t.Helper()
	clk := clock.NewFake(testutil.Epoch)
	db := testutil.OpenDB(t, dbURL, clk)
	return accounts.New(db, clk, 4), clk, db
}

var ctx = context.Background()

func TestSignUpValidates(t *testing.T) {
	svc, _ := newService(t, testutil.DatabaseURL(t, "sqlite"))
	cases := []struct {
		name  string
		in    accounts.SignUpInput
		field string
	}{
		{"no email", accounts.SignUpInput{Password: "long enough"}, "email"},
		{"bad email", accounts.SignUpInput{Email: "not-an-email", Password: "long enough"}, "email"},
		{"display-name email", accounts.SignUpInput{Email: "Ada <ada@example.com>", Password: "long enough"}, "email"},
		{"short password", accounts.SignUpInput{Email: "a@example.com", Password: "short"}, "password"},
		{"password over bcrypt's 72 bytes", accounts.SignUpInput{Email: "a@example.com", Password: strings.Repeat("x", 73)}, "password"},
		{"long name", accounts.SignUpInput{Email: "a@example.com", Name: strings.Repeat("n", 101), Password: "long enough"}, "name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := svc.SignUp(ctx, tc.in)
			var fe validate.Errors
			if !errors.As(err, &fe) || fe[tc.field] == "" {
				t.Fatalf("SignUp(%+v) = %v, want an error on %q", tc.in, err, tc.field)
			}
		})
	}
}

func TestSignUpCreatesOwnedPersonalWorkspace(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		svc, _ := newService(t, dbURL)
		user, err := svc.SignUp(ctx, accounts.SignUpInput{Email: "  Ada@Example.COM ", Name: "Ada", Password: "correct horse"})
		if err != nil {
			t.Fatal(err)
		}
		if user.Email != "ada@example.com" {
			t.Errorf("email stored as %q, want it trimmed and lower-cased", user.Email)
		}
		if strings.Contains(user.PasswordHash, "correct horse") || !strings.HasPrefix(user.PasswordHash, "$2") {
			t.Errorf("password hash %q is not bcrypt", user.PasswordHash)
		}
		ms, err := svc.Memberships(ctx, user.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) != 1 || ms[0].Role != models.RoleOwner || !ms[0].Workspace.Personal || ms[0].Workspace.Name != "Ada's workspace" {
			t.Fatalf("memberships = %+v, want owner of a personal workspace", ms)
		}
		if _, err := svc.SignUp(ctx, accounts.SignUpInput{Email: "ADA@example.com", Password: "another one"}); !errors.Is(err, accounts.ErrEmailTaken) {
			t.Fatalf("second sign-up with the same email: %v, want ErrEmailTaken", err)
		}
	})
}

func TestAuthenticate(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		svc, _ := newService(t, dbURL)
		if _, err := svc.SignUp(ctx, accounts.SignUpInput{Email: "ada@example.com", Password: "correct horse"}); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Authenticate(ctx, "ADA@example.com", "correct horse", "10.0.0.1"); err != nil {
			t.Fatalf("right password: %v", err)
		}
		if _, err := svc.Authenticate(ctx, "ada@example.com", "wrong horse", "10.0.0.1"); !errors.Is(err, accounts.ErrInvalidCredentials) {
			t.Fatalf("wrong password: %v", err)
		}
		if _, err := svc.Authenticate(ctx, "nobody@example.com", "correct horse", "10.0.0.1"); !errors.Is(err, accounts.ErrInvalidCredentials) {
			t.Fatalf("unknown email: %v, want the same error as a wrong password", err)
		}
	})
}

func TestLoginThrottlePerAccount(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		svc, clk := newService(t, dbURL)
		if _, err := svc.SignUp(ctx, accounts.SignUpInput{Email: "ada@example.com", Password: "correct horse"}); err != nil {
			t.Fatal(err)
		}
		for i := range accounts.MaxFailuresPerUser {
			clk.Advance(time.Minute)
			// Each failure from another IP: the account limit must not depend on the IP.
			ip := "10.0.0." + string(rune('1'+i))
			if _, err := svc.Authenticate(ctx, "ada@example.com", "wrong", ip); !errors.Is(err, accounts.ErrInvalidCredentials) {
				t.Fatalf("failure %d: %v", i+1, err)
			}
		}
		// Even the right password is refused while the account is throttled.
		_, err := svc.Authenticate(ctx, "ada@example.com", "correct horse", "10.9.9.9")
		var throttled *accounts.ThrottledError
		if !errors.As(err, &throttled) {
			t.Fatalf("after %d failures: %v, want ThrottledError", accounts.MaxFailuresPerUser, err)
		}
		// The first failure was 5 minutes ago; it leaves the 15-minute window in 11.
		if want := accounts.LoginWindow - 4*time.Minute; throttled.RetryAfter != want {
			t.Errorf("RetryAfter = %s, want %s", throttled.RetryAfter, want)
		}
		clk.Advance(throttled.RetryAfter)
		if _, err := svc.Authenticate(ctx, "ada@example.com", "correct horse", "10.9.9.9"); err != nil {
			t.Fatalf("after the window moved on: %v", err)
		}
		// A success resets the account's count.
		for range accounts.MaxFailuresPerUser - 1 {
			_, _ = svc.Authenticate(ctx, "ada@example.com", "wrong", "10.9.9.9")
		}
		if _, err := svc.Authenticate(ctx, "ada@example.com", "correct horse", "10.9.9.9"); err != nil {
			t.Fatalf("4 failures after a success should not throttle: %v", err)
		}
	})
}

func TestLoginThrottlePerIP(t *testing.T) {
	svc, clk := newService(t, testutil.DatabaseURL(t, "sqlite"))
	if _, err := svc.SignUp(ctx, accounts.SignUpInput{Email: "ada@example.com", Password: "correct horse"}); err != nil {
		t.Fatal(err)
	}
	// One IP sprays many accounts, a few tries each: the account limits never trip.
	for i := range accounts.MaxFailuresPerIP {
		clk.Advance(time.Second)
		email := "victim" + string(rune('a'+i)) + "@example.com"
		if _, err := svc.Authenticate(ctx, email, "guess", "203.0.113.7"); !errors.Is(err, accounts.ErrInvalidCredentials) {
			t.Fatalf("try %d: %v", i+1, err)
		}
	}
	var throttled *accounts.ThrottledError
	if _, err := svc.Authenticate(ctx, "ada@example.com", "correct horse", "203.0.113.7"); !errors.As(err, &throttled) {
		t.Fatalf("IP past its limit: %v, want ThrottledError", err)
	}
	if _, err := svc.Authenticate(ctx, "ada@example.com", "correct horse", "198.51.100.1"); err != nil {
		t.Fatalf("another IP must not be throttled: %v", err)
	}
}

func TestChangePasswordMovesSessionEpoch(t *testing.T) {
	svc, _ := newService(t, testutil.DatabaseURL(t, "sqlite"))
	user, err := svc.SignUp(ctx, accounts.SignUpInput{Email: "ada@example.com", Password: "correct horse"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ChangePassword(ctx, user.ID, "wrong", "battery staple"); !errors.Is(err, accounts.ErrWrongPassword) {
		t.Fatalf("wrong current password: %v", err)
	}
	var fe validate.Errors
	if _, err := svc.ChangePassword(ctx, user.ID, "correct horse", "short"); !errors.As(err, &fe) || fe["new_password"] == "" {
		t.Fatalf("short new password: %v", err)
	}
	changed, err := svc.ChangePassword(ctx, user.ID, "correct horse", "battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if changed.SessionEpoch != user.SessionEpoch+1 {
		t.Errorf("epoch %d → %d, want +1", user.SessionEpoch, changed.SessionEpoch)
	}
	if _, err := svc.Authenticate(ctx, "ada@example.com", "battery staple", "ip"); err != nil {
		t.Fatalf("new password: %v", err)
	}
	if _, err := svc.Authenticate(ctx, "ada@example.com", "correct horse", "ip"); !errors.Is(err, accounts.ErrInvalidCredentials) {
		t.Fatalf("old password still works: %v", err)
	}
}

func TestPasswordResetIsSingleUseAndExpires(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		svc, clk := newService(t, dbURL)
		if _, err := svc.SignUp(ctx, accounts.SignUpInput{Email: "ada@example.com", Password: "correct horse"}); err != nil {
			t.Fatal(err)
		}
		if u, token, err := svc.RequestPasswordReset(ctx, "nobody@example.com", "ip"); err != nil || token != "" || u.ID != 0 {
			t.Fatalf("unknown email: user %d token %q err %v, want nothing", u.ID, token, err)
		}

		_, first, err := svc.RequestPasswordReset(ctx, "ada@example.com", "ip")
		if err != nil || first == "" {
			t.Fatalf("request: %q %v", first, err)
		}
		_, second, _ := svc.RequestPasswordReset(ctx, "ada@example.com", "ip")
		if err := svc.CheckReset(ctx, accounts.HashToken(first)); err != nil {
			t.Fatalf("fresh token: %v", err)
		}
		user, err := svc.ResetPasswordByHash(ctx, accounts.HashToken(first), "battery staple")
		if err != nil {
			t.Fatal(err)
		}
		if user.SessionEpoch != 1 {
			t.Errorf("epoch after reset = %d, want 1 (every session ends)", user.SessionEpoch)
		}
		if _, err := svc.ResetPasswordByHash(ctx, accounts.HashToken(first), "another password"); !errors.Is(err, accounts.ErrResetLinkInvalid) {
			t.Fatalf("reuse: %v, want ErrResetLinkInvalid", err)
		}
		if _, err := svc.ResetPasswordByHash(ctx, accounts.HashToken(second), "another password"); !errors.Is(err, accounts.ErrResetLinkInvalid) {
			t.Fatalf("an older open link after a reset: %v, want ErrResetLinkInvalid", err)
		}

		_, late, _ := svc.RequestPasswordReset(ctx, "ada@example.com", "ip")
		clk.Advance(accounts.ResetLinkLifetime + time.Second)
		if err := svc.CheckReset(ctx, accounts.HashToken(late)); !errors.Is(err, accounts.ErrResetLinkInvalid) {
			t.Fatalf("expired token: %v", err)
		}
		if _, err := svc.Authenticate(ctx, "ada@example.com", "battery staple", "ip"); err != nil {
			t.Fatalf("password from the reset: %v", err)
		}
	})
}

func TestPurgeExpired(t *testing.T) {
	svc, clk, db := newServiceDB(t, testutil.DatabaseURL(t, "sqlite"))
	if _, err := svc.SignUp(ctx, accounts.SignUpInput{Email: "ada@example.com", Password: "correct horse"}); err != nil {
		t.Fatal(err)
	}
	signUp := accounts.SignUpInput{Email: "grace@example.com", Password: "long enough"}
	_, _ = svc.Authenticate(ctx, "ada@example.com", "wrong", "ip")
	_, _, _ = svc.RequestPasswordReset(ctx, "ada@example.com", "ip")
	_, _ = svc.RequestSignUp(ctx, signUp, "ip")
	clk.Advance(25 * time.Hour)
	_, _ = svc.Authenticate(ctx, "ada@example.com", "wrong", "ip")
	_, _, _ = svc.RequestPasswordReset(ctx, "ada@example.com", "ip")
	_, _ = svc.RequestSignUp(ctx, signUp, "ip")
	// Purged: what expired (or, for attempts, happened) more than a day
	// ago, the first of each; the second reset link expired 23 hours ago
	// and the second sign-up link only now, so they stay for now.
	clk.Advance(24 * time.Hour)
	if err := svc.PurgeExpired(ctx); err != nil {
		t.Fatal(err)
	}
	var attempts, resets, signUps int64
	db.Model(&models.LoginAttempt{}).Count(&attempts)
	db.Model(&models.PasswordReset{}).Count(&resets)
	db.Model(&models.PendingSignup{}).Count(&signUps)
	if attempts != 1 || resets != 1 || signUps != 1 {
		t.Fatalf("after purge: %d attempts, %d reset links, %d sign-ups; want only the newer one of each", attempts, resets, signUps)
	}
}

// A burst of parallel logins to one account, the right password among
// them, gets no more than the limit evaluated, on both engines, and no
// database error however the attempts interleave.
func TestLoginThrottleHoldsUnderABurst(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		svc, _ := newService(t, dbURL)
		if _, err := svc.SignUp(ctx, accounts.SignUpInput{Email: "ada@example.com", Password: "correct horse"}); err != nil {
			t.Fatal(err)
		}
		const burst = 150
		var (
			wg                             sync.WaitGroup
			mu                             sync.Mutex
			evaluated, throttled, loggedIn int
			others                         []error
		)
		start := make(chan struct{})
		for i := range burst {
			password := "wrong horse"
			if i == burst/2 {
				password = "correct horse"
			}
			wg.Go(func() {
				<-start
				_, err := svc.Authenticate(ctx, "ada@example.com", password, "192.0.2.1")
				var te *accounts.ThrottledError
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					evaluated++
					loggedIn++
				case errors.Is(err, accounts.ErrInvalidCredentials):
					evaluated++
				case errors.As(err, &te):
					throttled++
				default:
					others = append(others, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if len(others) > 0 {
			t.Fatalf("%d attempts failed with other errors, first: %v", len(others), others[0])
		}
		// All may be refused (every attempt recorded before any counted):
		// what must never happen is more than the limit of wrong passwords
		// reaching bcrypt. A right one among the first resets the count, as
		// any successful login does, so then up to limit-1 wrong ones before
		// it and limit after it.
		want := accounts.MaxFailuresPerUser
		if loggedIn > 0 {
			want = 2 * accounts.MaxFailuresPerUser
		}
		if evaluated > want {
			t.Errorf("%d of %d attempts evaluated (%d logged in), want at most %d", evaluated, burst, loggedIn, want)
		}
		if evaluated+throttled != burst {
			t.Errorf("evaluated %d + throttled %d != %d", evaluated, throttled, burst)
		}
		t.Logf("%d evaluated (%d logged in), %d throttled", evaluated, loggedIn, throttled)
		// Refused attempts were not recorded: only the evaluated ones count,
		// so the account is not locked for longer than they warrant.
		_, err := svc.Authenticate(ctx, "ada@example.com", "correct horse", "192.0.2.9")
		var te *accounts.ThrottledError
		if locked := evaluated >= accounts.MaxFailuresPerUser; loggedIn == 0 && locked != errors.As(err, &te) {
			t.Fatalf("after %d failures evaluated, the right password: %v", evaluated-loggedIn, err)
		}
	})
}

// The dummy hash that hides unknown emails is made on first need, not at
// start, and at the same cost as real passwords: an unknown email still
// costs one bcrypt comparison at that cost, as a known one does.
func TestDummyHashIsLazyAndAtTheSameCost(t *testing.T) {
	svc, _ := newService(t, testutil.DatabaseURL(t, "sqlite"))
	if made, _ := accounts.DummyHash(svc); made {
		t.Fatal("the dummy hash was made at start")
	}
	user, err := svc.SignUp(ctx, accounts.SignUpInput{Email: "ada@example.com", Password: "correct horse"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Authenticate(ctx, "ada@example.com", "wrong horse", "ip"); !errors.Is(err, accounts.ErrInvalidCredentials) {
		t.Fatal(err)
	}
	if made, _ := accounts.DummyHash(svc); made {
		t.Fatal("a known email's login made the dummy hash")
	}
	if _, err := svc.Authenticate(ctx, "nobody@example.com", "wrong horse", "ip"); !errors.Is(err, accounts.ErrInvalidCredentials) {
		t.Fatal(err)
	}
	made, dummy := accounts.DummyHash(svc)
	if !made {
		t.Fatal("an unknown email's login compared against no hash")
	}
	real, _ := bcrypt.Cost([]byte(user.PasswordHash))
	if cost, err := bcrypt.Cost(dummy); err != nil || cost != real {
		t.Fatalf("dummy hash cost %d (%v), a password's %d", cost, err, real)
	}
}
