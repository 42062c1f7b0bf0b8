// Package mailer composes Keysmith's emails (HTML from templ components,
// plain text from text/template) and hands them to a transport: SMTP in
// production, the in-memory dev mailbox otherwise.
package mailer

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/mail"
	"net/url"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/a-h/templ"

	"keysmith/views/emails"
)

// Message is one composed email.
type Message struct {
	MessageID string // without angle brackets; stable, so a resend is recognisable
	From      string
	To        []string
	Subject   string
	Text      string
	HTML      string
	Headers   map[string]string
}

// Transport delivers a message. Send returns only after the receiving
// server accepted it (or refused it).
type Transport interface {
	Send(ctx context.Context, m Message) error
}

// Mailer composes and sends Keysmith's emails.
type Mailer struct {
	transport Transport
	from      string
	baseURL   string
	domain    string // right-hand side of Message-IDs
	inFlight  sync.WaitGroup
}

// Go sends in the background, so that how long a request takes says
// nothing about whether it sent mail (a password reset must not reveal
// which emails have accounts). onError hears of a failed send. Wait
// returns when every send started by Go is done: shutdown calls it, and
// tests before they read the mailbox.
func (m *Mailer) Go(send func(context.Context) error, onError func(error)) {
	m.inFlight.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := send(ctx); err != nil && onError != nil {
			onError(err)
		}
	})
}

// Wait waits for the sends started by Go.
func (m *Mailer) Wait() { m.inFlight.Wait() }

// New returns a Mailer sending from `from` with links under baseURL.
func New(t Transport, from, baseURL string) *Mailer {
	domain := "keysmith.localhost"
	if a, err := mail.ParseAddress(from); err == nil {
		if at := strings.LastIndex(a.Address, "@"); at >= 0 {
			domain = a.Address[at+1:]
		}
	}
	return &Mailer{transport: t, from: from, baseURL: strings.TrimRight(baseURL, "/"), domain: domain}
}

// URL makes an absolute link to a dashboard path.
func (m *Mailer) URL(path string) string { return m.baseURL + path }

var textTemplates = template.Must(template.New("").Parse(`
{{define "signup"}}Hi {{.Name}},

Confirm your email address to finish creating your Keysmith account:

{{.Link}}

The link works once and for {{.Lifetime}}. If you did not sign up, ignore this email: no account is created.
{{end}}
{{define "exists"}}Hi {{.Name}},

Someone tried to create a Keysmith account with this email address, but you already have one. If it was you, log in instead:

{{.LoginURL}}

Forgot your password? Choose a new one here: {{.ResetURL}}

If it was not you, ignore this email: nothing has changed.
{{end}}
{{define "reset"}}Hi {{.Name}},

Someone asked to reset the password of your Keysmith account. If it was you, choose a new password here:

{{.Link}}

The link works once and for {{.Lifetime}}. If you did not ask for it, ignore this email: your password stays as it is.
{{end}}
{{define "invitation"}}Hi,

{{.Inviter}} invited you to join {{.Workspace}} on Keysmith as {{.Role}}, to manage the workspace's API keys together. Accept here:

{{.Link}}

The link works once and for {{.Lifetime}}. Sign up or log in with this email address to accept. If you did not expect it, ignore this email.
{{end}}
{{define "reminder"}}Hi {{.Name}},

{{.Headline}}

  Key:        {{.KeyName}}
  Hint:       {{.Hint}}
  Workspace:  {{.Workspace}} ({{.Environment}})
  Expires:    {{.ExpiresUTC}} ({{.ExpiresRelative}})
  Last used:  {{.LastUsed}}

{{if .Expired}}Requests using this key now fail. If something still depends on it, create a replacement from the key's page:{{else}}Rotate it before then: you get a new secret, and the old key can keep working for a grace period while you deploy it:{{end}}

{{.KeyURL}}

You get these emails as the key's creator or a workspace admin. Stop expiry reminders: {{.UnsubscribeURL}}
{{end}}`))

