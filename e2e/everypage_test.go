package e2e

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"keysmith/accounts"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/oauth"
	"keysmith/teams"
	"keysmith/testutil"
	"keysmith/webhooks"
)

// axeSource is axe-core 4.14.1 (npm pack axe-core@4.14.1, axe.min.js; MPL
// 2.0, see axe-LICENSE), kept in the repository so the test needs no
// network and runs the same rules everywhere.
//
//go:embed testdata/axe.min.js
var axeSource string

// axeRun runs WCAG 2.1 A and AA rules and returns the violations.
const axeRun = `axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}, resultTypes: ["violations"]})
	.then(r => JSON.stringify(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
		nodes: v.nodes.slice(0, 4).map(n => n.target.join(" ") + ": " + (n.failureSummary || "").replace(/\s+/g, " ").slice(0, 240))}))))`

type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// page is one page of the walk: where it is and what shows it has loaded.
type page struct{ name, path, ready string }

// TestEveryPage opens every page, logged out and logged in, at a laptop's
// width (1280 px) and a phone's (390 px, then 360 px), and for each:
// saves a screenshot, runs axe-core, failing on a serious or critical
// violation, and fails if the page scrolls sideways on the phone.
func TestEveryPage(t *testing.T) {
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	ctx := t.Context()
	u, err := app.Accounts.SignUp(ctx, accounts.SignUpInput{Email: "wanda@example.com", Name: "Wanda Walker", Password: ownerPassword})
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := app.Accounts.Memberships(ctx, u.ID)
	ws := ms[0].WorkspaceID
	actor := app.Keys.UserActor(u, models.RoleOwner, "", "")
	mate, _ := app.Accounts.SignUp(ctx, accounts.SignUpInput{Email: "max.mustermann-longname@example.com", Name: "Maximilian Mustermann", Password: ownerPassword})
	app.DB.Create(&models.Membership{WorkspaceID: ws, UserID: mate.ID, Role: models.RoleEditor})
	if mms, _ := app.Accounts.Memberships(ctx, mate.ID); len(mms) > 0 { // Wanda has two workspaces: the header shows a switcher
		app.DB.Create(&models.Membership{WorkspaceID: mms[0].WorkspaceID, UserID: u.ID, Role: models.RoleViewer})
	}
	mk := func(name string, env keys.Env, expires string) keys.Created {
		k, err := app.Keys.Create(ctx, ws, actor, keys.CreateInput{Name: name, Description: "used by " + name, Kind: keys.Secret, Env: env, Permission: keys.PermRead, ExpiresIn: expires})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	live := mk("billing-worker-production", keys.Live, "90")
	ci := mk("ci", keys.Test, "7")
	madeEarlier(t, app, ci.Key, 24*time.Hour) // its 7-day reminder is due: the delivery log has a row
	old := mk("deploy-bot", keys.Live, "30")
	if _, err := app.Keys.Rotate(ctx, ws, actor, old.Key.ID, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	gone := mk("old-script", keys.Test, "never")
	if _, err := app.Keys.Revoke(ctx, ws, actor, gone.Key.ID); err != nil {
		t.Fatal(err)
	}
	tactor := teams.Actor{User: u, Role: models.RoleOwner}
	_, invToken, err := app.Teams.Invite(ctx, ws, tactor, "ivy@example.com", models.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	hook, err := app.Webhooks.Create(ctx, ws, actor, webhooks.EndpointInput{URL: "https://hooks.example.com/keysmith/events", Description: "Alerts", Events: []string{"key.revoked"}, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := app.OAuth.Register(ctx, ws, actor, oauth.AppInput{Name: "Acme Sync", RedirectURIs: []string{"https://acme.example/callback"}, Scopes: []string{"keys:read"}})
	if err != nil {
		t.Fatal(err)
	}

	if err := app.Reminders.Run(ctx); err != nil {
		t.Fatal(err)
	}

	loggedOut := []page{
		{"login", "/login", "#email"},
		{"signup", "/signup", "#email"},
		{"forgot-password", "/forgot-password", "#email"},
		{"reset-password-invalid", "/reset-password?token=nope", "main"},
		{"invitation", "/invitations/" + invToken, "main"},
	}
	loggedIn := []page{
		{"keys", "/settings/api-keys", "table.keys"},
		{"keys-revoked", "/settings/api-keys?filter=revoked", "table.keys"},
		{"key-new", "/settings/api-keys/new", "form.key-form"},
		{"key", fmt.Sprintf("/settings/api-keys/%d", live.Key.ID), "dl.facts"},
		{"key-rotated", fmt.Sprintf("/settings/api-keys/%d", old.Key.ID), "dl.facts"},
		{"key-revoked", fmt.Sprintf("/settings/api-keys/%d", gone.Key.ID), "dl.facts"},
		{"api-reference", "/settings/api-reference", "main h1"},
		{"team", "/settings/team", "table.members"},
		{"workspace", "/settings/workspace", "main h1"},
		{"notifications", "/settings/notifications", "table.deliveries"},
		{"audit-log", "/settings/audit-log", "table.audit"},
		{"account", "/settings/account", "main h1"},
		{"security", "/settings/security", "main h1"},
		{"oauth-apps", "/settings/oauth-apps", "main h1"},
		{"oauth-app-new", "/settings/oauth-apps/new", "main h1"},
		{"oauth-app", fmt.Sprintf("/settings/oauth-apps/%d", reg.App.ID), "main h1"},
		{"authorized-apps", "/settings/authorized-apps", "main h1"},
		{"webhooks", "/settings/webhooks", "main h1"},
		{"webhook-new", "/settings/webhooks/new", "main h1"},
		{"webhook", fmt.Sprintf("/settings/webhooks/%d", hook.Endpoint.ID), "main h1"},
		{"dev-mailbox", "/dev/mailbox", "main"},
		{"not-found", "/settings/nothing", "main h1"},
	}

	var problems []string
	var b *tab
	visit := func(p page) {
		for _, width := range []int64{1280, 390} {
			b.do("open "+p.name, chromedp.EmulateViewport(width, 860), chromedp.Navigate(app.URL(p.path)), chromedp.WaitVisible(p.ready))
			b.shot(fmt.Sprintf("%s-%d", p.name, width))
			for _, v := range b.axe() {
				line := fmt.Sprintf("%s at %d px: axe %s (%s): %s\n\t%s", p.path, width, v.ID, v.Impact, v.Help, strings.Join(v.Nodes, "\n\t"))
				if v.Impact == "serious" || v.Impact == "critical" {
					problems = append(problems, line)
				} else {
					t.Log(line)
				}
			}
			if width == 1280 {
				continue
			}
			for _, w := range []int64{390, 360} {
				b.do("narrow", chromedp.EmulateViewport(w, 860))
				sw, err := chromedp.Run(b.ctx, chromedp.Evaluate[int64](`document.scrollingElement.scrollWidth`))
				if err != nil || sw > w {
					wide, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`[...document.querySelectorAll("main *")].filter(e => e.getBoundingClientRect().right > innerWidth + 1).slice(0, 5).map(e => e.tagName.toLowerCase() + (e.className ? "." + String(e.className).split(" ").join(".") : "")).join(", ")`))
					problems = append(problems, fmt.Sprintf("%s at %d px: the page is %d px wide (%v); wider: %s", p.path, w, sw, err, wide))
				}
			}
		}
	}
	// A browser for every few pages: each has 90 seconds, and a run with
	// -race on a busy machine is slow.
	b = newTab(t)
	for _, p := range loggedOut {
		visit(p)
	}
	for len(loggedIn) > 0 {
		n := min(6, len(loggedIn))
		b = newTab(t)
		b.do("log in", chromedp.EmulateViewport(1280, 860), chromedp.Navigate(app.URL("/login")), chromedp.WaitVisible(`#email`),
			chromedp.SendKeys(`#email`, "wanda@example.com"), chromedp.SendKeys(`#password`, ownerPassword),
			chromedp.Click(`button[type=submit]`), chromedp.WaitVisible(`#workspace-switch`))
		if _, err := chromedp.Run(b.ctx, chromedp.Evaluate[any](fmt.Sprintf(`(s => { s.value = "%d"; s.form.requestSubmit() })(document.getElementById("workspace-switch"))`, ws))); err != nil {
			t.Fatal(err)
		}
		b.do("her own workspace", chromedp.WaitVisible(`table.keys`))
		for _, p := range loggedIn[:n] {
			visit(p)
		}
		loggedIn = loggedIn[n:]
	}
	if len(problems) > 0 {
		t.Errorf("%d problems:\n%s", len(problems), strings.Join(problems, "\n"))
	}
}

// accessible fails the test on axe's serious and critical findings on the
// current page (where names it), and logs the others.
func (b *tab) accessible(where string) {
	b.t.Helper()
	for _, v := range b.axe() {
		line := fmt.Sprintf("%s: axe %s (%s): %s\n\t%s", where, v.ID, v.Impact, v.Help, strings.Join(v.Nodes, "\n\t"))
		if v.Impact == "serious" || v.Impact == "critical" {
			b.t.Error(line)
		} else {
			b.t.Log(line)
		}
	}
}

// axe runs axe-core on the current page.
func (b *tab) axe() []axeViolation {
	b.t.Helper()
	out, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](axeSource+";\n"+axeRun, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("axe: %v", err)
	}
	var vs []axeViolation
	if err := json.Unmarshal([]byte(out), &vs); err != nil {
		b.t.Fatalf("axe's answer: %v", err)
	}
	return vs
}
