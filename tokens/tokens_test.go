package tokens_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"gorm.io/gorm"

	"keysmith/clock"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
	"keysmith/tokens"
)

const issuer = "https://keys.example.com"

var ctx = context.Background()

// env is one database with a tokens service over it.
type env struct {
	db     *gorm.DB
	dbURL  string
	clock  *clock.Fake
	encKey []byte
	svc    *tokens.Service
}

func newEnv(t testing.TB, dbURL string) *env {
	t.Helper()
	clk := clock.NewFake(testutil.Epoch)
	db := testutil.OpenDB(t, dbURL, clk)
	var configured []byte
	if models.IsPostgres(db) {
		configured = randomKey()
	}
	encKey, source, err := tokens.LoadEncryptionKey(configured, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{db: db, dbURL: dbURL, clock: clk, encKey: encKey}
	e.svc = e.service(t, encKey, source)
	if err := e.svc.Load(ctx); err != nil {
		t.Fatal(err)
	}
	return e
}

// service is another Service over the same database: another replica, or
// one started with another encryption key.
func (e *env) service(t testing.TB, encKey []byte, source string) *tokens.Service {
	t.Helper()
	svc, err := tokens.New(e.db, e.clock, tokens.Options{Issuer: issuer, EncryptionKey: encKey, KeySource: source, Covers: keys.Covers})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func randomKey() []byte {
	b := make([]byte, tokens.EncryptionKeySize)
	rand.Read(b)
	return b
}

var parent = tokens.Parent{KeyID: 3, WorkspaceID: 1, Environment: "live", Scopes: []string{"files:read", "files:write", "projects:read"}}

func issue(t *testing.T, svc *tokens.Service, p tokens.Parent, req tokens.Request) tokens.Issued {
	t.Helper()
	got, err := svc.Issue(ctx, p, req)
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	return got
}

func TestIssueAndVerify(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, dbURL)
		got := issue(t, e.svc, parent, tokens.Request{Scopes: []string{"files:read"}, Lifetime: 10 * time.Minute})
		if got.ExpiresIn() != 600 || !got.ExpiresAt.Equal(testutil.Epoch.Add(10*time.Minute)) || got.ID == "" || got.KID == "" {
			t.Errorf("issued %+v", got)
		}
		if !tokens.LooksLikeJWT(got.Token) || tokens.LooksLikeJWT("ks_sk_live_7Gd0pQ2mW9xLr4TbN8vYc1KsZ6HjA3eF5ux9Qa") {
			t.Error("LooksLikeJWT cannot tell a token from a key")
		}
		tok, err := e.svc.Verify(ctx, got.Token, "")
		if err != nil {
			t.Fatal(err)
		}
		want := tokens.Token{
			ID: got.ID, KID: got.KID, Subject: "key_3", KeyID: 3, WorkspaceID: 1, Environment: "live",
			Scopes: []string{"files:read"}, Audience: []string{issuer},
			IssuedAt: testutil.Epoch, ExpiresAt: testutil.Epoch.Add(10 * time.Minute),
		}
		if !tokenEqual(*tok, want) {
			t.Errorf("verified\n%+v\nwant\n%+v", *tok, want)
		}
		if _, err := e.svc.Verify(ctx, got.Token, issuer); err != nil {
			t.Errorf("the default audience is the issuer: %v", err)
		}

		// Without scopes and lifetime: all the key's scopes, 15 minutes.
		got = issue(t, e.svc, parent, tokens.Request{})
		if tok, err := e.svc.Verify(ctx, got.Token, ""); err != nil || !slices.Equal(tok.Scopes, parent.Scopes) || got.ExpiresIn() != 15*60 {
			t.Errorf("defaults: %+v, %v", tok, err)
		}
	})
}

func tokenEqual(a, b tokens.Token) bool {
	return a.ID == b.ID && a.KID == b.KID && a.Subject == b.Subject && a.KeyID == b.KeyID && a.WorkspaceID == b.WorkspaceID &&
		a.Environment == b.Environment && slices.Equal(a.Scopes, b.Scopes) && slices.Equal(a.Audience, b.Audience) &&
		a.IssuedAt.Equal(b.IssuedAt) && a.ExpiresAt.Equal(b.ExpiresAt)
}

