package handlers_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"keysmith/accounts"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
)

// seedKeys gives a fresh user's workspace n keys of every status, straight
// through gorm in batches (the create path is measured elsewhere), and
// returns a logged-in client.
func seedKeys(b *testing.B, app *testutil.App, n int) *testutil.Client {
	b.Helper()
	user, err := app.Accounts.SignUp(b.Context(), accounts.SignUpInput{Email: "bench@example.com", Name: "Bench", Password: "long enough pw"})
	if err != nil {
		b.Fatal(err)
	}
	ms, _ := app.Accounts.Memberships(b.Context(), user.ID)
	now := app.Clock.Now()
	batch := make([]models.APIKey, 0, n)
	for i := range n {
		secret := keys.Generate("ks", keys.Secret, keys.Live)
		created := now.Add(-time.Duration(n-i) * time.Hour)
		k := models.APIKey{
			WorkspaceID: ms[0].WorkspaceID, Name: fmt.Sprintf("service %05d", i), Kind: "sk", Environment: "live",
			Permission: "read", Scopes: "files:read projects:read", SecretHash: keys.Hash(secret), Hint: keys.Hint(secret),
			CreatedAt: created, UpdatedAt: created, CreatedByID: &user.ID,
		}
		switch i % 5 {
		case 1:
			exp := now.Add(time.Duration(i%14+1) * 24 * time.Hour)
			k.ExpiresAt = &exp
		case 2:
			exp := now.Add(-time.Hour)
			k.ExpiresAt = &exp
		case 3:
			k.RevokedAt = &created
		case 4:
			used := now.Add(-time.Duration(i%60) * 24 * time.Hour)
			k.LastUsedAt = &used
		}
		batch = append(batch, k)
	}
	if err := app.DB.CreateInBatches(batch, 500).Error; err != nil {
		b.Fatal(err)
	}
	c := app.NewClient(b)
	page := c.Submit(c.Get("/login"), "form[action='/login']", map[string]string{"email": "bench@example.com", "password": "long enough pw"})
	if page.URL.Path != "/settings/api-keys" {
		b.Fatalf("login ended at %s", page.URL)
	}
	return c
}

// BenchmarkKeyList measures Settings → API Keys over HTTP (session,
// queries and templates included) in a workspace of 25 keys and of 5,000.
func BenchmarkKeyList(b *testing.B) {
	for _, n := range []int{25, 5000} {
		app := testutil.StartApp(b, testutil.DatabaseURL(b, "sqlite"))
		c := seedKeys(b, app, n)
		for _, path := range []string{
			"/settings/api-keys",
			"/settings/api-keys?filter=unused",
			"/settings/api-keys?filter=expiring",
			"/settings/api-keys?page=120",
		} {
			b.Run(fmt.Sprintf("keys=%d/%s", n, path), func(b *testing.B) {
				for b.Loop() {
					req, _ := http.NewRequest(http.MethodGet, app.URL(path), nil)
					res, err := c.HTTP.Do(req)
					if err != nil || res.StatusCode != 200 {
						b.Fatalf("%s: %v %v", path, res.StatusCode, err)
					}
					res.Body.Close()
				}
			})
		}
	}
}
