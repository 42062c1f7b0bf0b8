// Package identity holds the ways to sign in beside the password:
// passkeys (WebAuthn), and single sign-on through the operator's OpenID
// provider (sso.go); the authenticator app and recovery codes live in
// accounts (TwoFactor), whose throttle, audit log and session epoch
// passkeys share.
package identity

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"gorm.io/gorm"

	"keysmith/accounts"
	"keysmith/clock"
	"keysmith/models"
)

// Errors of passkeys.
var (
	// ErrUnavailable: KEYSMITH_BASE_URL cannot be a relying party (an IP
	// address, or plain http away from localhost). Unavailable says why.
	ErrUnavailable = errors.New("identity: passkeys are unavailable on this server")
	// ErrCeremonyExpired: the answer came without a request of the same
	// kind in this session, a second time, or after CeremonyLifetime.
	ErrCeremonyExpired = errors.New("identity: the passkey request expired or was already answered")
	// ErrPasskeyRefused: the browser's answer does not verify (wrong
	// challenge, origin, signature, user handle, or an unknown credential).
	ErrPasskeyRefused = errors.New("identity: the passkey was not accepted")
	// ErrSignCountWentBack: the authenticator's signature counter did not
	// move forward, as when a copy of the credential signs: refused.
	ErrSignCountWentBack = errors.New("identity: the passkey's signature counter went back (a possible copy)")
	// ErrAlreadyRegistered: that authenticator already holds a passkey here.
	ErrAlreadyRegistered = errors.New("identity: that passkey is already registered")
	ErrPasskeyNotFound   = errors.New("identity: no such passkey")
	ErrNameTooLong       = fmt.Errorf("identity: a passkey's name is at most %d characters", MaxNameLength)
)

// Audit actions of passkeys, written to every workspace the user is a
// member of. The detail is the passkey's name, never key material.
const (
	ActionPasskeyAdded   = "passkey.added"
	ActionPasskeyRemoved = "passkey.removed"
	ActionPasskeyUsed    = "passkey.used"
)

const (
	// CeremonyLifetime is how long the browser has to answer a request.
	CeremonyLifetime = 5 * time.Minute
	MaxNameLength    = 64
	DefaultName      = "Passkey"
	// unknownCredentialKey is the throttle's account for assertions of a
	// credential no one has: the IP's count is what stops guessing.
	unknownCredentialKey = "passkey:unknown"
)

// RelyingParty is who passkeys are made for: the host of KEYSMITH_BASE_URL
// (without its port) as ID, and its origin.
type RelyingParty struct {
	ID     string
	Origin string
}

// RelyingPartyFor derives the relying party from the dashboard's base URL.
// WebAuthn refuses an IP address as ID, and browsers offer passkeys only
// in a secure context: https, or http on localhost.
func RelyingPartyFor(baseURL string) (RelyingParty, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return RelyingParty{}, fmt.Errorf("%w: KEYSMITH_BASE_URL %q is not an http(s) URL", ErrUnavailable, baseURL)
	}
	host := strings.ToLower(u.Hostname())
	if net.ParseIP(host) != nil {
		return RelyingParty{}, fmt.Errorf("%w: KEYSMITH_BASE_URL uses the IP address %s, and passkeys need a domain name (use http://localhost:PORT for development)", ErrUnavailable, host)
	}
	local := host == "localhost" || strings.HasSuffix(host, ".localhost")
	if u.Scheme == "http" && !local {
		return RelyingParty{}, fmt.Errorf("%w: KEYSMITH_BASE_URL is plain http on %s, and browsers offer passkeys only over https (or on localhost)", ErrUnavailable, host)
	}
	return RelyingParty{ID: host, Origin: u.Scheme + "://" + strings.ToLower(u.Host)}, nil
}