// An outside service verifies a token with nothing but go-jose and the
// JWKS document, as docs/API.md will show.
func TestOutsideVerifierUsesTheJWKS(t *testing.T) {
	e := newEnv(t, testutil.DatabaseURL(t, "sqlite"))
	got := issue(t, e.svc, parent, tokens.Request{Scopes: []string{"files:read"}, Audience: []string{"https://files.example.com"}})

	body, maxAge, err := e.svc.JWKSDocument(ctx)
	if err != nil || maxAge < time.Minute || maxAge > time.Hour {
		t.Fatalf("JWKS document: max-age %s, %v", maxAge, err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(body), `"d"`) {
		t.Fatalf("the JWKS holds a private part: %s", body)
	}
	tok, err := jwt.ParseSigned(got.Token, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	h := tok.Headers[0]
	if h.Algorithm != "EdDSA" || h.ExtraHeaders[jose.HeaderType] != "at+jwt" || h.KeyID != got.KID {
		t.Errorf("header %+v", h)
	}
	keys := set.Key(h.KeyID)
	if len(keys) != 1 || keys[0].Use != "sig" || keys[0].Algorithm != "EdDSA" {
		t.Fatalf("JWKS keys for %s: %+v", h.KeyID, keys)
	}
	var std jwt.Claims
	var raw map[string]any
	if err := tok.Claims(keys[0].Key, &std, &raw); err != nil {
		t.Fatalf("signature does not verify against the JWKS: %v", err)
	}
	err = std.ValidateWithLeeway(jwt.Expected{Issuer: issuer, AnyAudience: jwt.Audience{"https://files.example.com"}, Time: e.clock.Now()}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, claim := range []string{"iss", "sub", "aud", "iat", "exp", "jti", "client_id", "scope", "ks_key", "ks_workspace", "ks_env"} {
		if _, ok := raw[claim]; !ok {
			t.Errorf("claim %s missing: %v", claim, raw)
		}
	}
	if raw["scope"] != "files:read" || raw["ks_env"] != "live" || raw["sub"] != "key_3" || raw["client_id"] != "key_3" {
		t.Errorf("claims %v", raw)
	}
}

func TestTamperedTokensAreRefused(t *testing.T) {
	e := newEnv(t, testutil.DatabaseURL(t, "sqlite"))
	got := issue(t, e.svc, parent, tokens.Request{Scopes: []string{"files:read"}})
	header, payload, sig := splitToken(t, got.Token)

	var claims map[string]any
	decodeSegment(t, payload, &claims)
	claims["scope"] = "*"
	widened := header + "." + encodeSegment(t, claims) + "." + sig

	var hdr map[string]any
	decodeSegment(t, header, &hdr)
	hdr["alg"] = "none"
	unsigned := encodeSegment(t, hdr) + "." + payload + "."
	hdr["alg"] = "HS256"
	hs256 := encodeSegment(t, hdr) + "." + payload + "." + sig
	hdr["alg"], hdr["typ"] = "EdDSA", "JWT"
	plainJWT := encodeSegment(t, hdr) + "." + payload + "." + sig

	other := newEnv(t, testutil.DatabaseURL(t, "sqlite")) // another Keysmith, another signing key
	foreign := issue(t, other.svc, parent, tokens.Request{}).Token

	for name, raw := range map[string]string{
		"flipped signature": header + "." + payload + "." + flip(sig),
		"stray low bits":    header + "." + payload + "." + strayBits(sig),
		"a line break":      header + "." + payload + "." + sig[:10] + "\n" + sig[10:],
		"widened scope":     widened,
		"alg none":          unsigned,
		"alg HS256":         hs256,
		"typ JWT":           plainJWT,
		"another issuer":    foreign,
		"truncated":         got.Token[:len(got.Token)-10],
		"empty":             "",
		"key":               "ks_sk_live_7Gd0pQ2mW9xLr4TbN8vYc1KsZ6HjA3eF5ux9Qa",
		"too long":          got.Token + strings.Repeat("A", tokens.MaxTokenLength),
	} {
		if tok, err := e.svc.Verify(ctx, raw, ""); !errors.Is(err, tokens.ErrInvalidToken) {
			t.Errorf("%s: %+v, %v; want ErrInvalidToken", name, tok, err)
		}
	}
	if _, err := e.svc.Verify(ctx, got.Token, "https://other.example.com"); !errors.Is(err, tokens.ErrWrongAudience) {
		t.Errorf("another audience: %v", err)
	}
}

func splitToken(t *testing.T, token string) (header, payload, sig string) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", token)
	}
	return parts[0], parts[1], parts[2]
}

func decodeSegment(t *testing.T, seg string, v any) {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func encodeSegment(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// flip changes the signature's first character, so its bytes differ.
func flip(sig string) string {
	if sig[0] == 'A' {
		return "B" + sig[1:]
	}
	return "A" + sig[1:]
}

// strayBits sets a low bit of the signature's last character, which a
// lenient base64 decoder drops: the same signature, spelled otherwise.
func strayBits(sig string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, sig[len(sig)-1])
	return sig[:len(sig)-1] + string(alphabet[i|1])
}

func TestExpiredTokensAreRefused(t *testing.T) {
	e := newEnv(t, testutil.DatabaseURL(t, "sqlite"))
	got := issue(t, e.svc, parent, tokens.Request{})
	e.clock.Advance(tokens.DefaultLifetime + tokens.Leeway - time.Second)
	if _, err := e.svc.Verify(ctx, got.Token, ""); err != nil {
		t.Fatalf("within the leeway: %v", err)
	}
	e.clock.Advance(2 * time.Second)
	if _, err := e.svc.Verify(ctx, got.Token, ""); !errors.Is(err, tokens.ErrExpiredToken) {
		t.Fatalf("expired: %v", err)
	}
}

func TestScopesAndLifetime(t *testing.T) {
	e := newEnv(t, testutil.DatabaseURL(t, "sqlite"))
	in := func(d time.Duration) *time.Time { t := testutil.Epoch.Add(d); return &t }
	admin := tokens.Parent{KeyID: 9, WorkspaceID: 1, Environment: "test", Scopes: []string{"*"}}
	expiring := parent
	expiring.ExpiresAt = in(10*time.Minute + 500*time.Millisecond)
	expired := parent
	expired.ExpiresAt = in(-time.Second)

	for _, tc := range []struct {
		name     string
		parent   tokens.Parent
		req      tokens.Request
		err      error
		lifetime time.Duration
	}{
		{"a subset", parent, tokens.Request{Scopes: []string{"files:read", "projects:read"}}, nil, tokens.DefaultLifetime},
		{"more than the key", parent, tokens.Request{Scopes: []string{"files:read", "keys:write"}}, tokens.ErrInvalidScope, 0},
		{"a wildcard broader than the key", parent, tokens.Request{Scopes: []string{"files:*"}}, tokens.ErrInvalidScope, 0},
		{"a wider wildcard", parent, tokens.Request{Scopes: []string{"*:read"}}, tokens.ErrInvalidScope, 0},
		{"anything from *", admin, tokens.Request{Scopes: []string{"keys:write", "*:read"}}, nil, tokens.DefaultLifetime},
		{"a key without scopes", tokens.Parent{KeyID: 4}, tokens.Request{}, tokens.ErrInvalidScope, 0},
		{"ten minutes", parent, tokens.Request{Lifetime: 10 * time.Minute}, nil, 10 * time.Minute},
		{"the 4 h cap", parent, tokens.Request{Lifetime: 5 * time.Hour}, nil, tokens.MaxLifetime},
		{"the key's expiry", expiring, tokens.Request{Lifetime: time.Hour}, nil, 10 * time.Minute},
		{"an expired key", expired, tokens.Request{}, tokens.ErrKeyExpired, 0},
		{"a negative lifetime", parent, tokens.Request{Lifetime: -time.Minute}, tokens.ErrInvalidLifetime, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.svc.Issue(ctx, tc.parent, tc.req)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if d := got.ExpiresAt.Sub(got.IssuedAt); d != tc.lifetime || got.ExpiresIn() != int64(tc.lifetime/time.Second) {
				t.Errorf("lifetime %s (expires_in %d), want %s", d, got.ExpiresIn(), tc.lifetime)
			}
			if tc.parent.ExpiresAt != nil && got.ExpiresAt.After(*tc.parent.ExpiresAt) {
				t.Errorf("token outlives its key: %s > %s", got.ExpiresAt, tc.parent.ExpiresAt)
			}
			if _, err := e.svc.Verify(ctx, got.Token, ""); err != nil {
				t.Errorf("verify: %v", err)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, dbURL)
		replica := e.service(t, e.encKey, "")
		if err := replica.Load(ctx); err != nil {
			t.Fatal(err)
		}
		old := issue(t, e.svc, parent, tokens.Request{Lifetime: tokens.MaxLifetime})

		kid, err := e.svc.Rotate(ctx)
		if err != nil || kid == old.KID {
			t.Fatalf("rotate: %q, %v", kid, err)
		}
		fresh := issue(t, e.svc, parent, tokens.Request{Lifetime: tokens.MaxLifetime})
		if fresh.KID != kid {
			t.Errorf("a new token is signed by %s, want the new key %s", fresh.KID, kid)
		}
		if kids := jwksKIDs(t, e.svc); !slices.Equal(kids, []string{kid, old.KID}) {
			t.Errorf("JWKS after rotation: %v, want the new key and the old one", kids)
		}

		// The replica signs with the old key until it re-reads the keys,
		// but verifies the new key's tokens at once (a second later).
		if got := issue(t, replica, parent, tokens.Request{}); got.KID != old.KID {
			t.Errorf("the replica re-read the keys early: %s", got.KID)
		}
		e.clock.Advance(time.Second)
		for _, svc := range []*tokens.Service{e.svc, replica} {
			for _, tok := range []tokens.Issued{old, fresh} {
				if _, err := svc.Verify(ctx, tok.Token, ""); err != nil {
					t.Errorf("token of %s after rotation: %v", tok.KID, err)
				}
			}
		}
		e.clock.Advance(tokens.RefreshEvery)
		if got := issue(t, replica, parent, tokens.Request{}); got.KID != kid {
			t.Errorf("the replica still signs with %s after %s", got.KID, tokens.RefreshEvery)
		}

		// Once every token of the old key has expired, it leaves the JWKS
		// and verifies nothing; a later rotation deletes it.
		e.clock.Advance(tokens.MaxLifetime - time.Second)
		if kids := jwksKIDs(t, e.svc); len(kids) != 2 {
			t.Errorf("JWKS within the window: %v", kids)
		}
		e.clock.Set(testutil.Epoch.Add(tokens.RetiredWindow + time.Second))
		if kids := jwksKIDs(t, e.svc); !slices.Equal(kids, []string{kid}) {
			t.Errorf("JWKS once the old key's tokens expired: %v", kids)
		}
		if _, err := e.svc.Verify(ctx, old.Token, ""); !errors.Is(err, tokens.ErrExpiredToken) && !errors.Is(err, tokens.ErrInvalidToken) {
			t.Errorf("an old token: %v", err)
		}
		if _, err := e.svc.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		var stored []string
		if err := e.db.Model(&models.SigningKey{}).Order("id").Pluck("kid", &stored).Error; err != nil {
			t.Fatal(err)
		}
		if len(stored) != 2 || stored[0] != kid {
			t.Errorf("stored keys after the second rotation: %v, want %s and a newer one", stored, kid)
		}
	})
}

func jwksKIDs(t *testing.T, svc *tokens.Service) []string {
	t.Helper()
	set, err := svc.JWKS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.KeyID)
	}
	return kids
}

