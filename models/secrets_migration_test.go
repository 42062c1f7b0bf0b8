package models_test

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"

	"keysmith/clock"
	"keysmith/models"
	"keysmith/testutil"
)

// A database from before migration 6 holds a live session under its raw
// token and a plain unsubscribe token. After the upgrade neither opens
// anything, and the rows are gone; the same session data stored the new
// way (under the token's SHA-256) does log in, so it was not the data that
// failed.
func TestMigration6EndsSecretsStoredAsTheyAre(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		db, err := models.Open(dbURL, clock.NewFake(testutil.Epoch))
		if err != nil {
			t.Fatal(err)
		}
		if err := models.MigrateTo(db, 5); err != nil {
			t.Fatal(err)
		}
		user := models.User{Email: "ada@example.com", Name: "Ada", PasswordHash: "x"}
		ws := models.Workspace{Name: "Ada's workspace", Personal: true}
		for _, row := range []any{&user, &ws} {
			if err := db.Create(row).Error; err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Create(&models.Membership{WorkspaceID: ws.ID, UserID: user.ID, Role: models.RoleOwner}).Error; err != nil {
			t.Fatal(err)
		}
		const unsubscribe = "OLDPLAINUNSUBSCRIBETOKEN"
		if err := db.Exec("UPDATE users SET unsubscribe_token = ? WHERE id = ?", unsubscribe, user.ID).Error; err != nil {
			t.Fatal(err)
		}
		// A logged-in session as scs stored it before: keyed by the cookie's token.
		const token = "rawSessionTokenOfFortyThreeCharactersXXXXXX"
		expiry := time.Now().Add(time.Hour) // scs and its store use the wall clock
		data, err := scs.GobCodec{}.Encode(expiry, map[string]any{"user_id": user.ID, "epoch": 0})
		if err != nil {
			t.Fatal(err)
		}
		insert := "INSERT INTO sessions (token, data, expiry) VALUES (?, ?, ?)"
		if err := db.Exec(insert, token, data, expiry).Error; err != nil {
			t.Fatal(err)
		}
		models.Close(db)

		app := testutil.StartApp(t, dbURL) // migrates to the current version
		withCookie := func(value string) *testutil.Client {
			c := app.NewClient(t)
			u, _ := url.Parse(app.Server.URL)
			c.HTTP.Jar.SetCookies(u, []*http.Cookie{{Name: "keysmith_session", Value: value}})
			return c
		}
		if page := withCookie(token).Get("/settings/api-keys"); page.URL.Path != "/login" {
			t.Fatalf("the session stored under its raw token still opens %s", page.URL)
		}
		var n int64
		app.DB.Table("sessions").Where("token = ?", token).Count(&n)
		if n != 0 {
			t.Error("the row stored under a raw token is still there")
		}
		if page := withCookie("").Get("/unsubscribe/" + unsubscribe); page.Status != http.StatusNotFound {
			t.Errorf("the plain unsubscribe token still works: %d", page.Status)
		}
		if app.DB.Migrator().HasColumn("users", "unsubscribe_token") {
			t.Error("users.unsubscribe_token is still there")
		}

		sum := sha256.Sum256([]byte(token))
		if err := app.DB.Exec(insert, base64.RawURLEncoding.EncodeToString(sum[:]), data, expiry).Error; err != nil {
			t.Fatal(err)
		}
		if page := withCookie(token).Get("/settings/api-keys"); page.URL.Path != "/settings/api-keys" {
			t.Fatalf("the same session stored under its token's hash ended at %s", page.URL)
		}
	})
}