// Passkeys adds, lists, renames and removes users' passkeys and checks
// their assertions: as the second step of a sign-in, or as a whole
// passwordless sign-in (discoverable credentials with user verification).
type Passkeys struct {
	db          *gorm.DB
	accounts    *accounts.Service
	clock       clock.Clock
	rp          RelyingParty
	web         *webauthn.WebAuthn
	unavailable error
}

// NewPasskeys returns the passkey service for the dashboard at baseURL.
// A base URL that cannot be a relying party gives a service whose
// ceremonies answer ErrUnavailable (Unavailable says why); listing and
// removing passkeys still work.
func NewPasskeys(db *gorm.DB, accts *accounts.Service, clk clock.Clock, baseURL string) *Passkeys {
	p := &Passkeys{db: db, accounts: accts, clock: clk}
	rp, err := RelyingPartyFor(baseURL)
	if err == nil {
		p.rp = rp
		p.web, err = webauthn.New(&webauthn.Config{
			RPID: rp.ID, RPDisplayName: "Keysmith", RPOrigins: []string{rp.Origin},
			AttestationPreference: protocol.PreferNoAttestation,
		})
	}
	if err != nil {
		p.web, p.unavailable = nil, err
	}
	return p
}

// Unavailable is nil when passkeys work on this server, else why not.
func (p *Passkeys) Unavailable() error { return p.unavailable }

// RelyingParty is who this server's passkeys are for.
func (p *Passkeys) RelyingParty() RelyingParty { return p.rp }

// List returns the user's passkeys, oldest first (passkeys_user_idx).
func (p *Passkeys) List(ctx context.Context, userID int64) ([]models.Passkey, error) {
	var out []models.Passkey
	err := p.db.WithContext(ctx).Where("user_id = ?", userID).Order("created_at, id").Find(&out).Error
	return out, err
}

// Ceremony is what a session keeps between a request for a passkey and the
// browser's answer: opaque, single use (the handler pops it), expiring.
type Ceremony []byte

type ceremonyKind string

const (
	kindRegister   ceremonyKind = "register"
	kindSecondStep ceremonyKind = "second-step"
	kindSignIn     ceremonyKind = "sign-in"
	kindConfirm    ceremonyKind = "confirm"
)

type ceremony struct {
	Kind    ceremonyKind         `json:"kind"`
	UserID  int64                `json:"user_id,omitempty"`
	Expires time.Time            `json:"expires"`
	Data    webauthn.SessionData `json:"data"`
}

func (p *Passkeys) newCeremony(kind ceremonyKind, userID int64, data *webauthn.SessionData) (Ceremony, error) {
	return json.Marshal(ceremony{Kind: kind, UserID: userID, Expires: p.clock.Now().Add(CeremonyLifetime), Data: *data})
}

func (p *Passkeys) openCeremony(raw Ceremony, kind ceremonyKind, userID int64) (webauthn.SessionData, error) {
	var c ceremony
	if len(raw) == 0 || json.Unmarshal(raw, &c) != nil || c.Kind != kind || c.UserID != userID || !p.clock.Now().Before(c.Expires) {
		return webauthn.SessionData{}, ErrCeremonyExpired
	}
	return c.Data, nil
}

// user is a Keysmith user as WebAuthn sees them.
type user struct {
	handle []byte
	name   string
	label  string
	creds  []webauthn.Credential
}

func (u *user) WebAuthnID() []byte                         { return u.handle }
func (u *user) WebAuthnName() string                       { return u.name }
func (u *user) WebAuthnDisplayName() string                { return u.label }
func (u *user) WebAuthnCredentials() []webauthn.Credential { return u.creds }

// webUser loads the user's passkeys; their handle is the one their
// passkeys carry, or a new random one for their first.
func (p *Passkeys) webUser(db *gorm.DB, u models.User) (*user, []models.Passkey, error) {
	var rows []models.Passkey
	if err := db.Where("user_id = ?", u.ID).Order("created_at, id").Find(&rows).Error; err != nil {
		return nil, nil, err
	}
	wu := &user{name: u.Email, label: u.DisplayName()}
	for _, r := range rows {
		wu.handle = r.UserHandle
		wu.creds = append(wu.creds, credentialOf(r))
	}
	if wu.handle == nil {
		wu.handle = make([]byte, 32)
		if _, err := rand.Read(wu.handle); err != nil {
			return nil, nil, err
		}
	}
	return wu, rows, nil
}

