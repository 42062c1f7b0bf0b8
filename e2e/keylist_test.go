package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"keysmith/accounts"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
)

// TestBigKeyList pages a workspace with more expired keys than the tabs
// count: the Expired tab says "1,000+", and Older and Newer walk it by
// cursor, the page number following along.
func TestBigKeyList(t *testing.T) {
	b := newTab(t)
	app := testutil.StartApp(t, testutil.DatabaseURL(t, "sqlite"))
	u, err := app.Accounts.SignUp(t.Context(), accounts.SignUpInput{Email: "bo@example.com", Name: "Bo", Password: "a long enough password"})
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := app.Accounts.Memberships(t.Context(), u.ID)
	ws, now := ms[0].WorkspaceID, app.Clock.Now()
	expired := now.Add(-time.Hour)
	batch := make([]models.APIKey, 0, keys.CountCap+60)
	for i := range keys.CountCap + 60 {
		at := now.Add(-time.Duration(keys.CountCap+60-i) * time.Minute)
		batch = append(batch, models.APIKey{
			WorkspaceID: ws, Name: fmt.Sprintf("device %04d", i), Kind: "sk", Environment: "live", Permission: "read",
			Scopes: "files:read", SecretHash: fmt.Sprintf("imported-%d", i), Hint: "ks_sk_live_…0000", ExpiresAt: &expired,
			CreatedAt: at, UpdatedAt: at, CreatedByID: &u.ID,
		})
	}
	if err := app.DB.CreateInBatches(batch, 500).Error; err != nil {
		t.Fatal(err)
	}
	if err := app.Keys.Recount(t.Context(), ws); err != nil { // written around the service, as an import would be
		t.Fatal(err)
	}

	b.do("log in",
		chromedp.Navigate(app.URL("/login")),
		chromedp.SendKeys(`#email`, "bo@example.com"),
		chromedp.SendKeys(`#password`, "a long enough password"),
		chromedp.Click(`button[type=submit]`),
		chromedp.WaitVisible(`table.keys`),
	)
	if got := b.text(`.tabs a[href="/settings/api-keys?filter=expired"] .count`); got != "1,000+" {
		t.Fatalf("Expired tab count %q", got)
	}
	if got := b.text(`.tabs a[href="/settings/api-keys"] .count`); got != "1,060" {
		t.Fatalf("All tab count %q", got)
	}
	b.do("expired tab", chromedp.Click(`.tabs a[href="/settings/api-keys?filter=expired"]`), chromedp.WaitVisible(`.pager`))
	if got := b.text(`.pager`); !strings.Contains(got, "Page 1 · 1,000+ keys") {
		t.Fatalf("pager %q", got)
	}
	b.do("older", chromedp.Click(`.pager a[rel=next]`), chromedp.WaitVisible(`.pager a[rel=prev]`))
	b.do("older again", chromedp.Click(`.pager a[rel=next]`), chromedp.WaitVisible(`.pager a[rel=prev]`))
	if got := b.text(`.pager`); !strings.Contains(got, "Page 3 · 1,000+ keys") {
		t.Fatalf("pager on page 3 %q", got)
	}
	if got := b.text(`table.keys tbody tr:first-child strong`); got != "device 1009" {
		t.Fatalf("page 3 starts at %q, want device 1009", got)
	}
	b.shot("keylist-01-expired-page-3")
	b.do("newer", chromedp.Click(`.pager a[rel=prev]`), chromedp.WaitVisible(`.pager`))
	if got := b.text(`table.keys tbody tr:first-child strong`); got != "device 1034" || !strings.Contains(b.text(`.pager`), "Page 2 ·") {
		t.Fatalf("back on page 2: first %q, pager %q", got, b.text(`.pager`))
	}
}
