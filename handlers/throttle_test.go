package handlers_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"keysmith/accounts"
	"keysmith/config"
	"keysmith/models"
	"keysmith/teams"
	"keysmith/testutil"
)

// forwardedFor makes a client's requests come from ip, as a trusted proxy
// would say.
type forwardedFor string

func (ip forwardedFor) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-For", string(ip))
	return http.DefaultTransport.RoundTrip(r)
}

func trustProxy(app *testutil.App, t *testing.T, ip string) *testutil.Client {
	c := app.NewClient(t)
	c.HTTP.Transport = forwardedFor(ip)
	return c
}

// The public forms that mail an address, and what each answers when it
// has sent (or would have sent) its mail.
var mailForms = []struct {
	name, path, sent string
	fields           map[string]string
}{
	{"forgot-password", "/forgot-password", "If an account exists for", nil},
	{"sign-up", "/signup", "We have sent a link to", map[string]string{"password": "long enough pw"}},
}

func submitMailForm(c *testutil.Client, path, email string, fields map[string]string) *testutil.Page {
	values := map[string]string{"email": email}
	for k, v := range fields {
		values[k] = v
	}
	return c.Submit(c.Get(path), "form[action='"+path+"']", values)
}

func mailsTo(app *testutil.App, addr string) int {
	n := 0
	for _, m := range app.Mails() {
		if m.To[0] == addr {
			n++
		}
	}
	return n
}

// Past an address's hourly limit, the reset and sign-up forms say so with
// a 429 and when to try again, and answer exactly alike for an address
// with an account and one without: the requests are counted, not the
// mails. An hour after the first request, the form works again.
func TestMailFormsSayWhenAnAddressIsThrottled(t *testing.T) {
	for _, form := range mailForms {
		t.Run(form.name, func(t *testing.T) {
			testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
				app := testutil.StartApp(t, dbURL, testutil.WithConfig(func(c *config.Config) { c.TrustProxy = true }))
				if _, err := app.Accounts.SignUp(context.Background(), accounts.SignUpInput{Email: "ada@example.com", Password: "long enough pw"}); err != nil {
					t.Fatal(err)
				}
				ip := 0
				ask := func(email string) *testutil.Page {
					ip++ // a client of its own each time: only the address's limit applies
					return submitMailForm(trustProxy(app, t, fmt.Sprintf("192.0.2.%d", ip)), form.path, email, form.fields)
				}
				answers := map[string][]string{}
				for i := range accounts.MailsPerAddressPerHour {
					for _, email := range []string{"ada@example.com", "nobody@example.com"} {
						page := ask(email)
						if page.Status != http.StatusOK || !strings.Contains(page.Text(".flash"), form.sent) {
							t.Fatalf("%s, request %d: %d %q", email, i+1, page.Status, page.Text(".flash"))
						}
					}
					app.Clock.Advance(10 * time.Minute)
				}
				for _, email := range []string{"ada@example.com", "nobody@example.com"} {
					page := ask(email)
					want := "Too many emails have been requested for this address. Try again in 30 minutes."
					if page.Status != http.StatusTooManyRequests || page.Text(".flash.error") != want || page.Header.Get("Retry-After") != "1800" {
						t.Fatalf("%s past the limit: %d %q, Retry-After %q; want 429 %q",
							email, page.Status, page.Text(".flash.error"), page.Header.Get("Retry-After"), want)
					}
					if v, _ := page.Doc.Find("form[action='" + form.path + "'] input[name=email]").Attr("value"); v != email {
						t.Fatalf("the form is not shown again with the address: %q", v)
					}
					answers[email] = append(answers[email], fmt.Sprint(page.Status, page.Header.Get("Retry-After")),
						strings.ReplaceAll(page.Text("main"), email, "ADDRESS"))
				}
				if a, b := answers["ada@example.com"], answers["nobody@example.com"]; fmt.Sprint(a) != fmt.Sprint(b) {
					t.Fatalf("the throttled answers tell the addresses apart:\n%q\n%q", a, b)
				}
				accountMails := mailsTo(app, "ada@example.com")
				if accountMails != accounts.MailsPerAddressPerHour {
					t.Fatalf("%d mails to the account, want %d", accountMails, accounts.MailsPerAddressPerHour)
				}

				app.Clock.Advance(30 * time.Minute)
				for _, email := range []string{"ada@example.com", "nobody@example.com"} {
					if page := ask(email); page.Status != http.StatusOK || !strings.Contains(page.Text(".flash"), form.sent) {
						t.Fatalf("%s an hour after the first request: %d %q", email, page.Status, page.Text(".flash"))
					}
				}
				if got := mailsTo(app, "ada@example.com"); got != accountMails+1 {
					t.Fatalf("%d mails to the account after the hour, want one more than %d", got, accountMails)
				}
			})
		})
	}
}