func credentialOf(r models.Passkey) webauthn.Credential {
	flags := protocol.FlagUserPresent
	if r.UserVerified {
		flags |= protocol.FlagUserVerified
	}
	if r.BackupEligible {
		flags |= protocol.FlagBackupEligible
	}
	if r.BackupState {
		flags |= protocol.FlagBackupState
	}
	var transports []protocol.AuthenticatorTransport
	for _, t := range strings.Fields(r.Transports) {
		transports = append(transports, protocol.AuthenticatorTransport(t))
	}
	return webauthn.Credential{
		ID: r.CredentialID, PublicKey: r.PublicKey, AttestationFormat: r.AttestationFormat,
		Transport: transports, Flags: webauthn.NewCredentialFlags(flags),
		Authenticator: webauthn.Authenticator{AAGUID: r.AAGUID, SignCount: uint32(r.SignCount)},
	}
}

// BeginRegistration asks the browser for a new passkey: a discoverable
// credential (so it can sign in without a password), user verification
// preferred, none of the user's existing passkeys again. It returns the
// options for navigator.credentials.create as JSON, and the ceremony to
// keep in the session.
func (p *Passkeys) BeginRegistration(ctx context.Context, u models.User) ([]byte, Ceremony, error) {
	if p.web == nil {
		return nil, nil, p.unavailable
	}
	wu, _, err := p.webUser(p.db.WithContext(ctx), u)
	if err != nil {
		return nil, nil, err
	}
	creation, data, err := p.web.BeginRegistration(wu,
		webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{
			ResidentKey:        protocol.ResidentKeyRequirementRequired,
			RequireResidentKey: protocol.ResidentKeyRequired(),
			UserVerification:   protocol.VerificationPreferred,
		}),
		webauthn.WithExclusions(webauthn.Credentials(wu.creds).CredentialDescriptors()),
		webauthn.WithConveyancePreference(protocol.PreferNoAttestation),
	)
	if err != nil {
		return nil, nil, err
	}
	return p.begin(kindRegister, u.ID, creation, data)
}

func (p *Passkeys) begin(kind ceremonyKind, userID int64, options any, data *webauthn.SessionData) ([]byte, Ceremony, error) {
	c, err := p.newCeremony(kind, userID, data)
	if err != nil {
		return nil, nil, err
	}
	opts, err := json.Marshal(options)
	return opts, c, err
}

