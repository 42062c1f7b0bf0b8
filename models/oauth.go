package models

import (
	"strings"
	"time"
)

// oauthMigration holds OAuth 2.1 for third-party apps (package oauth):
//   - oauth_clients: the apps a workspace registered. The secret is kept
//     only as its SHA-256 (it is 130 random bits, like a key's secret).
//   - oauth_grants: a user's consent to one app in one workspace, with the
//     scopes granted; revoking it ends every token it led to.
//   - oauth_families: one authorization (a code and every access and
//     refresh token that descends from it, or one client-credentials
//     token). Access tokens name their family; Keysmith's verifier refuses
//     a token whose family, grant or app has been revoked.
//   - oauth_tokens: what the protocol library (fosite) stores of codes,
//     PKCE challenges, access and refresh tokens, by the HMAC signature of
//     the token, never the token. A used code or refresh token stays as
//     inactive, so its replay is recognised and revokes its family.
const oauthMigration = `CREATE TABLE oauth_clients (
		id {{id}},
		workspace_id BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
		client_id TEXT NOT NULL,
		name TEXT NOT NULL,
		logo_url TEXT NOT NULL DEFAULT '',
		redirect_uris TEXT NOT NULL,
		scopes TEXT NOT NULL,
		public BOOLEAN NOT NULL DEFAULT FALSE,
		secret_hash TEXT NOT NULL DEFAULT '',
		created_by_id BIGINT REFERENCES users (id) ON DELETE SET NULL,
		created_at {{time}} NOT NULL,
		updated_at {{time}} NOT NULL,
		last_used_at {{time}},
		revoked_at {{time}}
	);
	CREATE UNIQUE INDEX oauth_clients_client_id_idx ON oauth_clients (client_id);
	CREATE INDEX oauth_clients_workspace_idx ON oauth_clients (workspace_id, created_at);

	CREATE TABLE oauth_grants (
		id {{id}},
		client_pk BIGINT NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
		user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
		workspace_id BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
		scopes TEXT NOT NULL,
		created_at {{time}} NOT NULL,
		updated_at {{time}} NOT NULL,
		last_used_at {{time}},
		revoked_at {{time}}
	);
	CREATE UNIQUE INDEX oauth_grants_client_user_ws_idx ON oauth_grants (client_pk, user_id, workspace_id);
	CREATE INDEX oauth_grants_user_idx ON oauth_grants (user_id, created_at);

	CREATE TABLE oauth_families (
		id TEXT PRIMARY KEY,
		client_pk BIGINT NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
		grant_id BIGINT REFERENCES oauth_grants (id) ON DELETE CASCADE,
		created_at {{time}} NOT NULL,
		revoked_at {{time}}
	);
	CREATE INDEX oauth_families_grant_idx ON oauth_families (grant_id);
	CREATE INDEX oauth_families_client_idx ON oauth_families (client_pk);

	CREATE TABLE oauth_tokens (
		kind TEXT NOT NULL CHECK (kind IN ('code', 'pkce', 'access', 'refresh')),
		signature TEXT NOT NULL,
		family_id TEXT NOT NULL REFERENCES oauth_families (id) ON DELETE CASCADE,
		active BOOLEAN NOT NULL DEFAULT TRUE,
		request TEXT NOT NULL,
		expires_at {{time}} NOT NULL,
		created_at {{time}} NOT NULL,
		PRIMARY KEY (kind, signature)
	);
	CREATE INDEX oauth_tokens_family_idx ON oauth_tokens (family_id, kind);
	CREATE INDEX oauth_tokens_expires_idx ON oauth_tokens (expires_at);`

// OAuthClient is an app a workspace registered (SPEC §9).
type OAuthClient struct {
	ID           int64
	WorkspaceID  int64
	ClientID     string // public: "ksapp_…"
	Name         string
	LogoURL      string
	RedirectURIs string // one per line, matched exactly
	Scopes       string // space-separated: what the app may ask for
	Public       bool   // no secret; PKCE alone proves the client
	SecretHash   string // hex SHA-256 of the secret; "" for public clients
	CreatedByID  *int64
	CreatedAt    time.Time
	UpdatedAt    time.Time
	LastUsedAt   *time.Time
	RevokedAt    *time.Time
	Workspace    Workspace `gorm:"foreignKey:WorkspaceID"`
}

func (OAuthClient) TableName() string { return "oauth_clients" }

// RedirectURIList is the app's redirect URIs.
func (c OAuthClient) RedirectURIList() []string { return strings.Fields(c.RedirectURIs) }

// ScopeList is what the app may ask for.
func (c OAuthClient) ScopeList() []string { return strings.Fields(c.Scopes) }

// OAuthGrant is a user's consent to an app acting for them in a workspace.
type OAuthGrant struct {
	ID          int64
	ClientPK    int64 `gorm:"column:client_pk"`
	UserID      int64
	WorkspaceID int64
	Scopes      string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	LastUsedAt  *time.Time
	RevokedAt   *time.Time
	Client      OAuthClient `gorm:"foreignKey:ClientPK"`
	Workspace   Workspace   `gorm:"foreignKey:WorkspaceID"`
}

func (OAuthGrant) TableName() string { return "oauth_grants" }

// ScopeList is what the user granted.
func (g OAuthGrant) ScopeList() []string { return strings.Fields(g.Scopes) }

// OAuthFamily is one authorization and every token descending from it.
type OAuthFamily struct {
	ID        string
	ClientPK  int64  `gorm:"column:client_pk"`
	GrantID   *int64 // nil for client credentials
	CreatedAt time.Time
	RevokedAt *time.Time
}

func (OAuthFamily) TableName() string { return "oauth_families" }

// OAuthToken is what the protocol library keeps of one code, PKCE
// challenge, access or refresh token, under its signature.
type OAuthToken struct {
	Kind      string
	Signature string
	FamilyID  string
	Active    bool
	Request   string // JSON of the request the token answers
	ExpiresAt time.Time
	CreatedAt time.Time
}

func (OAuthToken) TableName() string { return "oauth_tokens" }
