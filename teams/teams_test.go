package teams_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"gorm.io/gorm"

	"keysmith/accounts"
	"keysmith/clock"
	"keysmith/models"
	"keysmith/teams"
	"keysmith/testutil"
	"keysmith/validate"
)

var ctx = context.Background()

type fixture struct {
	db    *gorm.DB
	clk   *clock.Fake
	svc   *teams.Service
	acc   *accounts.Service
	ws    int64
	users map[models.Role]teams.Actor
}

// setup makes a workspace with one member of each role.
func setup(t *testing.T, dbURL string) *fixture {
	t.Helper()
	clk := clock.NewFake(testutil.Epoch)
	db := testutil.OpenDB(t, dbURL, clk)
	f := &fixture{db: db, clk: clk, svc: teams.New(db, clk, 90*24*time.Hour), acc: accounts.New(db, clk, 4), users: map[models.Role]teams.Actor{}}
	for _, role := range models.Roles {
		u, err := f.acc.SignUp(ctx, accounts.SignUpInput{Email: string(role) + "@example.com", Password: "long enough pw"})
		if err != nil {
			t.Fatal(err)
		}
		if role == models.RoleOwner {
			ms, _ := f.acc.Memberships(ctx, u.ID)
			f.ws = ms[0].WorkspaceID
		} else if err := db.Create(&models.Membership{WorkspaceID: f.ws, UserID: u.ID, Role: role}).Error; err != nil {
			t.Fatal(err)
		}
		f.users[role] = teams.Actor{User: u, Role: role, IP: "192.0.2.9"}
	}
	return f
}

