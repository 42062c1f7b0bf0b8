package accounts_test

import (
	"errors"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"keysmith/accounts"
	"keysmith/testutil"
)

func TestSudoWindow(t *testing.T) {
	svc, clk := newService(t, testutil.DatabaseURL(t, "sqlite"))
	sudo := accounts.NewSudo(accounts.NewTwoFactor(svc, plainSealer{}), time.Hour)
	now := clk.Now()
	for _, tc := range []struct {
		name string
		at   time.Time
		want bool
	}{
		{"never confirmed", time.Time{}, false},
		{"just now", now, true},
		{"59 minutes ago", now.Add(-59 * time.Minute), true},
		{"an hour ago", now.Add(-time.Hour), false},
		{"in the future", now.Add(time.Minute), false},
	} {
		if got := sudo.Fresh(tc.at); got != tc.want {
			t.Errorf("%s: Fresh = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A confirmation takes the password, or a TOTP code once (not a recovery
// code), and wrong ones count against the login throttle.
func TestSudoConfirm(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		svc, clk := newService(t, dbURL)
		tf := accounts.NewTwoFactor(svc, plainSealer{})
		sudo := accounts.NewSudo(tf, time.Hour)
		user, err := svc.SignUp(ctx, accounts.SignUpInput{Email: "ada@example.com", Password: "long enough pw"})
		if err != nil {
			t.Fatal(err)
		}
		a := accounts.Actor{IP: "192.0.2.1"}
		if _, err := sudo.Confirm(ctx, user.ID, "", "", a.IP, a); !errors.Is(err, accounts.ErrNeedsPassword) {
			t.Fatalf("nothing given: %v", err)
		}
		if at, err := sudo.Confirm(ctx, user.ID, "long enough pw", "", a.IP, a); err != nil || !at.Equal(clk.Now()) {
			t.Fatalf("the password: %v at %s", err, at)
		}
		if _, err := sudo.Confirm(ctx, user.ID, "", "123456", a.IP, a); !errors.Is(err, accounts.ErrWrongCode) {
			t.Fatalf("a code without two-step verification: %v", err)
		}
		enr, err := tf.BeginTOTP(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		code, _ := totp.GenerateCode(enr.Secret, clk.Now())
		recovery, _, err := tf.ConfirmTOTP(ctx, user.ID, code, a)
		if err != nil {
			t.Fatal(err)
		}
		clk.Advance(30 * time.Second)
		code, _ = totp.GenerateCode(enr.Secret, clk.Now())
		if _, err := sudo.Confirm(ctx, user.ID, "", code, a.IP, a); err != nil {
			t.Fatalf("a current code: %v", err)
		}
		if _, err := sudo.Confirm(ctx, user.ID, "", code, a.IP, a); !errors.Is(err, accounts.ErrWrongCode) {
			t.Fatalf("the same code again: %v", err)
		}
		if _, err := sudo.Confirm(ctx, user.ID, "", recovery[0], a.IP, a); !errors.Is(err, accounts.ErrWrongCode) {
			t.Fatalf("a recovery code: %v", err)
		}
		for range accounts.MaxFailuresPerUser {
			if _, err := sudo.Confirm(ctx, user.ID, "wrong", "", a.IP, a); !errors.Is(err, accounts.ErrWrongPassword) {
				var th *accounts.ThrottledError
				if errors.As(err, &th) {
					break
				}
				t.Fatalf("a wrong password: %v", err)
			}
		}
		var th *accounts.ThrottledError
		if _, err := sudo.Confirm(ctx, user.ID, "long enough pw", "", a.IP, a); !errors.As(err, &th) {
			t.Fatalf("after %d failures: %v", accounts.MaxFailuresPerUser, err)
		}
	})
}
