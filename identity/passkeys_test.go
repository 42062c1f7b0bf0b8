package identity_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"testing"

	"github.com/go-webauthn/webauthn/protocol/webauthncbor"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"

	"keysmith/accounts"
	"keysmith/clock"
	"keysmith/identity"
	"keysmith/models"
	"keysmith/testutil"
)

const origin = "https://keys.example.com"

func TestRelyingPartyFor(t *testing.T) {
	for _, tc := range []struct {
		base, id, origin string
		ok               bool
	}{
		{"https://keys.example.com", "keys.example.com", "https://keys.example.com", true},
		{"https://Keys.Example.com:8443/keysmith", "keys.example.com", "https://keys.example.com:8443", true},
		{"http://localhost:8080", "localhost", "http://localhost:8080", true},
		{"http://app.localhost:3000", "app.localhost", "http://app.localhost:3000", true},
		{"http://127.0.0.1:8080", "", "", false},   // an IP address
		{"https://[::1]:8443", "", "", false},      // an IP address
		{"http://keys.example.com", "", "", false}, // plain http away from localhost
		{"ftp://keys.example.com", "", "", false},
	} {
		rp, err := identity.RelyingPartyFor(tc.base)
		if tc.ok != (err == nil) || rp.ID != tc.id || rp.Origin != tc.origin {
			t.Errorf("%s: %+v, %v", tc.base, rp, err)
		}
		if err != nil && !errors.Is(err, identity.ErrUnavailable) {
			t.Errorf("%s: %v is not ErrUnavailable", tc.base, err)
		}
	}
}

// authenticator is a software authenticator: one ES256 credential, with
// a signature counter the test can turn back.
type authenticator struct {
	t       *testing.T
	rpID    string
	key     *ecdsa.PrivateKey
	id      []byte
	handle  []byte
	counter uint32
	noUV    bool // answers with user presence alone, as a key without a PIN does
}

func newAuthenticator(t *testing.T, rpID string) *authenticator {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 16)
	rand.Read(id)
	return &authenticator{t: t, rpID: rpID, key: key, id: id}
}

var b64 = base64.RawURLEncoding

func (a *authenticator) clientData(typ, challenge string) []byte {
	b, _ := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": origin, "crossOrigin": false})
	return b
}

// authData is rpIdHash, flags (UP, UV, and AT with attested), counter.
func (a *authenticator) authData(attested []byte) []byte {
	h := sha256.Sum256([]byte(a.rpID))
	flags := byte(0x01 | 0x04)
	if a.noUV {
		flags = 0x01
	}
	if attested != nil {
		flags |= 0x40
	}
	out := append(h[:], flags)
	out = binary.BigEndian.AppendUint32(out, a.counter)
	return append(out, attested...)
}

// create answers navigator.credentials.create's options.
func (a *authenticator) create(options []byte) []byte {
	var o struct {
		PublicKey struct {
			Challenge string `json:"challenge"`
			User      struct {
				ID string `json:"id"`
			} `json:"user"`
			AuthenticatorSelection struct {
				ResidentKey string `json:"residentKey"`
			} `json:"authenticatorSelection"`
		} `json:"publicKey"`
	}
	if err := json.Unmarshal(options, &o); err != nil {
		a.t.Fatal(err)
	}
	a.handle, _ = b64.DecodeString(o.PublicKey.User.ID)
	cose, err := webauthncbor.Marshal(webauthncose.EC2PublicKeyData{
		PublicKeyData: webauthncose.PublicKeyData{KeyType: 2, Algorithm: -7},
		Curve:         1, XCoord: a.key.X.FillBytes(make([]byte, 32)), YCoord: a.key.Y.FillBytes(make([]byte, 32)),
	})
	if err != nil {
		a.t.Fatal(err)
	}
	attested := append(make([]byte, 16), byte(len(a.id)>>8), byte(len(a.id)))
	attested = append(append(attested, a.id...), cose...)
	a.counter++
	obj, err := webauthncbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": a.authData(attested)})
	if err != nil {
		a.t.Fatal(err)
	}
	out, _ := json.Marshal(map[string]any{
		"id": b64.EncodeToString(a.id), "rawId": b64.EncodeToString(a.id), "type": "public-key",
		"clientExtensionResults": map[string]any{},
		"response": map[string]any{
			"clientDataJSON":    b64.EncodeToString(a.clientData("webauthn.create", o.PublicKey.Challenge)),
			"attestationObject": b64.EncodeToString(obj),
			"transports":        []string{"internal"},
		},
	})
	return out
}