// Replicas starting together on one database make one first key.
func TestConcurrentStartsMakeOneKey(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, dbURL)
		if err := e.db.Exec("DELETE FROM signing_keys").Error; err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 4 {
			svc := e.service(t, e.encKey, "")
			wg.Go(func() {
				if err := svc.Load(ctx); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		var n int64
		if err := e.db.Model(&models.SigningKey{}).Count(&n).Error; err != nil || n != 1 {
			t.Errorf("%d signing keys, %v; want 1", n, err)
		}
	})
}

// The database holds the private keys only sealed: neither the rows nor
// (on SQLite) the database files contain them in any usual encoding.
func TestPrivateKeysAreEncryptedAtRest(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, dbURL)
		if _, err := e.svc.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		var rows []models.SigningKey
		if err := e.db.Find(&rows).Error; err != nil || len(rows) != 2 {
			t.Fatalf("%d rows, %v", len(rows), err)
		}
		dump := rawRows(t, e.db)
		if !models.IsPostgres(e.db) {
			models.Close(e.db) // checkpoint the WAL into the file
			for _, name := range []string{e.dbURL, e.dbURL + "-wal"} {
				b, err := os.ReadFile(name)
				if err != nil && !os.IsNotExist(err) {
					t.Fatal(err)
				}
				dump = append(dump, b...)
			}
		}
		for _, row := range rows {
			// AES-256-GCM with the nonce first and the kid authenticated,
			// as models.SigningKey documents.
			block, _ := aes.NewCipher(e.encKey)
			aead, _ := cipher.NewGCM(block)
			n := aead.NonceSize()
			seed, err := aead.Open(nil, row.PrivateKeyEnc[:n], row.PrivateKeyEnc[n:], []byte(row.KID))
			if err != nil {
				t.Fatalf("key %s does not open as documented: %v", row.KID, err)
			}
			priv := ed25519.NewKeyFromSeed(seed)
			if !priv.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(row.PublicKey)) {
				t.Fatalf("key %s: the sealed seed is not the public key's", row.KID)
			}
			if _, err := aead.Open(nil, row.PrivateKeyEnc[:n], row.PrivateKeyEnc[n:], []byte("another kid")); err == nil {
				t.Errorf("key %s opens under another kid", row.KID)
			}
			for _, form := range [][]byte{
				seed, priv,
				[]byte(base64.StdEncoding.EncodeToString(seed)), []byte(base64.RawURLEncoding.EncodeToString(seed)),
				[]byte(hex.EncodeToString(seed)), []byte(strings.ToUpper(hex.EncodeToString(seed))),
				[]byte(base64.StdEncoding.EncodeToString(priv)),
			} {
				if strings.Contains(string(dump), string(form)) {
					t.Errorf("key %s: its private part is stored in plaintext (%d bytes found)", row.KID, len(form))
				}
			}
		}
	})
}

