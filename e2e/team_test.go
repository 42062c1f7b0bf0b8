package e2e

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"keysmith/accounts"
	"keysmith/testutil"
)

func TestInviteJoinPromoteAndCreateAnAdminKey(t *testing.T) {
	owner := newTab(t)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	if _, err := app.Accounts.SignUp(t.Context(), accounts.SignUpInput{Email: "olga@example.com", Name: "Olga", Password: "a long enough password"}); err != nil {
		t.Fatal(err)
	}
	owner.do("owner logs in",
		chromedp.Navigate(app.URL("/login?next=/settings/team")),
		chromedp.WaitVisible(`#email`),
		chromedp.SendKeys(`#email`, "olga@example.com"),
		chromedp.SendKeys(`#password`, "a long enough password"),
		chromedp.Click(`button[type=submit]`),
		chromedp.WaitVisible(`form.invite`),
	)
	owner.do("invite Ivan as a viewer",
		chromedp.SendKeys(`form.invite #email`, "ivan@example.com"),
		chromedp.SetValue(`#invite-role`, "viewer"),
		chromedp.Click(`form.invite button[type=submit]`),
		chromedp.WaitVisible(`table.invitations`),
	)
	owner.shot("01-invited")

	// Ivan reads the mail in the dev mailbox, in his own browser.
	ivan := newTab(t)
	link := ivan.mailedLink(app, "/invitations/")
	ivan.do("follow the link", chromedp.Navigate(link), chromedp.WaitVisible(`main a.btn`))
	ivan.shot("02-invitation")
	ivan.do("sign up from it",
		chromedp.Click(`main a.btn`),
		chromedp.WaitVisible(`#name`),
		chromedp.SendKeys(`#name`, "Ivan"),
		chromedp.SendKeys(`#password`, "another long password"),
		chromedp.Click(`button[type=submit]`),
		chromedp.WaitVisible(`.flash.info`),
	)
	// Confirming the address joins the workspace: no "Join" click, no
	// personal workspace of his own.
	ivan.do("confirm the address from the mailed link",
		chromedp.Navigate(ivan.mailedLink(app, "/signup/confirm?token=")),
		chromedp.WaitVisible(`form[action="/signup/confirm"] button`),
		chromedp.Click(`form[action="/signup/confirm"] button`),
		chromedp.WaitVisible(`nav.sidenav`),
	)
	if got := ivan.text(`.flash.success`); !strings.Contains(got, "You joined Olga's workspace as viewer") {
		t.Fatalf("join flash %q", got)
	}
	if n, _ := chromedp.Run(ivan.ctx, chromedp.Evaluate[int](`document.querySelectorAll("#workspace-switch").length`)); n != 0 {
		t.Fatal("Ivan has a second (personal) workspace")
	}
	if got := ivan.text(`main`); strings.Contains(got, "Create API key") {
		t.Fatal("a viewer is offered key creation")
	}
	ivan.shot("03-joined-as-viewer")

	owner.do("make Ivan an admin",
		chromedp.Navigate(app.URL("/settings/team")),
		chromedp.WaitVisible(`table.members`),
		chromedp.SetValue(`//tr[contains(., "ivan@example.com")]//select`, "admin"),
		chromedp.Click(`//tr[contains(., "ivan@example.com")]//button[normalize-space()="Change"]`),
		chromedp.WaitVisible(`.flash.success`),
	)
	owner.shot("04-promoted")

	ivan.do("create an admin-permission key",
		chromedp.Navigate(app.URL("/settings/api-keys/new")),
		chromedp.WaitVisible(`form.key-form`),
		chromedp.SendKeys(`#name`, "ivan-admin"),
		chromedp.Click(`input[name=permission][value=admin]`),
		chromedp.Click(`form.key-form button[type=submit]`),
		chromedp.WaitVisible(`#secret`),
	)
	if got := ivan.text(`main .page-head p`); !strings.Contains(got, "Admin") {
		t.Fatalf("created key: %q", got)
	}
	ivan.shot("05-admin-key")

	owner.do("audit log answers who did what",
		chromedp.Navigate(app.URL("/settings/audit-log")),
		chromedp.WaitVisible(`table.audit`),
	)
	log := owner.text(`table.audit tbody`)
	for _, want := range []string{"member.invited", "member.joined", "member.role_changed", "key.created", "ivan@example.com"} {
		if !strings.Contains(log, want) {
			t.Errorf("audit log lacks %q:\n%s", want, log)
		}
	}
	owner.shot("06-audit-log")
}