// get answers navigator.credentials.get's options.
func (a *authenticator) get(options []byte) []byte {
	var o struct {
		PublicKey struct {
			Challenge string `json:"challenge"`
		} `json:"publicKey"`
	}
	if err := json.Unmarshal(options, &o); err != nil {
		a.t.Fatal(err)
	}
	a.counter++
	cd := a.clientData("webauthn.get", o.PublicKey.Challenge)
	ad := a.authData(nil)
	h := sha256.Sum256(cd)
	sum := sha256.Sum256(append(append([]byte{}, ad...), h[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, a.key, sum[:])
	if err != nil {
		a.t.Fatal(err)
	}
	out, _ := json.Marshal(map[string]any{
		"id": b64.EncodeToString(a.id), "rawId": b64.EncodeToString(a.id), "type": "public-key",
		"clientExtensionResults": map[string]any{},
		"response": map[string]any{
			"clientDataJSON": b64.EncodeToString(cd), "authenticatorData": b64.EncodeToString(ad),
			"signature": b64.EncodeToString(sig), "userHandle": b64.EncodeToString(a.handle),
		},
	})
	return out
}

func setUp(t *testing.T, dbURL string) (*identity.Passkeys, *clock.Fake, models.User, func(query string, args ...any) int64) {
	clk := clock.NewFake(testutil.Epoch)
	db := testutil.OpenDB(t, dbURL, clk)
	accts := accounts.New(db, clk, 4)
	u, err := accts.SignUp(t.Context(), accounts.SignUpInput{Email: "ada@example.com", Name: "Ada", Password: "a long enough password"})
	if err != nil {
		t.Fatal(err)
	}
	count := func(query string, args ...any) int64 {
		var n int64
		if err := db.Model(&models.Passkey{}).Where(query, args...).Count(&n).Error; err != nil {
			t.Fatal(err)
		}
		return n
	}
	return identity.NewPasskeys(db, accts, clk, origin), clk, u, count
}

func register(t *testing.T, keys *identity.Passkeys, u models.User, a *authenticator, name string) models.Passkey {
	t.Helper()
	opts, c, err := keys.BeginRegistration(t.Context(), u)
	if err != nil {
		t.Fatal(err)
	}
	row, _, err := keys.FinishRegistration(t.Context(), u, c, a.create(opts), name, accounts.Actor{})
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	return row
}

func TestPasskeyRegistration(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		keys, clk, u, count := setUp(t, dbURL)
		opts, c, err := keys.BeginRegistration(t.Context(), u)
		if err != nil {
			t.Fatal(err)
		}
		// The options ask for a discoverable credential with user
		// verification preferred, for this relying party.
		var o struct {
			PublicKey struct {
				RP                     struct{ ID, Name string } `json:"rp"`
				User                   struct{ ID, Name string } `json:"user"`
				Challenge              string                    `json:"challenge"`
				AuthenticatorSelection struct {
					ResidentKey        string `json:"residentKey"`
					RequireResidentKey bool   `json:"requireResidentKey"`
					UserVerification   string `json:"userVerification"`
				} `json:"authenticatorSelection"`
				Attestation string `json:"attestation"`
			} `json:"publicKey"`
		}
		if err := json.Unmarshal(opts, &o); err != nil {
			t.Fatal(err)
		}
		pk := o.PublicKey
		handle, _ := b64.DecodeString(pk.User.ID)
		if pk.RP.ID != "keys.example.com" || pk.RP.Name != "Keysmith" || pk.User.Name != "ada@example.com" || len(handle) != 32 ||
			len(pk.Challenge) < 40 || pk.AuthenticatorSelection.ResidentKey != "required" || !pk.AuthenticatorSelection.RequireResidentKey ||
			pk.AuthenticatorSelection.UserVerification != "preferred" || pk.Attestation != "none" {
			t.Fatalf("registration options: %s", opts)
		}

		a := newAuthenticator(t, "keys.example.com")
		row, user, err := keys.FinishRegistration(t.Context(), u, c, a.create(opts), "  Work   laptop ", accounts.Actor{})
		if err != nil {
			t.Fatal(err)
		}
		if row.Name != "Work laptop" || row.Transports != "internal" || row.SignCount != 1 || user.SessionEpoch != u.SessionEpoch+1 {
			t.Fatalf("stored %+v, epoch %d", row, user.SessionEpoch)
		}
		// The same authenticator cannot register twice.
		if _, _, err := keys.FinishRegistration(t.Context(), u, c, a.create(opts), "", accounts.Actor{}); !errors.Is(err, identity.ErrAlreadyRegistered) {
			t.Fatalf("a second answer: %v", err)
		}
		// A ceremony too old is refused.
		opts, c, _ = keys.BeginRegistration(t.Context(), u)
		clk.Advance(identity.CeremonyLifetime + 1)
		if _, _, err := keys.FinishRegistration(t.Context(), u, c, newAuthenticator(t, "keys.example.com").create(opts), "", accounts.Actor{}); !errors.Is(err, identity.ErrCeremonyExpired) {
			t.Fatalf("an expired ceremony: %v", err)
		}
		// An authenticator answering for another site is refused.
		opts, c, _ = keys.BeginRegistration(t.Context(), u)
		if _, _, err := keys.FinishRegistration(t.Context(), u, c, newAuthenticator(t, "evil.example").create(opts), "", accounts.Actor{}); !errors.Is(err, identity.ErrPasskeyRefused) {
			t.Fatalf("another relying party: %v", err)
		}
		// Without a name, it is "Passkey"; names are kept short.
		second := register(t, keys, u, newAuthenticator(t, "keys.example.com"), "")
		if second.Name != identity.DefaultName || !bytesEqual(second.UserHandle, row.UserHandle) {
			t.Fatalf("second passkey %+v", second)
		}
		if err := keys.Rename(t.Context(), u.ID, second.ID, string(make([]rune, identity.MaxNameLength+1))); !errors.Is(err, identity.ErrNameTooLong) {
			t.Fatalf("a long name: %v", err)
		}
		if n := count("user_id = ?", u.ID); n != 2 {
			t.Fatalf("%d passkeys", n)
		}
	})
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

func TestPasskeyAssertions(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		keys, _, u, _ := setUp(t, dbURL)
		a := newAuthenticator(t, "keys.example.com")
		register(t, keys, u, a, "Laptop")
		ctx := t.Context()

		// The second step: the user's passkeys are allowed.
		opts, c, err := keys.BeginSecondStep(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		used, err := keys.FinishSecondStep(ctx, u, c, a.get(opts), "192.0.2.1", accounts.Actor{})
		if err != nil || used.SignCount != 2 || used.LastUsedAt == nil {
			t.Fatalf("second step: %+v %v", used, err)
		}

		// Passwordless: the passkey names its user.
		opts, c, err = keys.BeginSignIn(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		var o struct {
			PublicKey struct {
				UserVerification string `json:"userVerification"`
				RPID             string `json:"rpId"`
			} `json:"publicKey"`
		}
		if json.Unmarshal(opts, &o); o.PublicKey.UserVerification != "required" || o.PublicKey.RPID != "keys.example.com" {
			t.Fatalf("sign-in options %s", opts)
		}
		who, _, err := keys.FinishSignIn(ctx, c, a.get(opts), "192.0.2.1", accounts.Actor{})
		if err != nil || who.ID != u.ID {
			t.Fatalf("passwordless: %+v %v", who, err)
		}

		// A credential no one has is refused.
		stranger := newAuthenticator(t, "keys.example.com")
		stranger.handle = a.handle
		opts, c, _ = keys.BeginSignIn(ctx, false)
		if _, _, err := keys.FinishSignIn(ctx, c, stranger.get(opts), "192.0.2.1", accounts.Actor{}); !errors.Is(err, identity.ErrPasskeyRefused) {
			t.Fatalf("unknown credential: %v", err)
		}
		opts, c, _ = keys.BeginSecondStep(ctx, u)
		if _, err := keys.FinishSecondStep(ctx, u, c, stranger.get(opts), "192.0.2.1", accounts.Actor{}); !errors.Is(err, identity.ErrPasskeyRefused) {
			t.Fatalf("unknown credential at the second step: %v", err)
		}

		// A signature counter that goes back (a copy of the key) is refused.
		a.counter -= 2
		opts, c, _ = keys.BeginSignIn(ctx, false)
		if _, _, err := keys.FinishSignIn(ctx, c, a.get(opts), "192.0.2.1", accounts.Actor{}); !errors.Is(err, identity.ErrSignCountWentBack) {
			t.Fatalf("sign count regression: %v", err)
		}
		opts, c, _ = keys.BeginSecondStep(ctx, u)
		if _, err := keys.FinishSecondStep(ctx, u, c, a.get(opts), "192.0.2.1", accounts.Actor{}); !errors.Is(err, identity.ErrSignCountWentBack) {
			t.Fatalf("sign count regression at the second step: %v", err)
		}

		// A ceremony of one kind does not answer another.
		opts, c, _ = keys.BeginSignIn(ctx, false)
		if _, err := keys.FinishSecondStep(ctx, u, c, a.get(opts), "192.0.2.1", accounts.Actor{}); !errors.Is(err, identity.ErrCeremonyExpired) {
			t.Fatalf("a sign-in ceremony at the second step: %v", err)
		}
	})
}

// Confirming access (sudo mode) takes one of the user's own passkeys, with
// the user verified, from a ceremony of its own kind.
func TestPasskeyConfirmsAccess(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		keys, _, u, _ := setUp(t, dbURL)
		ctx := t.Context()
		if _, _, err := keys.BeginConfirm(ctx, u); !errors.Is(err, identity.ErrPasskeyNotFound) {
			t.Fatalf("confirming without a passkey: %v", err)
		}
		a := newAuthenticator(t, "keys.example.com")
		register(t, keys, u, a, "Laptop")

		opts, c, err := keys.BeginConfirm(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		var o struct {
			PublicKey struct {
				UserVerification string `json:"userVerification"`
				Allow            []any  `json:"allowCredentials"`
			} `json:"publicKey"`
		}
		if json.Unmarshal(opts, &o); o.PublicKey.UserVerification != "required" || len(o.PublicKey.Allow) != 1 {
			t.Fatalf("confirm options %s", opts)
		}
		answer := a.get(opts)
		used, err := keys.FinishConfirm(ctx, u, c, answer, "192.0.2.1", accounts.Actor{})
		if err != nil || used.Name != "Laptop" {
			t.Fatalf("confirm: %+v %v", used, err)
		}
		// The same answer again (its counter has not moved) is refused; the
		// session holding the ceremony pops it besides.
		if _, err := keys.FinishConfirm(ctx, u, c, answer, "192.0.2.1", accounts.Actor{}); !errors.Is(err, identity.ErrSignCountWentBack) {
			t.Fatalf("a confirmation replayed: %v", err)
		}

		// Presence alone does not stand in for the password.
		a.noUV = true
		opts, c, _ = keys.BeginConfirm(ctx, u)
		if _, err := keys.FinishConfirm(ctx, u, c, a.get(opts), "192.0.2.1", accounts.Actor{}); !errors.Is(err, identity.ErrPasskeyRefused) {
			t.Fatalf("a passkey without user verification: %v", err)
		}
		a.noUV = false

		// Another user's ceremony, or another kind's, does not confirm.
		opts, c, _ = keys.BeginSecondStep(ctx, u)
		if _, err := keys.FinishConfirm(ctx, u, c, a.get(opts), "192.0.2.1", accounts.Actor{}); !errors.Is(err, identity.ErrCeremonyExpired) {
			t.Fatalf("a second-step ceremony confirming access: %v", err)
		}
		opts, c, _ = keys.BeginConfirm(ctx, u)
		other := u
		other.ID++
		if _, err := keys.FinishConfirm(ctx, other, c, a.get(opts), "192.0.2.1", accounts.Actor{}); !errors.Is(err, identity.ErrCeremonyExpired) {
			t.Fatalf("another user's ceremony: %v", err)
		}
	})
}

