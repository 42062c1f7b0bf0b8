package testutil

import (
	"bytes"
	"log/slog"
	"mime"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"keysmith/app"
	"keysmith/clock"
	"keysmith/config"
	"keysmith/mailer"
)

// Epoch is where every test's fake clock starts.
var Epoch = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// App is a real Keysmith behind an httptest server.
type App struct {
	*app.App
	Server *httptest.Server
	Clock  *clock.Fake
	Logs   *SyncBuffer

	t    testing.TB
	smtp *SMTPServer // where mail goes, when not to the dev mailbox
}

// Option adjusts a test app before it starts.
type Option func(*config.Config, *app.Options)

// WithTransport sends mail through t instead of the dev mailbox.
func WithTransport(t mailer.Transport) Option {
	return func(c *config.Config, o *app.Options) { o.Transport = t }
}

// WithSMTP sends mail to a real SMTP server instead of the dev mailbox.
func WithSMTP(s *SMTPServer) Option {
	return func(c *config.Config, o *app.Options) {
		c.SMTPURL, c.DevMailbox = s.URL, false
		transport, err := mailer.NewSMTP(s.URL, s.ClientTLS)
		if err != nil {
			panic(err)
		}
		o.Transport = smtpTransport{transport, s}
	}
}

// smtpTransport is the real SMTP transport, marked with the server it
// talks to so App.Mails can read what that server received.
type smtpTransport struct {
	mailer.Transport
	server *SMTPServer
}

// WithConfig changes the configuration.
func WithConfig(f func(*config.Config)) Option {
	return func(c *config.Config, _ *app.Options) { f(c) }
}

// WithQuietLogs keeps only error logs, for benchmarks that must not
// measure a growing in-memory log.
func WithQuietLogs() Option {
	return func(c *config.Config, _ *app.Options) { c.LogLevel = "error" }
}

// WithClock shares a clock, for example between two app instances.
func WithClock(clk *clock.Fake) Option {
	return func(_ *config.Config, o *app.Options) { o.Clock = clk }
}

// EncryptionKey is the tests' KEYSMITH_ENCRYPTION_KEY on PostgreSQL.
const EncryptionKey = "a2V5c21pdGgtdGVzdHMtZW5jcnlwdGlvbi1rZXkhISE="

// StartApp builds Keysmith on dbURL exactly as main does (configuration
// from KEYSMITH_* variables, migrations, services, routes), with a fake
// clock, debug logs captured in memory and fast password hashing, and
// serves it until the test ends.
func StartApp(t testing.TB, dbURL string, opts ...Option) *App {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	env := map[string]string{
		"KEYSMITH_DATABASE_URL": dbURL,
		"KEYSMITH_BASE_URL":     "http://" + srv.Listener.Addr().String(),
		"KEYSMITH_LOG_LEVEL":    "debug",
		"KEYSMITH_DEV_MAILBOX":  "true",
	}
	if strings.HasPrefix(dbURL, "postgres") {
		// Replicas of one test share it, as an operator's would.
		env["KEYSMITH_ENCRYPTION_KEY"] = EncryptionKey
	}
	cfg, err := config.Load(Env(env))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	cfg.BcryptCost = 4 // bcrypt.MinCost: tests need not pay for production hashing
	logs := &SyncBuffer{}
	o := app.Options{Clock: clock.NewFake(Epoch)}
	for _, opt := range opts {
		opt(&cfg, &o)
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	o.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level}))
	a, err := app.New(cfg, o)
	if err != nil {
		t.Fatalf("app: %v", err)
	}
	srv.Config.Handler = a.Echo
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		if err := a.Close(); err != nil {
			t.Errorf("close app: %v", err)
		}
	})
	out := &App{App: a, Server: srv, Clock: o.Clock.(*clock.Fake), Logs: logs, t: t}
	if st, ok := o.Transport.(smtpTransport); ok {
		out.smtp = st.server
	}
	return out
}

// Mails waits for the mails sent in the background, then lists the dev
// mailbox, or what the SMTP server received, newest first.
func (a *App) Mails() []mailer.Stored {
	a.Outbox.Wait()
	if a.smtp == nil {
		return a.Mailbox.List()
	}
	var out []mailer.Stored
	for i, m := range a.smtp.Messages() {
		msg, parts := MIMEParts(a.t, m.Data)
		dec := new(mime.WordDecoder)
		subject, _ := dec.DecodeHeader(msg.Header.Get("Subject"))
		out = append(out, mailer.Stored{ID: i + 1, Message: mailer.Message{
			MessageID: strings.Trim(msg.Header.Get("Message-Id"), "<>"),
			From:      msg.Header.Get("From"),
			To:        m.To,
			Subject:   subject,
			Text:      parts["text/plain"],
			HTML:      parts["text/html"],
		}})
	}
	slices.Reverse(out)
	return out
}

// URL is the absolute URL of a path on the test server.
func (a *App) URL(path string) string { return a.Server.URL + path }

// SyncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