// rawRows is every stored byte of signing_keys, as the driver returns it.
func rawRows(t *testing.T, db *gorm.DB) []byte {
	t.Helper()
	rows, err := db.Raw("SELECT * FROM signing_keys").Rows()
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []byte
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			switch v := v.(type) {
			case []byte:
				out = append(out, v...)
			case string:
				out = append(out, v...)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestWrongEncryptionKeyIsAClearError(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, dbURL)
		wrong := make([]byte, tokens.EncryptionKeySize)
		svc := e.service(t, wrong, "KEYSMITH_ENCRYPTION_KEY")
		err := svc.Load(ctx)
		if !errors.Is(err, tokens.ErrWrongEncryptionKey) || !strings.Contains(err.Error(), "KEYSMITH_ENCRYPTION_KEY") {
			t.Fatalf("loading with another encryption key: %v", err)
		}
		// The way out when the old key is lost: rotate to a new signing key.
		if _, err := svc.Rotate(ctx); err != nil {
			t.Fatalf("rotate with the new encryption key: %v", err)
		}
		if err := svc.Load(ctx); err != nil {
			t.Fatal(err)
		}
		if err := e.service(t, e.encKey, "").Load(ctx); !errors.Is(err, tokens.ErrWrongEncryptionKey) {
			t.Errorf("the old encryption key after rotating to a new one: %v", err)
		}
	})
}

