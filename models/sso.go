package models

import "time"

// ssoMigration (issue 18) links users to the operator's OpenID provider:
//   - user_identities ties a user to one (issuer, subject) of the provider:
//     the link is by subject, never by email (user_identities_subject_idx
//     finds the user a sign-in is for). email is what the provider said at
//     the last sign-in, for Settings → Security. A user has at most one
//     identity per issuer (user_identities_user_idx).
//   - sso_workspaces ties a workspace to the value of the workspace claim
//     (KEYSMITH_OIDC_WORKSPACE_CLAIM) at one issuer; the workspace is made
//     at the first sign-in that names the value.
const ssoMigration = `CREATE TABLE user_identities (
		id {{id}},
		user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
		issuer TEXT NOT NULL,
		subject TEXT NOT NULL,
		email TEXT NOT NULL DEFAULT '',
		created_at {{time}} NOT NULL,
		last_used_at {{time}}
	);
	CREATE UNIQUE INDEX user_identities_subject_idx ON user_identities (issuer, subject);
	CREATE UNIQUE INDEX user_identities_user_idx ON user_identities (user_id, issuer);
	CREATE TABLE sso_workspaces (
		id {{id}},
		issuer TEXT NOT NULL,
		claim_value TEXT NOT NULL,
		workspace_id BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
		created_at {{time}} NOT NULL
	);
	CREATE UNIQUE INDEX sso_workspaces_claim_idx ON sso_workspaces (issuer, claim_value);
	CREATE UNIQUE INDEX sso_workspaces_workspace_idx ON sso_workspaces (workspace_id);`

// UserIdentity links a user to a subject of the OpenID provider.
type UserIdentity struct {
	ID         int64
	UserID     int64
	Issuer     string
	Subject    string
	Email      string
	CreatedAt  time.Time
	LastUsedAt *time.Time
}

// SSOWorkspace is the workspace a value of the workspace claim names.
type SSOWorkspace struct {
	ID          int64
	Issuer      string
	ClaimValue  string
	WorkspaceID int64
	CreatedAt   time.Time
}

// TableName keeps gorm from spelling it "s_s_o_workspaces".
func (SSOWorkspace) TableName() string { return "sso_workspaces" }
