package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"keysmith/clock"
	"keysmith/models"
	"keysmith/testutil"
)

// user reset-2fa turns two-step verification off for a locked-out user,
// audited in their workspace and mailed to them through the outbox.
func TestUserReset2FACommand(t *testing.T) {
	dir := t.TempDir()
	env := operatorEnv(dir)
	if code, _, stderr := runBinary(t, dir, env, "", "user", "create", "--email", "ada@example.com", "--password", "long enough pw"); code != 0 {
		t.Fatal(stderr)
	}
	db := testutil.OpenDB(t, filepath.Join(dir, "k.db"), clock.Real{})
	var user models.User
	db.Where("email = ?", "ada@example.com").Take(&user)
	now := time.Now().UTC()
	db.Create(&models.UserTOTP{UserID: user.ID, Secret: []byte("sealed"), ConfirmedAt: &now, CreatedAt: now})
	db.Create(&models.RecoveryCode{UserID: user.ID, CodeHash: "abc", CreatedAt: now})
	db.Create(&models.Passkey{UserID: user.ID, CredentialID: []byte("cred"), UserHandle: []byte("handle"), PublicKey: []byte("cose"), Name: "Laptop", CreatedAt: now})

	if code, _, stderr := runBinary(t, dir, env, "", "user", "reset-2fa", "--email", "nobody@example.com"); code == 0 || !strings.Contains(stderr, "no user nobody@example.com") {
		t.Fatalf("unknown user: %d %q", code, stderr)
	}
	code, out, stderr := runBinary(t, dir, env, "", "user", "reset-2fa", "--email", "Ada@example.com")
	if code != 0 || !strings.Contains(out, "two-step verification is off for ada@example.com") {
		t.Fatalf("reset-2fa: %d %q %q", code, out, stderr)
	}
	var factors, codes, passkeys int64
	db.Model(&models.UserTOTP{}).Count(&factors)
	db.Model(&models.RecoveryCode{}).Count(&codes)
	db.Model(&models.Passkey{}).Count(&passkeys)
	if factors != 0 || codes != 0 || passkeys != 0 {
		t.Fatalf("left %d authenticator apps, %d recovery codes and %d passkeys", factors, codes, passkeys)
	}
	var ev models.AuditEvent
	if err := db.Where("action = ?", "account.two_factor_reset").Take(&ev).Error; err != nil || ev.ActorUserID != nil || !strings.Contains(ev.ActorLabel, "reset-2fa") {
		t.Fatalf("audit event %+v: %v", ev, err)
	}
	var mail models.Delivery
	if err := db.Where("recipient = ?", "ada@example.com").Take(&mail).Error; err != nil || mail.Subject != "Two-step verification was reset for your Keysmith account" || mail.Status != "pending" {
		t.Fatalf("mail %+v: %v", mail, err)
	}
	var after models.User
	db.Take(&after, user.ID)
	if after.SessionEpoch != user.SessionEpoch+1 {
		t.Fatal("the reset did not end the user's sessions")
	}
	if code, _, stderr := runBinary(t, dir, env, "", "user", "reset-2fa", "--email", "ada@example.com"); code == 0 || !strings.Contains(stderr, "does not have two-step verification on") {
		t.Fatalf("second reset: %d %q", code, stderr)
	}

	// A user whose only second step is a passkey is helped alike.
	db.Create(&models.Passkey{UserID: user.ID, CredentialID: []byte("cred2"), UserHandle: []byte("handle"), PublicKey: []byte("cose"), Name: "Phone", CreatedAt: now})
	if code, _, stderr := runBinary(t, dir, env, "", "user", "reset-2fa", "--email", "ada@example.com"); code != 0 {
		t.Fatalf("reset of a passkey-only user: %d %q", code, stderr)
	}
	if db.Model(&models.Passkey{}).Count(&passkeys); passkeys != 0 {
		t.Fatalf("left %d passkeys", passkeys)
	}
}