// FinishRegistration stores the passkey the browser made for the ceremony
// BeginRegistration started, under name (DefaultName, or the
// authenticator's, when empty). Every other session of the user ends: the
// returned user carries the new session epoch.
func (p *Passkeys) FinishRegistration(ctx context.Context, u models.User, c Ceremony, response []byte, name string, a accounts.Actor) (models.Passkey, models.User, error) {
	if p.web == nil {
		return models.Passkey{}, u, p.unavailable
	}
	name, err := cleanName(name)
	if err != nil {
		return models.Passkey{}, u, err
	}
	data, err := p.openCeremony(c, kindRegister, u.ID)
	if err != nil {
		return models.Passkey{}, u, err
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(response)
	if err != nil {
		return models.Passkey{}, u, errors.Join(ErrPasskeyRefused, err)
	}
	var row models.Passkey
	err = p.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		wu, rows, err := p.webUser(tx, u)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			wu.handle = data.UserID // the new handle the request carried
		} else if !bytes.Equal(wu.handle, data.UserID) {
			// The first passkey was added since the request, with its handle.
			return ErrCeremonyExpired
		}
		cred, err := p.web.CreateCredential(wu, data, parsed)
		if err != nil {
			return errors.Join(ErrPasskeyRefused, err)
		}
		var n int64
		if err := tx.Model(&models.Passkey{}).Where("credential_id = ?", cred.ID).Count(&n).Error; err != nil {
			return err
		}
		if n > 0 {
			return ErrAlreadyRegistered
		}
		if name == "" {
			name = authenticatorName(cred.Authenticator.AAGUID)
		}
		var transports []string
		for _, t := range cred.Transport {
			transports = append(transports, string(t))
		}
		row = models.Passkey{
			UserID: u.ID, CredentialID: cred.ID, UserHandle: wu.handle, PublicKey: cred.PublicKey,
			SignCount: int64(cred.Authenticator.SignCount), AAGUID: cred.Authenticator.AAGUID,
			Transports: strings.Join(transports, " "), AttestationFormat: cred.AttestationFormat,
			UserVerified: cred.Flags.UserVerified, BackupEligible: cred.Flags.BackupEligible, BackupState: cred.Flags.BackupState,
			Name: name, CreatedAt: p.clock.Now(),
		}
		if err := tx.Create(&row).Error; err != nil {
			return err
		}
		if u, err = accounts.EndOtherSessions(tx, u.ID); err != nil {
			return err
		}
		return p.accounts.Audit(tx, u, a, ActionPasskeyAdded, row.Name)
	})
	return row, u, err
}

// cleanName trims a passkey's name; "" leaves the choice to the caller.
func cleanName(name string) (string, error) {
	name = strings.Join(strings.Fields(name), " ")
	if utf8.RuneCountInString(name) > MaxNameLength {
		return "", ErrNameTooLong
	}
	return name, nil
}

// authenticatorName names a passkey after the authenticator model that
// made it, for the few whose AAGUID says so; else DefaultName.
func authenticatorName(aaguid []byte) string {
	if len(aaguid) != 16 {
		return DefaultName
	}
	known := map[string]string{
		"ea9b8d664d011d213ce4b6b48cb575d4": "Google Password Manager",
		"adce000235bcc60a648b0b25f1f05503": "Chrome on Mac",
		"fbfc3007154e4ecc8c0b6e020557d7bd": "iCloud Keychain",
		"08987058cadc4b81b6e130de50dcbe96": "Windows Hello",
		"9ddd1817af5a4672a2b93e3dd95000a9": "Windows Hello",
		"6028b017b1d44c02b4b3afcdafc96bb2": "Windows Hello",
		"bada5566a7aa401fbd9645619a55120d": "1Password",
		"d548826e79b4db40a3d811116f7e8349": "Bitwarden",
	}
	if n, ok := known[fmt.Sprintf("%x", aaguid)]; ok {
		return n
	}
	return DefaultName
}

// Rename gives one of the user's passkeys a new name (DefaultName for "").
func (p *Passkeys) Rename(ctx context.Context, userID, id int64, name string) error {
	name, err := cleanName(name)
	if err != nil {
		return err
	}
	res := p.db.WithContext(ctx).Model(&models.Passkey{}).Where("id = ? AND user_id = ?", id, userID).
		Update("name", cmp.Or(name, DefaultName))
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		return ErrPasskeyNotFound
	}
	return nil
}

// Remove deletes one of the user's passkeys. Every other session of the
// user ends: the returned user carries the new session epoch.
func (p *Passkeys) Remove(ctx context.Context, userID, id int64, a accounts.Actor) (models.Passkey, models.User, error) {
	var row models.Passkey
	var u models.User
	err := p.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Where("id = ? AND user_id = ?", id, userID).Limit(1).Find(&row).Error; err != nil {
			return err
		}
		if row.ID == 0 {
			return ErrPasskeyNotFound
		}
		if err := tx.Delete(&models.Passkey{}, row.ID).Error; err != nil {
			return err
		}
		var err error
		if u, err = accounts.EndOtherSessions(tx, userID); err != nil {
			return err
		}
		return p.accounts.Audit(tx, u, a, ActionPasskeyRemoved, row.Name)
	})
	return row, u, err
}