// Failed assertions count against the password throttle.
func TestPasskeyThrottle(t *testing.T) {
	keys, _, u, _ := setUp(t, testutil.DatabaseURL(t, "sqlite"))
	a := newAuthenticator(t, "keys.example.com")
	register(t, keys, u, a, "Laptop")
	stranger := newAuthenticator(t, "keys.example.com")
	var throttled *accounts.ThrottledError
	for i := 0; i < 30 && throttled == nil; i++ {
		opts, c, _ := keys.BeginSecondStep(t.Context(), u)
		_, err := keys.FinishSecondStep(t.Context(), u, c, stranger.get(opts), "192.0.2.7", accounts.Actor{})
		if !errors.As(err, &throttled) && !errors.Is(err, identity.ErrPasskeyRefused) {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	if throttled == nil {
		t.Fatal("wrong passkeys were never throttled")
	}
	opts, c, _ := keys.BeginSecondStep(t.Context(), u)
	if _, err := keys.FinishSecondStep(t.Context(), u, c, a.get(opts), "192.0.2.7", accounts.Actor{}); !errors.As(err, &throttled) {
		t.Fatalf("the right passkey while throttled: %v", err)
	}
}

// Passkeys are unavailable, without crashing, where the base URL is an IP.
func TestPasskeysUnavailableOnAnIP(t *testing.T) {
	clk := clock.NewFake(testutil.Epoch)
	db := testutil.OpenDB(t, testutil.DatabaseURL(t, "sqlite"), clk)
	keys := identity.NewPasskeys(db, accounts.New(db, clk, 4), clk, "http://192.0.2.1:8080")
	if err := keys.Unavailable(); !errors.Is(err, identity.ErrUnavailable) {
		t.Fatalf("Unavailable: %v", err)
	}
	if _, _, err := keys.BeginSignIn(t.Context(), false); !errors.Is(err, identity.ErrUnavailable) {
		t.Fatalf("BeginSignIn: %v", err)
	}
	if rows, err := keys.List(t.Context(), 1); err != nil || len(rows) != 0 {
		t.Fatalf("List: %v %v", rows, err)
	}
}