// SendSignUpLink mails the link that confirms a new address and creates
// its account, then goes on to next (a path, such as the invitation the
// sign-up started from; the link carries it so the database need not).
func (m *Mailer) SendSignUpLink(ctx context.Context, to, name, token, next string, lifetime time.Duration) error {
	link := "/signup/confirm?token=" + url.QueryEscape(token)
	if next != "" {
		link += "&next=" + url.QueryEscape(next)
	}
	data := emails.SignUpLink{Name: name, Link: m.URL(link), Lifetime: humanDuration(lifetime)}
	return m.send(ctx, to, "Confirm your email for Keysmith", emails.SignUpLinkHTML(data), "signup", data)
}

// SendAccountExists tells an account's owner that someone tried to sign up
// with their address, instead of telling the sign-up form.
func (m *Mailer) SendAccountExists(ctx context.Context, to, name string) error {
	data := emails.AccountExists{Name: name, LoginURL: m.URL("/login"), ResetURL: m.URL("/forgot-password")}
	return m.send(ctx, to, "You already have a Keysmith account", emails.AccountExistsHTML(data), "exists", data)
}

// SendPasswordReset mails a single-use reset link.
func (m *Mailer) SendPasswordReset(ctx context.Context, to, name, token string, lifetime time.Duration) error {
	data := emails.PasswordReset{
		Name:     name,
		Link:     m.URL("/reset-password?token=" + token),
		Lifetime: humanDuration(lifetime),
	}
	return m.send(ctx, to, "Reset your Keysmith password", emails.PasswordResetHTML(data), "reset", data)
}

// SendInvitation mails a single-use link to join a workspace.
func (m *Mailer) SendInvitation(ctx context.Context, to, inviter, workspace, role, token string, lifetime time.Duration) error {
	data := emails.Invitation{Inviter: inviter, Workspace: workspace, Role: role, Link: m.URL("/invitations/" + token), Lifetime: humanDuration(lifetime)}
	return m.send(ctx, to, inviter+" invited you to "+workspace+" on Keysmith", emails.InvitationHTML(data), "invitation", data)
}

// SendReminder mails one expiry reminder. messageID is stable for the
// delivery, so a resend after a crash is recognisable as the same message;
// the List-Unsubscribe headers give mail clients a one-click opt-out.
func (m *Mailer) SendReminder(ctx context.Context, to, messageID, subject string, data emails.Reminder) error {
	return m.deliver(ctx, to, subject, emails.ReminderHTML(data), "reminder", data, messageID, map[string]string{
		"List-Unsubscribe":      "<" + data.UnsubscribeURL + ">",
		"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
	})
}

// Domain is the right-hand side of the Message-IDs this mailer makes.
func (m *Mailer) Domain() string { return m.domain }

func (m *Mailer) send(ctx context.Context, to, subject string, html templ.Component, textName string, data any) error {
	return m.deliver(ctx, to, subject, html, textName, data, rand.Text()+"@"+m.domain, nil)
}

func (m *Mailer) deliver(ctx context.Context, to, subject string, html templ.Component, textName string, data any, messageID string, headers map[string]string) error {
	var h, t bytes.Buffer
	if err := html.Render(ctx, &h); err != nil {
		return fmt.Errorf("render %s html: %w", textName, err)
	}
	if err := textTemplates.ExecuteTemplate(&t, textName, data); err != nil {
		return fmt.Errorf("render %s text: %w", textName, err)
	}
	msg := Message{
		MessageID: messageID,
		From:      m.from,
		To:        []string{to},
		Subject:   subject,
		HTML:      h.String(),
		Text:      strings.TrimLeft(t.String(), "\n"),
		Headers:   headers,
	}
	return m.transport.Send(ctx, msg)
}

func humanDuration(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0 && d >= 24*time.Hour:
		return plural(int(d/(24*time.Hour)), "day")
	case d%time.Hour == 0 && d >= time.Hour:
		return plural(int(d/time.Hour), "hour")
	default:
		return plural(int(d/time.Minute), "minute")
	}
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}