// BeginSecondStep asks the browser for one of the user's passkeys, after
// their password. It answers ErrPasskeyNotFound for a user without any.
func (p *Passkeys) BeginSecondStep(ctx context.Context, u models.User) ([]byte, Ceremony, error) {
	return p.beginUserAssertion(ctx, u, kindSecondStep, protocol.VerificationPreferred)
}

// FinishSecondStep checks the browser's answer to BeginSecondStep. It is
// throttled with the password throttle, under the user's email, like a
// code at the same step.
func (p *Passkeys) FinishSecondStep(ctx context.Context, u models.User, c Ceremony, response []byte, ip string, a accounts.Actor) (models.Passkey, error) {
	return p.finishUserAssertion(ctx, u, c, kindSecondStep, response, ip, a, "second step")
}

// BeginConfirm asks the browser for one of a signed-in user's passkeys, to
// confirm access before a sensitive action (sudo mode). User verification
// is required: the passkey stands in for the password. It answers
// ErrPasskeyNotFound for a user without any.
func (p *Passkeys) BeginConfirm(ctx context.Context, u models.User) ([]byte, Ceremony, error) {
	return p.beginUserAssertion(ctx, u, kindConfirm, protocol.VerificationRequired)
}

// FinishConfirm checks the browser's answer to BeginConfirm, throttled
// and audited as FinishSecondStep is.
func (p *Passkeys) FinishConfirm(ctx context.Context, u models.User, c Ceremony, response []byte, ip string, a accounts.Actor) (models.Passkey, error) {
	return p.finishUserAssertion(ctx, u, c, kindConfirm, response, ip, a, "confirm access")
}

// beginUserAssertion asks for one of the user's own passkeys.
func (p *Passkeys) beginUserAssertion(ctx context.Context, u models.User, kind ceremonyKind, verification protocol.UserVerificationRequirement) ([]byte, Ceremony, error) {
	if p.web == nil {
		return nil, nil, p.unavailable
	}
	wu, rows, err := p.webUser(p.db.WithContext(ctx), u)
	if err != nil {
		return nil, nil, err
	}
	if len(rows) == 0 {
		return nil, nil, ErrPasskeyNotFound
	}
	assertion, data, err := p.web.BeginLogin(wu, webauthn.WithUserVerification(verification))
	if err != nil {
		return nil, nil, err
	}
	return p.begin(kind, u.ID, assertion, data)
}

// finishUserAssertion checks the answer to beginUserAssertion under the
// password throttle; how names the use in the audit log.
func (p *Passkeys) finishUserAssertion(ctx context.Context, u models.User, c Ceremony, kind ceremonyKind, response []byte, ip string, a accounts.Actor, how string) (models.Passkey, error) {
	if p.web == nil {
		return models.Passkey{}, p.unavailable
	}
	data, err := p.openCeremony(c, kind, u.ID)
	if err != nil {
		return models.Passkey{}, err
	}
	var used models.Passkey
	err = p.accounts.Throttled(ctx, u.Email, ip, func(tx *gorm.DB) error {
		parsed, err := protocol.ParseCredentialRequestResponseBytes(response)
		if err != nil {
			return errors.Join(ErrPasskeyRefused, err)
		}
		wu, rows, err := p.webUser(tx, u)
		if err != nil {
			return err
		}
		cred, err := p.web.ValidateLogin(wu, data, parsed)
		if err != nil {
			return errors.Join(ErrPasskeyRefused, err)
		}
		used, err = p.used(tx, u, rows, cred, a, how)
		return err
	})
	return used, err
}

