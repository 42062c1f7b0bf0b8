package mailer

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"strconv"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// SMTP sends through an SMTP server named by a URL (SPEC §8):
// smtp://user:pass@host:port uses STARTTLS when the server offers it,
// ?starttls=required insists on it, smtps:// is implicit TLS.
type SMTP struct {
	opts []gomail.Option
	host string
}

// NewSMTP parses an smtp:// or smtps:// URL. tlsConfig may be nil for the
// system's trusted roots; the server name is always verified.
func NewSMTP(rawURL string, tlsConfig *tls.Config) (*SMTP, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("smtp url: %w", err)
	}
	opts := []gomail.Option{gomail.WithTimeout(15 * time.Second)}
	if tlsConfig != nil {
		cfg := tlsConfig.Clone()
		cfg.ServerName = u.Hostname()
		opts = append(opts, gomail.WithTLSConfig(cfg))
	}
	switch u.Scheme {
	case "smtps":
		opts = append(opts, gomail.WithSSL(), gomail.WithPort(portOr(u, 465)))
	case "smtp":
		policy := gomail.TLSOpportunistic
		if u.Query().Get("starttls") == "required" {
			policy = gomail.TLSMandatory
		}
		opts = append(opts, gomail.WithTLSPolicy(policy), gomail.WithPort(portOr(u, 587)))
	default:
		return nil, fmt.Errorf("smtp url: scheme must be smtp or smtps, not %q", u.Scheme)
	}
	if u.User != nil {
		pass, _ := u.User.Password()
		opts = append(opts,
			gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover),
			gomail.WithUsername(u.User.Username()),
			gomail.WithPassword(pass))
	}
	return &SMTP{opts: opts, host: u.Hostname()}, nil
}

func portOr(u *url.URL, def int) int {
	if p, err := strconv.Atoi(u.Port()); err == nil {
		return p
	}
	return def
}

// Send delivers one message over a fresh connection.
func (s *SMTP) Send(ctx context.Context, m Message) error {
	msg := gomail.NewMsg()
	if err := msg.From(m.From); err != nil {
		return fmt.Errorf("from: %w", err)
	}
	if err := msg.To(m.To...); err != nil {
		return fmt.Errorf("to: %w", err)
	}
	msg.Subject(m.Subject)
	msg.SetMessageIDWithValue(m.MessageID)
	msg.SetDate()
	for k, v := range m.Headers {
		msg.SetGenHeader(gomail.Header(k), v)
	}
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	if m.HTML != "" {
		msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	}
	client, err := gomail.NewClient(s.host, s.opts...)
	if err != nil {
		return fmt.Errorf("smtp client: %w", err)
	}
	if err := client.DialAndSendWithContext(ctx, msg); err != nil {
		return fmt.Errorf("smtp send to %s: %w", s.host, err)
	}
	return nil
}
