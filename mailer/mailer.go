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
}

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
{{define "notice"}}Hi {{.Name}},

{{.Headline}}
{{range .Facts}}
  {{.}}{{end}}

{{.Body}}

{{.LinkLabel}}: {{.Link}}
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

// SignUpLink is the mail with the link that confirms a new address and
// creates its account, then goes on to next (a path, such as the
// invitation the sign-up started from; the link carries it so the database
// need not).
func (m *Mailer) SignUpLink(ctx context.Context, to, name, token, next string, lifetime time.Duration) (Message, error) {
	link := "/signup/confirm?token=" + url.QueryEscape(token)
	if next != "" {
		link += "&next=" + url.QueryEscape(next)
	}
	data := emails.SignUpLink{Name: name, Link: m.URL(link), Lifetime: humanDuration(lifetime)}
	return m.compose(ctx, to, "Confirm your email for Keysmith", emails.SignUpLinkHTML(data), "signup", data, nil)
}

// AccountExists tells an account's owner that someone tried to sign up
// with their address, instead of telling the sign-up form.
func (m *Mailer) AccountExists(ctx context.Context, to, name string) (Message, error) {
	data := emails.AccountExists{Name: name, LoginURL: m.URL("/login"), ResetURL: m.URL("/forgot-password")}
	return m.compose(ctx, to, "You already have a Keysmith account", emails.AccountExistsHTML(data), "exists", data, nil)
}

// PasswordReset is the mail with a single-use reset link.
func (m *Mailer) PasswordReset(ctx context.Context, to, name, token string, lifetime time.Duration) (Message, error) {
	data := emails.PasswordReset{
		Name:     name,
		Link:     m.URL("/reset-password?token=" + token),
		Lifetime: humanDuration(lifetime),
	}
	return m.compose(ctx, to, "Reset your Keysmith password", emails.PasswordResetHTML(data), "reset", data, nil)
}

// Invitation is the mail with a single-use link to join a workspace.
func (m *Mailer) Invitation(ctx context.Context, to, inviter, workspace, role, token string, lifetime time.Duration) (Message, error) {
	data := emails.Invitation{Inviter: inviter, Workspace: workspace, Role: role, Link: m.URL("/invitations/" + token), Lifetime: humanDuration(lifetime)}
	return m.compose(ctx, to, inviter+" invited you to "+workspace+" on Keysmith", emails.InvitationHTML(data), "invitation", data, nil)
}

// Reminder is one expiry reminder. The List-Unsubscribe headers give mail
// clients a one-click opt-out.
func (m *Mailer) Reminder(ctx context.Context, to, subject string, data emails.Reminder) (Message, error) {
	return m.compose(ctx, to, subject, emails.ReminderHTML(data), "reminder", data, map[string]string{
		"List-Unsubscribe":      "<" + data.UnsubscribeURL + ">",
		"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
	})
}

// Notice is a short account notice (a leaked key, an inactivity warning,
// a webhook endpoint switched off).
func (m *Mailer) Notice(ctx context.Context, to, subject string, data emails.Notice) (Message, error) {
	return m.compose(ctx, to, subject, emails.NoticeHTML(data), "notice", data, nil)
}

// WebhookDisabled tells an admin that Keysmith switched off an endpoint
// whose every call failed for days.
func (m *Mailer) WebhookDisabled(ctx context.Context, to, name, url, reason, link string) (Message, error) {
	return m.Notice(ctx, to, "A webhook endpoint was switched off", emails.Notice{
		Name: name, Headline: "Keysmith switched off the webhook endpoint " + url + ".",
		Facts: []string{reason},
		Body:  "Events for it are no longer sent. Fix the receiver, then switch the endpoint on again; send a test event to check it.",
		Link:  link, LinkLabel: "Open the endpoint",
	})
}

// Send hands a composed message to the transport: it returns once the
// receiving server accepted (or refused) it. Every mail Keysmith sends is
// automatic (RFC 3834), so it says so.
func (m *Mailer) Send(ctx context.Context, msg Message) error {
	if msg.MessageID == "" {
		msg.MessageID = rand.Text() + "@" + m.domain
	}
	if msg.Headers == nil {
		msg.Headers = map[string]string{}
	}
	msg.Headers["Auto-Submitted"] = "auto-generated"
	return m.transport.Send(ctx, msg)
}

// Domain is the right-hand side of the Message-IDs this mailer makes.
func (m *Mailer) Domain() string { return m.domain }

// compose renders a message; its Message-ID is the outbox's to give.
func (m *Mailer) compose(ctx context.Context, to, subject string, html templ.Component, textName string, data any, headers map[string]string) (Message, error) {
	var h, t bytes.Buffer
	if err := html.Render(ctx, &h); err != nil {
		return Message{}, fmt.Errorf("render %s html: %w", textName, err)
	}
	if err := textTemplates.ExecuteTemplate(&t, textName, data); err != nil {
		return Message{}, fmt.Errorf("render %s text: %w", textName, err)
	}
	return Message{
		From:    m.from,
		To:      []string{to},
		Subject: subject,
		HTML:    h.String(),
		Text:    strings.TrimLeft(t.String(), "\n"),
		Headers: headers,
	}, nil
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
