package testutil

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"

	"keysmith/app"
	"keysmith/config"
)

// OIDCUser is who the test provider signs in next, and what it says
// about them.
type OIDCUser struct {
	Subject       string
	Email         string
	EmailVerified bool
	Name          string
	Claims        map[string]any // more claims of the ID token: an org, groups
}

// OIDCProvider is a real OpenID provider (zitadel/oidc's op package, with
// its example in-memory storage) served in the test process. Its login
// page signs in the user SetUser named, at once, without a form.
type OIDCProvider struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	// OtherClientID is a second client registered at the provider, for
	// tokens meant for someone else.
	OtherClientID string
	Server        *httptest.Server

	storage *opStorage
	mu      sync.Mutex
	next    OIDCUser
	tamper  func(claims map[string]any)
	rogue   *rsa.PrivateKey
	logins  int
	lastReq url.Values
}

// NewOIDCProvider builds a provider that does not answer until Start (an
// issuer that is down).
func NewOIDCProvider(t testing.TB) *OIDCProvider {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	p := &OIDCProvider{
		Issuer: issuer, ClientID: "keysmith", ClientSecret: "keysmith-secret", OtherClientID: "another-app", Server: srv,
		next: OIDCUser{Subject: "sub-1", Email: "ada@example.com", EmailVerified: true, Name: "Ada Lovelace"},
	}
	users := &oidcUsers{p: p, users: map[string]*storage.User{}}
	clients := map[string]*storage.Client{
		p.ClientID:      storage.WebClient(p.ClientID, p.ClientSecret),
		p.OtherClientID: storage.WebClient(p.OtherClientID, "another-secret"),
	}
	p.storage = &opStorage{Storage: storage.NewStorageWithClients(users, clients), p: p}
	provider, err := op.NewProvider(&op.Config{
		CryptoKey:                sha256.Sum256([]byte("keysmith tests")),
		DefaultLogoutRedirectURI: "/logged-out",
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		SupportedUILocales:       []language.Tag{language.English},
	}, p.storage, op.StaticIssuer(issuer), op.WithAllowInsecure())
	if err != nil {
		t.Fatal(err)
	}
	callback := op.AuthCallbackURL(provider)
	mux := http.NewServeMux()
	// The login page: the next user signs in at once.
	mux.Handle("/login/username", op.NewIssuerInterceptor(provider.IssuerFromRequest).HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("authRequestID")
		u := users.put(p.nextUser())
		if err := p.storage.CheckUsernamePassword(u.Username, u.Password, id); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		p.logins++
		p.mu.Unlock()
		http.Redirect(w, r, callback(r.Context(), id), http.StatusFound)
	}))
	mux.HandleFunc("/logged-out", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("signed out")) })
	mux.Handle("/", provider)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/authorize":
			p.mu.Lock()
			p.lastReq = r.URL.Query()
			p.mu.Unlock()
		case "/oauth/token":
			p.mu.Lock()
			tamper, rogue := p.tamper, p.rogue
			p.mu.Unlock()
			if tamper != nil || rogue != nil {
				p.serveTampered(w, r, mux, tamper, rogue)
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
	t.Cleanup(srv.Close)
	return p
}

// StartOIDCProvider is a provider that answers.
func StartOIDCProvider(t testing.TB) *OIDCProvider {
	p := NewOIDCProvider(t)
	p.Start()
	return p
}

// Start makes the provider answer.
func (p *OIDCProvider) Start() { p.Server.Start() }

// Config is Keysmith's KEYSMITH_OIDC_* settings for this provider.
func (p *OIDCProvider) Config(name string) config.OIDC {
	return config.OIDC{Issuer: p.Issuer, ClientID: p.ClientID, ClientSecret: p.ClientSecret, Name: name, Scopes: []string{"openid", "email", "profile"}}
}

// SetUser makes u the one who signs in next (and at every later sign-in,
// until changed).
func (p *OIDCProvider) SetUser(u OIDCUser) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next = u
}

func (p *OIDCProvider) nextUser() OIDCUser {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.next
}

// Tamper rewrites the claims of the ID tokens the token endpoint returns
// and signs them again with the provider's key (nil: leave them alone).
func (p *OIDCProvider) Tamper(f func(claims map[string]any)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tamper = f
}

// SignWithRogueKey signs the ID tokens with a key the provider does not
// publish (on: forged tokens).
func (p *OIDCProvider) SignWithRogueKey(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rogue = nil
	if on {
		p.rogue, _ = rsa.GenerateKey(rand.Reader, 2048)
	}
}

