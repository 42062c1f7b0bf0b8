package testutil

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// SMTPServer is a real SMTP server on loopback that keeps what it receives.
// It offers STARTTLS with a self-signed certificate (ClientTLS trusts it)
// and requires AUTH PLAIN with the user and password of its URL.
type SMTPServer struct {
	URL       string      // smtp://user:pass@127.0.0.1:port
	ClientTLS *tls.Config // what a client needs to trust the server
	srv       *smtp.Server
	mu        sync.Mutex
	messages  []ReceivedMail
	// refuse makes the next n DATA commands fail with a temporary error.
	refuse int
	// delay holds each DATA's answer this long, like a slow relay.
	delay time.Duration
	// holding counts the messages read and not yet answered.
	holding int
}

// ReceivedMail is one message as the server got it.
type ReceivedMail struct {
	From string
	To   []string
	Data []byte // the raw RFC 5322 message
}

const smtpUser, smtpPass = "keysmith", "s3cret-smtp"

// StartSMTP starts a server that stops when the test ends.
func StartSMTP(t *testing.T) *SMTPServer {
	t.Helper()
	serverTLS, clientTLS := selfSignedTLS(t)
	s := startSMTP(t, serverTLS)
	s.ClientTLS = clientTLS
	return s
}

// StartPlainSMTP starts a server without STARTTLS and without AUTH, like a
// local relay or a developer's mail catcher.
func StartPlainSMTP(t *testing.T) *SMTPServer {
	t.Helper()
	s := startSMTP(t, nil)
	s.URL = strings.Replace(s.URL, smtpUser+":"+smtpPass+"@", "", 1)
	return s
}

func startSMTP(t *testing.T, serverTLS *tls.Config) *SMTPServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &SMTPServer{}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &smtpSession{server: s, authed: serverTLS == nil}, nil }))
	s.srv.Domain = "localhost"
	s.srv.TLSConfig = serverTLS
	s.srv.AllowInsecureAuth = serverTLS == nil
	s.srv.ReadTimeout = 10 * time.Second
	s.srv.WriteTimeout = 10 * time.Second
	go func() { _ = s.srv.Serve(ln) }()
	t.Cleanup(func() { _ = s.srv.Close() })
	s.URL = "smtp://" + smtpUser + ":" + smtpPass + "@" + ln.Addr().String()
	return s
}

// Refuse makes the next n deliveries fail with 451 (try again later).
func (s *SMTPServer) Refuse(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse = n
}

// SetDelay makes the server wait d (real time) after reading each
// message's data before it answers, like a slow relay.
func (s *SMTPServer) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Holding is how many messages the server has read and not yet answered:
// with SetDelay, mails in flight.
func (s *SMTPServer) Holding() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.holding
}

// Messages returns what has arrived so far.
func (s *SMTPServer) Messages() []ReceivedMail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ReceivedMail(nil), s.messages...)
}

type smtpSession struct {
	server *SMTPServer
	authed bool // AUTH done, or a plain server that needs none
	from   string
	to     []string
}

func (s *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *smtpSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != smtpUser || pass != smtpPass {
			return errors.New("invalid credentials")
		}
		s.authed = true
		return nil
	}), nil
}

func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if !s.authed {
		return smtp.ErrAuthRequired
	}
	s.from = from
	return nil
}

func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *smtpSession) Data(r io.Reader) error {
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r); err != nil {
		return err
	}
	s.server.mu.Lock()
	delay := s.server.delay
	s.server.holding++
	s.server.mu.Unlock()
	time.Sleep(delay)
	s.server.mu.Lock()
	defer s.server.mu.Unlock()
	s.server.holding--
	if s.server.refuse > 0 {
		s.server.refuse--
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	s.server.messages = append(s.server.messages, ReceivedMail{From: s.from, To: s.to, Data: buf.Bytes()})
	return nil
}

func (s *smtpSession) Reset()        { s.from, s.to = "", nil }
func (s *smtpSession) Logout() error { return nil }