func TestEncryptionKeySources(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "keysmith.db")
	file := db + tokens.KeyFileSuffix

	key, source, err := tokens.LoadEncryptionKey(nil, db+"?cache=shared")
	if err != nil || len(key) != tokens.EncryptionKeySize || !strings.Contains(source, file) {
		t.Fatalf("first start: %d bytes from %q, %v", len(key), source, err)
	}
	info, err := os.Stat(file)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v; want mode 0600", info, err)
	}
	again, _, err := tokens.LoadEncryptionKey(nil, db)
	if err != nil || !slices.Equal(again, key) {
		t.Fatalf("a later start generated another key: %v", err)
	}
	if leftovers, _ := filepath.Glob(file + ".tmp*"); len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}

	configured := randomKey()
	other := filepath.Join(dir, "other.db")
	if got, source, err := tokens.LoadEncryptionKey(configured, other); err != nil || !slices.Equal(got, configured) || source != "KEYSMITH_ENCRYPTION_KEY" {
		t.Errorf("configured key: %q, %v", source, err)
	}
	if _, err := os.Stat(other + tokens.KeyFileSuffix); !os.IsNotExist(err) {
		t.Error("a key file was written although a key is configured")
	}
	if _, _, err := tokens.LoadEncryptionKey(configured[:16], other); err == nil {
		t.Error("a 16-byte key was accepted")
	}
	if _, _, err := tokens.LoadEncryptionKey(nil, "postgres://u@db/keysmith"); !errors.Is(err, tokens.ErrEncryptionKeyRequired) ||
		!strings.Contains(err.Error(), "KEYSMITH_ENCRYPTION_KEY") {
		t.Errorf("PostgreSQL without a key: %v", err)
	}
	if got, _, err := tokens.LoadEncryptionKey(configured, "postgres://u@db/keysmith"); err != nil || !slices.Equal(got, configured) {
		t.Errorf("PostgreSQL with a key: %v", err)
	}
	if err := os.WriteFile(file, []byte("not base64\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tokens.LoadEncryptionKey(nil, db); err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("a damaged key file: %v", err)
	}
}