// One client asking for mails to many addresses is stopped too, with its
// own message; another client is not.
func TestMailFormsSayWhenAnIPIsThrottled(t *testing.T) {
	for _, form := range mailForms {
		t.Run(form.name, func(t *testing.T) {
			testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
				app := testutil.StartApp(t, dbURL, testutil.WithConfig(func(c *config.Config) { c.TrustProxy = true }))
				c := trustProxy(app, t, "198.51.100.7")
				for i := range accounts.MailsPerIPPerHour {
					if page := submitMailForm(c, form.path, fmt.Sprintf("someone%d@example.com", i), form.fields); page.Status != http.StatusOK {
						t.Fatalf("request %d of %d from one IP: %d %q", i+1, accounts.MailsPerIPPerHour, page.Status, page.Text(".flash"))
					}
				}
				page := submitMailForm(c, form.path, "fresh@example.com", form.fields)
				want := "Too many emails have been requested from your network. Try again in 60 minutes."
				if page.Status != http.StatusTooManyRequests || page.Text(".flash.error") != want {
					t.Fatalf("past the IP's limit: %d %q, want 429 %q", page.Status, page.Text(".flash.error"), want)
				}
				if mailsTo(app, "fresh@example.com") != 0 {
					t.Fatal("a throttled request was mailed")
				}
				if page := submitMailForm(trustProxy(app, t, "198.51.100.8"), form.path, "fresh@example.com", form.fields); page.Status != http.StatusOK {
					t.Fatalf("another IP: %d %q", page.Status, page.Text(".flash"))
				}
				app.Clock.Advance(accounts.MailWindow)
				if page := submitMailForm(c, form.path, "later@example.com", form.fields); page.Status != http.StatusOK {
					t.Fatalf("the IP an hour later: %d %q", page.Status, page.Text(".flash"))
				}
			})
		})
	}
}

// A workspace's day of new invitations, then a clear refusal on the Team
// page with the address kept in the form; a day after the first, the next
// goes out.
func TestTeamPageSaysWhenInvitationsAreThrottled(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL)
		owner := signUp(t, app, "owner@example.com")
		ctx := context.Background()
		user, ws := ownerOf(t, app, "owner@example.com")
		actor := teams.Actor{User: user, Role: models.RoleOwner}
		for i := range teams.InvitationsPerWorkspacePerDay - 1 {
			if _, _, err := app.Teams.Invite(ctx, ws, actor, fmt.Sprintf("guest%d@example.com", i), models.RoleViewer); err != nil {
				t.Fatal(err)
			}
		}
		app.Clock.Advance(time.Hour)
		invite(t, app, owner, "last@example.com", "editor") // the day's last

		page := owner.Submit(owner.Get("/settings/team"), "form.invite", map[string]string{"email": "late@example.com", "role": "admin"})
		want := fmt.Sprintf("This workspace has sent %d new invitations in the last 24 hours, the most allowed. Try again in 23 hours.", teams.InvitationsPerWorkspacePerDay)
		if page.Status != http.StatusTooManyRequests || page.Text(".flash.error") != want {
			t.Fatalf("past the limit: %d %q, want 429 %q", page.Status, page.Text(".flash.error"), want)
		}
		if v, _ := page.Doc.Find("form.invite input[name=email]").Attr("value"); v != "late@example.com" {
			t.Fatalf("the form lost the address: %q", v)
		}
		if !strings.Contains(page.Text("table.invitations"), "last@example.com") || strings.Contains(page.Text("table.invitations"), "late@example.com") {
			t.Fatalf("invitations listed: %s", page.Text("table.invitations"))
		}
		if mailsTo(app, "late@example.com") != 0 {
			t.Fatal("a refused invitation was mailed")
		}

		app.Clock.Advance(23 * time.Hour)
		invite(t, app, owner, "late@example.com", "admin")
	})
}

// An invitation resent its day's worth of times: the next Resend says so
// on the Team page, the invitation stays listed and its link keeps
// working; a day after the first resend it goes again.
func TestTeamPageSaysWhenResendsAreThrottled(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		app := testutil.StartApp(t, dbURL)
		owner := signUp(t, app, "owner@example.com")
		invite(t, app, owner, "bob@example.com", "editor")
		resend := func() *testutil.Page {
			return owner.Submit(owner.Get("/settings/team"), "table.invitations form[action$='/resend']", nil)
		}
		for i := range teams.ResendsPerInvitationPerDay {
			app.Clock.Advance(time.Hour)
			if page := resend(); !strings.Contains(page.Text(".flash"), "Invitation sent again to bob@example.com") {
				t.Fatalf("resend %d: %d %q", i+1, page.Status, page.Text(".flash"))
			}
		}
		link := strings.TrimPrefix(linkIn(t, app.Mails()[0].Text, "/invitations/"), app.Server.URL)

		page := resend()
		want := fmt.Sprintf("The invitation to bob@example.com has been resent %d times in the last 24 hours, the most allowed. Try again in 22 hours.", teams.ResendsPerInvitationPerDay)
		if page.Status != http.StatusTooManyRequests || page.Text(".flash.error") != want {
			t.Fatalf("past the limit: %d %q, want 429 %q", page.Status, page.Text(".flash.error"), want)
		}
		if !strings.Contains(page.Text("table.invitations"), "bob@example.com") {
			t.Fatal("the invitation is no longer listed")
		}
		if got := mailsTo(app, "bob@example.com"); got != 1+teams.ResendsPerInvitationPerDay {
			t.Fatalf("%d mails to bob, want the invitation and %d resends", got, teams.ResendsPerInvitationPerDay)
		}
		if p := app.NewClient(t).Get(link); p.Status != http.StatusOK {
			t.Fatalf("the last link sent, after a refused resend: %d", p.Status)
		}

		app.Clock.Advance(22 * time.Hour)
		if page := resend(); !strings.Contains(page.Text(".flash"), "Invitation sent again to bob@example.com") {
			t.Fatalf("a day after the first resend: %d %q", page.Status, page.Text(".flash"))
		}
	})
}

// ownerOf is a user and their personal workspace.
func ownerOf(t *testing.T, app *testutil.App, email string) (models.User, int64) {
	t.Helper()
	var u models.User
	if err := app.DB.Where("email = ?", email).Take(&u).Error; err != nil {
		t.Fatal(err)
	}
	ms, err := app.Accounts.Memberships(context.Background(), u.ID)
	if err != nil || len(ms) == 0 {
		t.Fatalf("memberships of %s: %v", email, err)
	}
	return u, ms[0].WorkspaceID
}
