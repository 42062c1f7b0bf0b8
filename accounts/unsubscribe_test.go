package accounts_test

import (
	"errors"
	"testing"
	"time"

	"keysmith/accounts"
	"keysmith/models"
	"keysmith/testutil"
)

// An unsubscribe link works for its lifetime, found by its token's hash,
// and is purged after.
func TestUnsubscribeLinksExpireAndArePurged(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		svc, clk, db := newServiceDB(t, dbURL)
		user := models.User{Email: "ada@example.com", PasswordHash: "x"}
		if err := db.Create(&user).Error; err != nil {
			t.Fatal(err)
		}
		issue := func(token string) {
			t.Helper()
			if err := db.Create(&models.UnsubscribeToken{UserID: user.ID, TokenHash: accounts.HashToken(token)}).Error; err != nil {
				t.Fatal(err)
			}
		}
		issue("old-link")
		clk.Advance(30 * 24 * time.Hour)
		issue("new-link")

		for _, token := range []string{"old-link", "new-link"} {
			if u, err := svc.UserByUnsubscribeToken(ctx, token); err != nil || u.ID != user.ID {
				t.Fatalf("%s: user %d, %v", token, u.ID, err)
			}
		}
		for _, token := range []string{"", "unknown", accounts.HashToken("old-link")} {
			if _, err := svc.UserByUnsubscribeToken(ctx, token); !errors.Is(err, accounts.ErrNotFound) {
				t.Fatalf("%q: %v, want ErrNotFound", token, err)
			}
		}

		clk.Advance(accounts.UnsubscribeLinkLifetime - 30*24*time.Hour) // the old link is a year old
		if _, err := svc.UserByUnsubscribeToken(ctx, "old-link"); !errors.Is(err, accounts.ErrNotFound) {
			t.Fatalf("a year-old link: %v, want ErrNotFound", err)
		}
		if err := svc.PurgeExpired(ctx); err != nil {
			t.Fatal(err)
		}
		var left []models.UnsubscribeToken
		db.Find(&left)
		if len(left) != 1 || left[0].TokenHash != accounts.HashToken("new-link") {
			t.Fatalf("after purge: %+v, want only the newer link", left)
		}
		if _, err := svc.UserByUnsubscribeToken(ctx, "new-link"); err != nil {
			t.Fatalf("the newer link after the purge: %v", err)
		}
	})
}