// Processes starting together on one SQLite file agree on one key file.
func TestKeyFileRace(t *testing.T) {
	db := filepath.Join(t.TempDir(), "keysmith.db")
	got := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() {
			key, _, err := tokens.LoadEncryptionKey(nil, db)
			if err != nil {
				t.Error(err)
			}
			got[i] = key
		})
	}
	wg.Wait()
	for _, k := range got[1:] {
		if !slices.Equal(k, got[0]) {
			t.Fatal("two starts generated different keys")
		}
	}
}

func TestMetadata(t *testing.T) {
	e := newEnv(t, testutil.DatabaseURL(t, "sqlite"))
	b, err := json.Marshal(e.svc.Metadata(keys.DemoCatalog().Scopes()))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["issuer"] != issuer || m["token_endpoint"] != issuer+"/oauth/token" || m["jwks_uri"] != issuer+"/.well-known/jwks.json" {
		t.Errorf("metadata %s", b)
	}
	for _, field := range []string{"response_types_supported", "grant_types_supported", "token_endpoint_auth_methods_supported", "scopes_supported"} {
		if _, ok := m[field].([]any); !ok {
			t.Errorf("%s is not a list: %s", field, b)
		}
	}
	if !strings.Contains(string(b), `"urn:ietf:params:oauth:grant-type:token-exchange"`) {
		t.Errorf("no token exchange grant: %s", b)
	}
}

// FuzzVerify feeds the parser arbitrary strings: none panics, none
// verifies.
func FuzzVerify(f *testing.F) {
	e := newEnv(f, testutil.DatabaseURL(f, "sqlite"))
	got, err := e.svc.Issue(ctx, parent, tokens.Request{})
	if err != nil {
		f.Fatal(err)
	}
	parts := strings.Split(got.Token, ".")
	for _, seed := range []string{
		"", ".", "..", "a.b.c", "eyJ.eyJ.", "ks_sk_live_7Gd0pQ2mW9xLr4TbN8vYc1KsZ6HjA3eF5ux9Qa",
		parts[0] + "." + parts[1] + ".",
		parts[0] + "." + parts[1] + "." + flip(parts[2]),
		parts[0] + "." + parts[1] + "X." + parts[2],
		parts[0] + ".." + parts[2],
		`{"payload":"` + parts[1] + `","signatures":[{"protected":"` + parts[0] + `","signature":"` + parts[2] + `"}]}`,
		"eyJhbGciOiJub25lIn0.eyJzdWIiOiJrZXlfMyJ9.",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if raw == got.Token {
			return
		}
		if tok, err := e.svc.Verify(ctx, raw, ""); err == nil || tok != nil {
			t.Fatalf("%q verified: %+v", raw, tok)
		}
	})
}