func (f *fixture) newUser(t *testing.T, email string) models.User {
	t.Helper()
	u, err := f.acc.SignUp(ctx, accounts.SignUpInput{Email: email, Password: "long enough pw"})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (f *fixture) role(t *testing.T, userID int64) models.Role {
	t.Helper()
	var m models.Membership
	if err := f.db.Where("workspace_id = ? AND user_id = ?", f.ws, userID).Take(&m).Error; err != nil {
		return ""
	}
	return m.Role
}

func TestWhoMayDoWhat(t *testing.T) {
	cases := []struct {
		action  string
		allowed map[models.Role]bool
		do      func(f *fixture, a teams.Actor) error
	}{
		{"invite", map[models.Role]bool{models.RoleOwner: true, models.RoleAdmin: true}, func(f *fixture, a teams.Actor) error {
			_, _, err := f.svc.Invite(ctx, f.ws, a, "new@example.com", models.RoleEditor)
			return err
		}},
		{"make the viewer an editor", map[models.Role]bool{models.RoleOwner: true, models.RoleAdmin: true}, func(f *fixture, a teams.Actor) error {
			return f.svc.ChangeRole(ctx, f.ws, a, f.users[models.RoleViewer].User.ID, models.RoleEditor)
		}},
		{"make the editor an owner", map[models.Role]bool{models.RoleOwner: true}, func(f *fixture, a teams.Actor) error {
			return f.svc.ChangeRole(ctx, f.ws, a, f.users[models.RoleEditor].User.ID, models.RoleOwner)
		}},
		{"remove the viewer", map[models.Role]bool{models.RoleOwner: true, models.RoleAdmin: true}, func(f *fixture, a teams.Actor) error {
			_, err := f.svc.Remove(ctx, f.ws, a, f.users[models.RoleViewer].User.ID)
			return err
		}},
		{"transfer ownership to the admin", map[models.Role]bool{models.RoleOwner: true}, func(f *fixture, a teams.Actor) error {
			return f.svc.TransferOwnership(ctx, f.ws, a, f.users[models.RoleAdmin].User.ID)
		}},
		{"rename the workspace", map[models.Role]bool{models.RoleOwner: true, models.RoleAdmin: true}, func(f *fixture, a teams.Actor) error {
			return f.svc.Rename(ctx, f.ws, a, "Renamed")
		}},
		{"set the key policy", map[models.Role]bool{models.RoleOwner: true, models.RoleAdmin: true}, func(f *fixture, a teams.Actor) error {
			d := 30
			return f.svc.SetKeyPolicy(ctx, f.ws, a, &d, nil)
		}},
	}
	for _, tc := range cases {
		for _, role := range models.Roles {
			t.Run(tc.action+"/as "+string(role), func(t *testing.T) {
				f := setup(t, testutil.DatabaseURL(t, "sqlite"))
				err := tc.do(f, f.users[role])
				var fe *teams.ForbiddenError
				switch {
				case tc.allowed[role] && err != nil:
					t.Fatalf("refused: %v", err)
				case !tc.allowed[role] && !errors.As(err, &fe):
					t.Fatalf("allowed (err %v), want forbidden", err)
				}
				var events int64
				f.db.Model(&models.AuditEvent{}).Count(&events)
				if tc.allowed[role] && events != 1 || !tc.allowed[role] && events != 0 {
					t.Fatalf("%d audit events", events)
				}
			})
		}
	}
}

func TestAdminCannotTouchOwners(t *testing.T) {
	f := setup(t, testutil.DatabaseURL(t, "sqlite"))
	admin, owner := f.users[models.RoleAdmin], f.users[models.RoleOwner]
	var fe *teams.ForbiddenError
	if err := f.svc.ChangeRole(ctx, f.ws, admin, owner.User.ID, models.RoleViewer); !errors.As(err, &fe) {
		t.Fatalf("admin demoting the owner: %v", err)
	}
	if _, err := f.svc.Remove(ctx, f.ws, admin, owner.User.ID); !errors.As(err, &fe) {
		t.Fatalf("admin removing the owner: %v", err)
	}
}

func TestLastOwner(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := setup(t, dbURL)
		owner := f.users[models.RoleOwner]
		if err := f.svc.Leave(ctx, f.ws, owner); !errors.Is(err, teams.ErrLastOwner) {
			t.Fatalf("last owner leaving: %v", err)
		}
		if err := f.svc.ChangeRole(ctx, f.ws, owner, owner.User.ID, models.RoleAdmin); !errors.Is(err, teams.ErrLastOwner) {
			t.Fatalf("last owner demoting themselves: %v", err)
		}
		// With a second owner, the first may go.
		if err := f.svc.ChangeRole(ctx, f.ws, owner, f.users[models.RoleAdmin].User.ID, models.RoleOwner); err != nil {
			t.Fatal(err)
		}
		if err := f.svc.Leave(ctx, f.ws, owner); err != nil {
			t.Fatalf("an owner leaving another owner behind: %v", err)
		}
		if f.role(t, owner.User.ID) != "" {
			t.Fatal("still a member after leaving")
		}
		other := teams.Actor{User: f.users[models.RoleAdmin].User, Role: models.RoleOwner}
		if _, err := f.svc.Remove(ctx, f.ws, other, f.users[models.RoleEditor].User.ID); err != nil {
			t.Fatal(err)
		}
		if err := f.svc.Leave(ctx, f.ws, other); !errors.Is(err, teams.ErrLastOwner) {
			t.Fatalf("the new last owner leaving: %v", err)
		}
	})
}

func TestChangesNobodyMadeByHandKeepTheRulesAndAreAudited(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := setup(t, dbURL)
		owner, viewer := f.users[models.RoleOwner], f.users[models.RoleViewer]
		self := teams.Actor{User: viewer.User} // no role: no permission is checked
		if err := f.db.Transaction(func(tx *gorm.DB) error {
			return teams.SetRoleTx(tx, f.ws, self, viewer.User.ID, models.RoleAdmin, " (single sign-on)")
		}); err != nil || f.role(t, viewer.User.ID) != models.RoleAdmin {
			t.Fatalf("SetRoleTx: %v, %s", err, f.role(t, viewer.User.ID))
		}
		var ev models.AuditEvent
		f.db.Where("action = ?", teams.ActionRoleChanged).Take(&ev)
		if ev.Detail != "viewer → admin (single sign-on)" || ev.KeyLabel != viewer.User.Email || *ev.ActorUserID != viewer.User.ID {
			t.Errorf("audit event %+v", ev)
		}
		if err := f.db.Transaction(func(tx *gorm.DB) error {
			return teams.SetRoleTx(tx, f.ws, owner, owner.User.ID, models.RoleEditor, "")
		}); !errors.Is(err, teams.ErrLastOwner) {
			t.Errorf("SetRoleTx demoted the last owner: %v", err)
		}
		if err := f.db.Transaction(func(tx *gorm.DB) error {
			_, err := teams.RemoveTx(tx, f.ws, owner, owner.User.ID, "")
			return err
		}); !errors.Is(err, teams.ErrLastOwner) || f.role(t, owner.User.ID) != models.RoleOwner {
			t.Errorf("RemoveTx removed the last owner: %v", err)
		}
		newcomer := f.newUser(t, "new@example.com")
		if err := f.db.Transaction(func(tx *gorm.DB) error {
			if err := teams.JoinTx(tx, f.ws, teams.Actor{User: newcomer}, newcomer, models.RoleEditor, " (single sign-on)"); err != nil {
				return err
			}
			_, err := teams.RemoveTx(tx, f.ws, self, viewer.User.ID, "; the org claim no longer names this workspace")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if f.role(t, newcomer.ID) != models.RoleEditor || f.role(t, viewer.User.ID) != "" {
			t.Errorf("after JoinTx and RemoveTx: newcomer %q, viewer %q", f.role(t, newcomer.ID), f.role(t, viewer.User.ID))
		}
		for action, detail := range map[string]string{
			teams.ActionJoined:  "as editor (single sign-on)",
			teams.ActionRemoved: "was admin; 0 of their keys keep working; the org claim no longer names this workspace",
		} {
			var n int64
			if f.db.Model(&models.AuditEvent{}).Where("action = ? AND detail = ?", action, detail).Count(&n); n != 1 {
				t.Errorf("%d %s events %q", n, action, detail)
			}
		}
	})
}