// Logins counts the sign-ins at the provider's login page.
func (p *OIDCProvider) Logins() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logins
}

// LastAuthorizeRequest is the query of the last authorization request.
func (p *OIDCProvider) LastAuthorizeRequest() url.Values {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastReq
}

// serveTampered answers a token request through the provider, then
// rewrites the ID token's claims and signs it again.
func (p *OIDCProvider) serveTampered(w http.ResponseWriter, r *http.Request, next http.Handler, tamper func(map[string]any), rogue *rsa.PrivateKey) {
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	var body map[string]any
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &body) != nil {
		copyResponse(w, rec)
		return
	}
	raw, _ := body["id_token"].(string)
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		copyResponse(w, rec)
		return
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	claims := map[string]any{}
	if err != nil || json.Unmarshal(payload, &claims) != nil {
		http.Error(w, "tamper: bad token", http.StatusInternalServerError)
		return
	}
	if tamper != nil {
		tamper(claims)
	}
	key, err := p.storage.SigningKey(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	jwk := jose.JSONWebKey{Key: key.Key(), KeyID: key.ID()}
	if rogue != nil {
		jwk.Key = rogue
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jwk}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	payload, _ = json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	body["id_token"], _ = jws.CompactSerialize()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(body)
}

func copyResponse(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = bytes.NewReader(rec.Body.Bytes()).WriteTo(w)
}

// opStorage is the example storage with Keysmith's redirect URIs allowed
// (any, as the test app's address is known only once it listens), the
// profile and email claims in the ID token (as most providers put them),
// and the test user's extra claims.
type opStorage struct {
	*storage.Storage
	p *OIDCProvider
}

func (s *opStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return testClient{c}, nil
}

func (s *opStorage) SetUserinfoFromRequest(ctx context.Context, info *oidc.UserInfo, token op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, info, token, scopes); err != nil {
		return err
	}
	s.extraClaims(info, token.GetSubject())
	return nil
}

func (s *opStorage) SetUserinfoFromToken(ctx context.Context, info *oidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, info, tokenID, subject, origin); err != nil {
		return err
	}
	s.extraClaims(info, info.Subject)
	return nil
}

func (s *opStorage) extraClaims(info *oidc.UserInfo, subject string) {
	u := s.p.nextUser()
	if u.Subject != subject {
		return
	}
	if u.Name != "" {
		info.Name = u.Name
	}
	for k, v := range u.Claims {
		info.AppendClaims(k, v)
	}
}

type testClient struct{ op.Client }

func (testClient) IDTokenUserinfoClaimsAssertion() bool { return true }

// RedirectURIGlobs allows the test app's callback on any local port.
func (testClient) RedirectURIGlobs() []string {
	return []string{"http://127.0.0.1:*/login/oidc/callback", "http://localhost:*/login/oidc/callback"}
}
func (testClient) PostLogoutRedirectURIGlobs() []string {
	return []string{"http://127.0.0.1:*", "http://127.0.0.1:*/*", "http://localhost:*", "http://localhost:*/*"}
}

// oidcUsers is the provider's user store: each user signing in is put
// there under their subject.
type oidcUsers struct {
	p     *OIDCProvider
	mu    sync.Mutex
	users map[string]*storage.User
}

func (s *oidcUsers) put(u OIDCUser) *storage.User {
	s.mu.Lock()
	defer s.mu.Unlock()
	su := &storage.User{
		ID: u.Subject, Username: u.Subject, Password: "password", FirstName: u.Name,
		Email: u.Email, EmailVerified: u.EmailVerified, PreferredLanguage: language.English,
	}
	s.users[u.Subject] = su
	return su
}

func (s *oidcUsers) GetUserByID(id string) *storage.User {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users[id]
}

func (s *oidcUsers) GetUserByUsername(name string) *storage.User { return s.GetUserByID(name) }

func (s *oidcUsers) ExampleClientID() string { return "service" }

// WithOIDC points Keysmith at the provider, named name on its button;
// adjust changes the rest of KEYSMITH_OIDC_* (nil for none). A provider
// that is down is retried every few milliseconds.
func WithOIDC(p *OIDCProvider, name string, adjust func(*config.OIDC)) Option {
	return func(c *config.Config, o *app.Options) {
		c.OIDC = p.Config(name)
		if adjust != nil {
			adjust(&c.OIDC)
		}
		o.SSOBackoff = func(int) time.Duration { return 10 * time.Millisecond }
	}
}