// BeginSignIn asks the browser for any passkey of this site, for a sign-in
// without a password; mediation is "conditional" for the browser's
// autofill, else "" (a button). User verification is required: the
// passkey is then both steps.
func (p *Passkeys) BeginSignIn(ctx context.Context, conditional bool) ([]byte, Ceremony, error) {
	if p.web == nil {
		return nil, nil, p.unavailable
	}
	mediation := protocol.MediationDefault
	if conditional {
		mediation = protocol.MediationConditional
	}
	assertion, data, err := p.web.BeginDiscoverableMediatedLogin(mediation, webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		return nil, nil, err
	}
	return p.begin(kindSignIn, 0, assertion, data)
}

// FinishSignIn checks the browser's answer to BeginSignIn and returns the
// user the passkey belongs to. It is throttled with the password throttle,
// under that user's email (or, for a credential no one has, a shared name:
// the IP's count stops guessing).
func (p *Passkeys) FinishSignIn(ctx context.Context, c Ceremony, response []byte, ip string, a accounts.Actor) (models.User, models.Passkey, error) {
	if p.web == nil {
		return models.User{}, models.Passkey{}, p.unavailable
	}
	data, err := p.openCeremony(c, kindSignIn, 0)
	if err != nil {
		return models.User{}, models.Passkey{}, err
	}
	parsed, perr := protocol.ParseCredentialRequestResponseBytes(response)
	var owner models.User
	key := unknownCredentialKey
	if perr == nil {
		// passkeys_credential_id_idx
		var row models.Passkey
		if err := p.db.WithContext(ctx).Where("credential_id = ?", parsed.RawID).Limit(1).Find(&row).Error; err != nil {
			return models.User{}, models.Passkey{}, err
		}
		if row.ID != 0 {
			if owner, err = p.accounts.User(ctx, row.UserID); err != nil {
				return models.User{}, models.Passkey{}, err
			}
			key = owner.Email
		}
	}
	var used models.Passkey
	err = p.accounts.Throttled(ctx, key, ip, func(tx *gorm.DB) error {
		if perr != nil {
			return errors.Join(ErrPasskeyRefused, perr)
		}
		if owner.ID == 0 {
			return ErrPasskeyRefused // unknown credential
		}
		wu, rows, err := p.webUser(tx, owner)
		if err != nil {
			return err
		}
		handler := func(rawID, userHandle []byte) (webauthn.User, error) {
			if !bytes.Equal(userHandle, wu.handle) {
				return nil, protocol.ErrBadRequest.WithDetails("user handle of another user")
			}
			return wu, nil
		}
		cred, err := p.web.ValidateDiscoverableLogin(handler, data, parsed)
		if err != nil {
			return errors.Join(ErrPasskeyRefused, err)
		}
		used, err = p.used(tx, owner, rows, cred, a, "passwordless sign-in")
		return err
	})
	return owner, used, err
}

// used records a verified assertion: the signature counter must have
// moved forward (or both be zero, as with synced passkeys), and it is
// kept only if no concurrent use moved it first.
func (p *Passkeys) used(tx *gorm.DB, u models.User, rows []models.Passkey, cred *webauthn.Credential, a accounts.Actor, how string) (models.Passkey, error) {
	i := slices.IndexFunc(rows, func(r models.Passkey) bool { return bytes.Equal(r.CredentialID, cred.ID) })
	if i < 0 {
		return models.Passkey{}, ErrPasskeyRefused
	}
	row := rows[i]
	if cred.Authenticator.CloneWarning {
		return row, ErrSignCountWentBack
	}
	now := p.clock.Now()
	res := tx.Model(&models.Passkey{}).Where("id = ? AND sign_count = ?", row.ID, row.SignCount).
		Updates(map[string]any{"sign_count": int64(cred.Authenticator.SignCount), "backup_state": cred.Flags.BackupState, "last_used_at": now})
	if res.Error != nil {
		return row, res.Error
	}
	if res.RowsAffected == 0 {
		return row, ErrSignCountWentBack
	}
	row.SignCount, row.LastUsedAt = int64(cred.Authenticator.SignCount), &now
	return row, p.accounts.Audit(tx, u, a, ActionPasskeyUsed, row.Name+" ("+how+")")
}