func TestTransferOwnership(t *testing.T) {
	f := setup(t, testutil.DatabaseURL(t, "sqlite"))
	owner, editor := f.users[models.RoleOwner], f.users[models.RoleEditor]
	if err := f.svc.TransferOwnership(ctx, f.ws, owner, editor.User.ID); err != nil {
		t.Fatal(err)
	}
	if f.role(t, editor.User.ID) != models.RoleOwner || f.role(t, owner.User.ID) != models.RoleAdmin {
		t.Fatalf("after transfer: editor %s, owner %s", f.role(t, editor.User.ID), f.role(t, owner.User.ID))
	}
	var ev models.AuditEvent
	f.db.Where("action = ?", teams.ActionOwnerMoved).Take(&ev)
	if ev.KeyLabel != "editor@example.com" || ev.ActorLabel != "owner@example.com" {
		t.Fatalf("audit %+v", ev)
	}
}

func TestInvitationLifecycle(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := setup(t, dbURL)
		admin := f.users[models.RoleAdmin]
		var ve validate.Errors
		if _, _, err := f.svc.Invite(ctx, f.ws, admin, "not an email", models.RoleEditor); !errors.As(err, &ve) {
			t.Fatalf("bad email: %v", err)
		}
		if _, _, err := f.svc.Invite(ctx, f.ws, admin, "x@example.com", models.RoleOwner); !errors.As(err, &ve) {
			t.Fatalf("inviting an owner: %v", err)
		}
		if _, _, err := f.svc.Invite(ctx, f.ws, admin, "Viewer@Example.com", models.RoleEditor); !errors.Is(err, teams.ErrAlreadyMember) {
			t.Fatalf("inviting a member: %v", err)
		}
		inv, token, err := f.svc.Invite(ctx, f.ws, admin, "Grace@Example.com", models.RoleEditor)
		if err != nil {
			t.Fatal(err)
		}
		if inv.TokenHash == token || inv.Email != "grace@example.com" {
			t.Fatalf("stored %+v", inv)
		}
		if _, _, err := f.svc.Invite(ctx, f.ws, admin, "grace@example.com", models.RoleViewer); !errors.Is(err, teams.ErrAlreadyInvited) {
			t.Fatalf("a second open invitation: %v", err)
		}
		mallory := f.newUser(t, "mallory@example.com")
		if _, err := f.svc.Accept(ctx, token, mallory, "", ""); !errors.Is(err, teams.ErrWrongAccount) {
			t.Fatalf("accepted by another account: %v", err)
		}
		grace := f.newUser(t, "grace@example.com")
		if _, err := f.svc.Accept(ctx, token, grace, "", ""); err != nil {
			t.Fatal(err)
		}
		if f.role(t, grace.ID) != models.RoleEditor {
			t.Fatalf("grace's role %q", f.role(t, grace.ID))
		}
		if _, err := f.svc.Accept(ctx, token, grace, "", ""); !errors.Is(err, teams.ErrInvitationInvalid) {
			t.Fatalf("reused: %v", err)
		}

		// Expiry, and a resend that revives with a new link.
		inv2, old, err := f.svc.Invite(ctx, f.ws, admin, "late@example.com", models.RoleViewer)
		if err != nil {
			t.Fatal(err)
		}
		f.clk.Advance(teams.InvitationLifetime)
		if _, err := f.svc.Invitation(ctx, old); !errors.Is(err, teams.ErrInvitationInvalid) {
			t.Fatalf("expired invitation: %v", err)
		}
		_, fresh, err := f.svc.Resend(ctx, f.ws, admin, inv2.ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Invitation(ctx, old); !errors.Is(err, teams.ErrInvitationInvalid) {
			t.Fatal("the old link works after a resend")
		}
		late := f.newUser(t, "late@example.com")
		if _, err := f.svc.Accept(ctx, fresh, late, "", ""); err != nil {
			t.Fatalf("resent link: %v", err)
		}

		inv3, cancelled, _ := f.svc.Invite(ctx, f.ws, admin, "never@example.com", models.RoleViewer)
		if err := f.svc.Cancel(ctx, f.ws, admin, inv3.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Invitation(ctx, cancelled); !errors.Is(err, teams.ErrInvitationInvalid) {
			t.Fatal("a cancelled invitation works")
		}
		var actions []string
		f.db.Model(&models.AuditEvent{}).Order("id").Pluck("action", &actions)
		want := []string{teams.ActionInvited, teams.ActionJoined, teams.ActionInvited, teams.ActionReinvited, teams.ActionJoined, teams.ActionInvited, teams.ActionUninvited}
		if len(actions) != len(want) {
			t.Fatalf("audit actions %v, want %v", actions, want)
		}
		for i := range want {
			if actions[i] != want[i] {
				t.Fatalf("audit actions %v, want %v", actions, want)
			}
		}
	})
}

