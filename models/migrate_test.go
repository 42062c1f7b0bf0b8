package models_test

import (
	"strings"
	"testing"

	"keysmith/clock"
	"keysmith/models"
	"keysmith/testutil"
)

func TestMigrateIsIdempotentAndGuardsTheVersion(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		db, err := models.Open(dbURL, clock.NewFake(testutil.Epoch))
		if err != nil {
			t.Fatal(err)
		}
		defer models.Close(db)

		applied, err := models.Migrate(db)
		if err != nil || applied != models.SchemaVersion() {
			t.Fatalf("first run applied %d, err %v; want %d", applied, err, models.SchemaVersion())
		}
		if applied, err := models.Migrate(db); err != nil || applied != 0 {
			t.Fatalf("second run applied %d, err %v; want 0", applied, err)
		}
		for _, table := range []string{"users", "workspaces", "memberships", "password_resets", "login_attempts", "sessions", "api_keys", "audit_events", "deliveries", "invitations"} {
			if !db.Migrator().HasTable(table) {
				t.Errorf("table %s missing", table)
			}
		}
		if err := db.Exec("UPDATE schema_version SET version = ?", models.SchemaVersion()+1).Error; err != nil {
			t.Fatal(err)
		}
		if _, err := models.Migrate(db); err == nil || !strings.Contains(err.Error(), "newer keysmith") {
			t.Fatalf("a database from a newer binary: %v", err)
		}
	})
}

func TestSchemaEnforcesIntegrity(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		db, err := models.Open(dbURL, clock.NewFake(testutil.Epoch))
		if err != nil {
			t.Fatal(err)
		}
		defer models.Close(db)
		if _, err := models.Migrate(db); err != nil {
			t.Fatal(err)
		}
		if err := db.Create(&models.Membership{WorkspaceID: 404, UserID: 404, Role: models.RoleOwner}).Error; err == nil {
			t.Error("a membership of a missing user and workspace was stored: foreign keys are off")
		}
		user := models.User{Email: "a@example.com", PasswordHash: "x"}
		ws := models.Workspace{Name: "W"}
		if err := db.Create(&user).Error; err != nil {
			t.Fatal(err)
		}
		if err := db.Create(&ws).Error; err != nil {
			t.Fatal(err)
		}
		if err := db.Create(&models.Membership{WorkspaceID: ws.ID, UserID: user.ID, Role: "superuser"}).Error; err == nil {
			t.Error("a role outside the four was stored")
		}
		if err := db.Create(&models.User{Email: "a@example.com", PasswordHash: "y"}).Error; err == nil {
			t.Error("a second user with the same email was stored")
		}
		if !user.CreatedAt.Equal(testutil.Epoch) {
			t.Errorf("created_at = %s, want the injected clock's %s", user.CreatedAt, testutil.Epoch)
		}
	})
}
