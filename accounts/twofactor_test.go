package accounts_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"keysmith/accounts"
	"keysmith/models"
	"keysmith/testutil"
)

// plainSealer stands in for tokens.Service: the tests here are about
// codes, not encryption (handlers' tests check the stored secret).
type plainSealer struct{}

func (plainSealer) Seal(_ string, p []byte) ([]byte, error) {
	return append([]byte("sealed:"), p...), nil
}
func (plainSealer) Open(_ string, s []byte) ([]byte, error) { return s[len("sealed:"):], nil }

// A code raced by many sign-ins at once is accepted once, and so is a
// recovery code.
func TestSecondStepCodeUsedOnceUnderRace(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		svc, clk, db := newServiceDB(t, dbURL)
		tf := accounts.NewTwoFactor(svc, plainSealer{})
		user, err := svc.SignUp(ctx, accounts.SignUpInput{Email: "ada@example.com", Password: "long enough pw"})
		if err != nil {
			t.Fatal(err)
		}
		enr, err := tf.BeginTOTP(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		now := func() string {
			c, _ := totp.GenerateCode(enr.Secret, clk.Now())
			return c
		}
		codes, _, err := tf.ConfirmTOTP(ctx, user.ID, now(), accounts.Actor{})
		if err != nil {
			t.Fatal(err)
		}
		for _, code := range []func() string{now, func() string { return codes[0] }} {
			// Past the login window, so the round before counts for nothing.
			clk.Advance(accounts.LoginWindow + time.Minute)
			code := code()
			var ok, wrong atomic.Int32
			var wg sync.WaitGroup
			for i := range 8 {
				wg.Go(func() {
					_, err := tf.VerifySecondStep(ctx, user.ID, code, "10.0.0."+string(rune('1'+i)), accounts.Actor{})
					switch {
					case err == nil:
						ok.Add(1)
					case errors.Is(err, accounts.ErrWrongCode):
						wrong.Add(1)
					default:
						var th *accounts.ThrottledError
						if !errors.As(err, &th) {
							t.Errorf("verify: %v", err)
						}
					}
				})
			}
			wg.Wait()
			if ok.Load() != 1 {
				t.Fatalf("code %s accepted %d times (%d refused)", code, ok.Load(), wrong.Load())
			}
		}
		var used int64
		db.Model(&models.RecoveryCode{}).Where("used_at IS NOT NULL").Count(&used)
		if used != 1 {
			t.Fatalf("%d recovery codes used", used)
		}
	})
}