func TestRemovedMembersKeysKeepWorking(t *testing.T) {
	f := setup(t, testutil.DatabaseURL(t, "sqlite"))
	editor := f.users[models.RoleEditor]
	for i := range 2 {
		k := models.APIKey{WorkspaceID: f.ws, Name: "k", Kind: "sk", Environment: "live", Permission: "read", Scopes: "files:read",
			SecretHash: string(rune('a' + i)), Hint: "h", CreatedByID: &editor.User.ID}
		if err := f.db.Create(&k).Error; err != nil {
			t.Fatal(err)
		}
	}
	n, err := f.svc.Remove(ctx, f.ws, f.users[models.RoleAdmin], editor.User.ID)
	if err != nil || n != 2 {
		t.Fatalf("remove: %d keys, %v", n, err)
	}
	var live int64
	f.db.Model(&models.APIKey{}).Where("created_by_id = ? AND revoked_at IS NULL", editor.User.ID).Count(&live)
	if live != 2 {
		t.Fatalf("%d of the removed member's keys still live, want 2", live)
	}
}

func TestKeyPolicyNeverAboveTheOperator(t *testing.T) {
	f := setup(t, testutil.DatabaseURL(t, "sqlite"))
	owner := f.users[models.RoleOwner]
	var ve validate.Errors
	tooLong, bad, ok60, def90 := 120, 45, 60, 90
	if err := f.svc.SetKeyPolicy(ctx, f.ws, owner, nil, &tooLong); !errors.As(err, &ve) || ve["max_lifetime_days"] == "" {
		t.Fatalf("above the operator's 90: %v", err)
	}
	if err := f.svc.SetKeyPolicy(ctx, f.ws, owner, &bad, nil); !errors.As(err, &ve) {
		t.Fatalf("a default the form does not offer: %v", err)
	}
	if err := f.svc.SetKeyPolicy(ctx, f.ws, owner, &def90, &ok60); !errors.As(err, &ve) {
		t.Fatalf("a default above the maximum: %v", err)
	}
	if err := f.svc.SetKeyPolicy(ctx, f.ws, owner, nil, &ok60); err != nil {
		t.Fatal(err)
	}
	var w models.Workspace
	f.db.Take(&w, f.ws)
	if w.MaxLifetimeDays == nil || *w.MaxLifetimeDays != 60 {
		t.Fatalf("stored %+v", w)
	}
}
