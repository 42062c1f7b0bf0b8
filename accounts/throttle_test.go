package accounts_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"keysmith/accounts"
	"keysmith/testutil"
)

// The public forms' requests for account mail, as the handlers make them.
var mailRequests = []struct {
	name    string
	request func(svc *accounts.Service, email, ip string) error
}{
	{"reset", func(svc *accounts.Service, email, ip string) error {
		_, _, err := svc.RequestPasswordReset(ctx, email, ip)
		return err
	}},
	{"sign-up", func(svc *accounts.Service, email, ip string) error {
		_, err := svc.RequestSignUp(ctx, accounts.SignUpInput{Email: email, Password: "long enough"}, ip)
		return err
	}},
}

// throttledBy is the limit that refused err, or "" when err is nil.
func throttledBy(t *testing.T, err error) (accounts.ThrottledBy, time.Duration) {
	t.Helper()
	var te *accounts.ThrottledError
	switch {
	case err == nil:
		return "", 0
	case errors.As(err, &te):
		return te.By, te.RetryAfter
	}
	t.Fatalf("want nil or a *ThrottledError, got %v", err)
	return "", 0
}

// Reset links and sign-up mails are limited per address, counted on
// requests: an address with an account and one without are refused at
// the same request, with the same wait, and served again an hour on.
func TestMailThrottlePerAddressAlikeForAccountsAndUnknowns(t *testing.T) {
	for _, r := range mailRequests {
		t.Run(r.name, func(t *testing.T) {
			testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
				svc, clk := newService(t, dbURL)
				if _, err := svc.SignUp(ctx, accounts.SignUpInput{Email: "ada@example.com", Password: "correct horse"}); err != nil {
					t.Fatal(err)
				}
				// Each address's answers, request by request; every request
				// from its own IP, so only the address's limit applies.
				answers := map[string][]string{}
				ip := 0
				ask := func(email string) (accounts.ThrottledBy, time.Duration) {
					ip++
					by, retry := throttledBy(t, r.request(svc, email, fmt.Sprintf("192.0.2.%d", ip)))
					answers[email] = append(answers[email], fmt.Sprint(by, retry))
					return by, retry
				}
				for i := range accounts.MailsPerAddressPerHour {
					for _, email := range []string{"ada@example.com", "nobody@example.com"} {
						if by, _ := ask(email); by != "" {
							t.Fatalf("%s: request %d of %d refused (%s)", email, i+1, accounts.MailsPerAddressPerHour, by)
						}
					}
					clk.Advance(time.Minute)
				}
				for _, email := range []string{"ada@example.com", "nobody@example.com"} {
					by, retry := ask(email)
					// The first request, a minute per request ago, leaves
					// the window first.
					if want := accounts.MailWindow - accounts.MailsPerAddressPerHour*time.Minute; by != accounts.ByAddress || retry != want {
						t.Fatalf("%s past the limit: %q, retry after %s; want refused per address, retry after %s", email, by, retry, want)
					}
					// A refused request is not counted: asking again changes nothing.
					if by, again := ask(email); by != accounts.ByAddress || again != retry {
						t.Fatalf("%s asked again: %q after %s", email, by, again)
					}
				}
				if a, b := fmt.Sprint(answers["ada@example.com"]), fmt.Sprint(answers["nobody@example.com"]); a != b {
					t.Fatalf("an account and an unknown address answered differently:\n%s\n%s", a, b)
				}
				// Mixed case and spaces are the same address.
				if by, _ := ask("  ADA@example.com "); by != accounts.ByAddress {
					t.Fatalf("the address in capitals: %q, want refused", by)
				}

				clk.Advance(accounts.MailWindow - accounts.MailsPerAddressPerHour*time.Minute)
				for _, email := range []string{"ada@example.com", "nobody@example.com"} {
					if by, _ := ask(email); by != "" {
						t.Fatalf("%s once the first request left the hour: refused (%s)", email, by)
					}
				}
			})
		})
	}
}

// One client IP asking for mails to many addresses is limited too, alike
// for addresses with and without accounts; other IPs are not affected.
func TestMailThrottlePerIP(t *testing.T) {
	for _, r := range mailRequests {
		t.Run(r.name, func(t *testing.T) {
			testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
				svc, clk := newService(t, dbURL)
				if _, err := svc.SignUp(ctx, accounts.SignUpInput{Email: "ada@example.com", Password: "correct horse"}); err != nil {
					t.Fatal(err)
				}
				const ip = "198.51.100.7"
				for i := range accounts.MailsPerIPPerHour {
					email := fmt.Sprintf("someone%d@example.com", i)
					if i == 0 {
						email = "ada@example.com"
					}
					if by, _ := throttledBy(t, r.request(svc, email, ip)); by != "" {
						t.Fatalf("request %d of %d from one IP refused (%s)", i+1, accounts.MailsPerIPPerHour, by)
					}
					clk.Advance(time.Minute)
				}
				want := accounts.MailWindow - accounts.MailsPerIPPerHour*time.Minute
				for _, email := range []string{"ada@example.com", "fresh@example.com"} {
					if by, retry := throttledBy(t, r.request(svc, email, ip)); by != accounts.ByIP || retry != want {
						t.Fatalf("%s from the IP past its limit: %q, retry after %s; want refused per IP after %s", email, by, retry, want)
					}
				}
				if by, _ := throttledBy(t, r.request(svc, "fresh@example.com", "198.51.100.8")); by != "" {
					t.Fatalf("another IP refused (%s)", by)
				}
				clk.Advance(want)
				if by, _ := throttledBy(t, r.request(svc, "fresh@example.com", ip)); by != "" {
					t.Fatalf("the IP once its first request left the hour: refused (%s)", by)
				}
			})
		})
	}
}

// Reset links and sign-up mails share an address's hourly budget: both
// are mail the public forms send it.
func TestMailThrottleSharedByResetAndSignUp(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		svc, _ := newService(t, dbURL)
		for i := range accounts.MailsPerAddressPerHour {
			r := mailRequests[i%len(mailRequests)]
			if err := r.request(svc, "grace@example.com", fmt.Sprint("ip", i)); err != nil {
				t.Fatalf("%s %d: %v", r.name, i+1, err)
			}
		}
		for _, r := range mailRequests {
			if by, _ := throttledBy(t, r.request(svc, "grace@example.com", "another ip")); by != accounts.ByAddress {
				t.Fatalf("%s past the shared limit: %q, want refused per address", r.name, by)
			}
		}
	})
}
