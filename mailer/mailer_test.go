package mailer_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"keysmith/clock"
	"keysmith/mailer"
	"keysmith/testutil"
)

func TestSMTPDeliversPasswordResetWithBothParts(t *testing.T) {
	server := testutil.StartSMTP(t)
	transport, err := mailer.NewSMTP(server.URL, server.ClientTLS)
	if err != nil {
		t.Fatal(err)
	}
	m := mailer.New(transport, "Keysmith <no-reply@keys.example.com>", "https://keys.example.com/")

	if err := deliver(m, "reset"); err != nil {
		t.Fatalf("send: %v", err)
	}

	got := server.Messages()
	if len(got) != 1 {
		t.Fatalf("server received %d messages, want 1", len(got))
	}
	if got[0].From != "no-reply@keys.example.com" || len(got[0].To) != 1 || got[0].To[0] != "ada@example.com" {
		t.Errorf("envelope from %q to %v", got[0].From, got[0].To)
	}
	msg, bodies := testutil.MIMEParts(t, got[0].Data)
	if s := msg.Header.Get("Subject"); s != "Reset your Keysmith password" {
		t.Errorf("Subject = %q", s)
	}
	if v := msg.Header.Get("Auto-Submitted"); v != "auto-generated" {
		t.Errorf("Auto-Submitted = %q, want auto-generated (RFC 3834: every mail Keysmith sends is automatic)", v)
	}
	if id := msg.Header.Get("Message-Id"); !strings.HasSuffix(id, "@keys.example.com>") {
		t.Errorf("Message-ID = %q, want one at the sender's domain", id)
	}
	link := "https://keys.example.com/reset-password?token=tok123"
	if !strings.Contains(bodies["text/plain"], link) || !strings.Contains(bodies["text/plain"], "works once and for 1 hour") {
		t.Errorf("text part lacks the link or its lifetime:\n%s", bodies["text/plain"])
	}
	if !strings.Contains(bodies["text/html"], `href="`+link+`"`) || !strings.Contains(bodies["text/html"], "Hi Ada,") {
		t.Errorf("html part lacks the link button or greeting:\n%s", bodies["text/html"])
	}
}

func TestSMTPReportsRefusal(t *testing.T) {
	server := testutil.StartSMTP(t)
	server.Refuse(1)
	transport, err := mailer.NewSMTP(server.URL, server.ClientTLS)
	if err != nil {
		t.Fatal(err)
	}
	m := mailer.New(transport, "no-reply@example.com", "http://localhost:8080")
	if err := deliver(m, "exists"); err == nil {
		t.Fatal("send succeeded although the server refused the message")
	}
	if err := deliver(m, "exists"); err != nil {
		t.Fatalf("second send: %v", err)
	}
	if n := len(server.Messages()); n != 1 {
		t.Fatalf("server kept %d messages, want 1", n)
	}
}

func TestSMTPRejectsWrongPassword(t *testing.T) {
	server := testutil.StartSMTP(t)
	transport, err := mailer.NewSMTP(strings.Replace(server.URL, "s3cret-smtp", "wrong", 1), server.ClientTLS)
	if err != nil {
		t.Fatal(err)
	}
	err = deliver(mailer.New(transport, "no-reply@example.com", "http://x"), "exists")
	if err == nil {
		t.Fatal("send with a wrong SMTP password succeeded")
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("error leaks the SMTP password: %v", err)
	}
}

func TestSMTPStartTLSPolicy(t *testing.T) {
	plain := testutil.StartPlainSMTP(t)
	send := func(url string) error {
		transport, err := mailer.NewSMTP(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		return deliver(mailer.New(transport, "no-reply@example.com", "http://x"), "exists")
	}
	if err := send(plain.URL); err != nil {
		t.Fatalf("opportunistic STARTTLS to a server without TLS: %v", err)
	}
	if err := send(plain.URL + "?starttls=required"); err == nil {
		t.Fatal("?starttls=required sent to a server that offers no STARTTLS")
	}
	if n := len(plain.Messages()); n != 1 {
		t.Fatalf("server received %d messages, want 1", n)
	}

	tlsServer := testutil.StartSMTP(t)
	transport, err := mailer.NewSMTP(tlsServer.URL+"?starttls=required", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := deliver(mailer.New(transport, "no-reply@example.com", "http://x"), "exists"); err == nil {
		t.Fatal("sent over STARTTLS to a server whose certificate is not trusted")
	}
}

func TestNewSMTPRejectsOtherSchemes(t *testing.T) {
	if _, err := mailer.NewSMTP("http://mail.example.com", nil); err == nil {
		t.Fatal("http:// accepted as an SMTP URL")
	}
}

func TestMailboxKeepsNewestFirstAndDropsOldest(t *testing.T) {
	box := mailer.NewMailbox(clock.NewFake(testutil.Epoch), 2)
	m := mailer.New(box, "no-reply@example.com", "http://localhost:8080")
	for _, to := range []string{"a@example.com", "b@example.com", "c@example.com"} {
		if err := deliverTo(m, to); err != nil {
			t.Fatal(err)
		}
	}
	list := box.List()
	if len(list) != 2 || list[0].To[0] != "c@example.com" || list[1].To[0] != "b@example.com" {
		t.Fatalf("mailbox = %+v, want c then b", list)
	}
	if _, ok := box.Get(list[0].ID); !ok {
		t.Fatal("Get cannot find a listed message")
	}
	if !strings.Contains(list[0].Text, "http://localhost:8080/forgot-password") {
		t.Errorf("account-exists text lacks the reset link:\n%s", list[0].Text)
	}
}

// deliver composes a mail and sends it, as the outbox does.
func deliver(m *mailer.Mailer, which string) error {
	ctx := context.Background()
	msg, err := m.AccountExists(ctx, "bob@example.com", "Bob")
	switch which {
	case "reset":
		msg, err = m.PasswordReset(ctx, "ada@example.com", "Ada", "tok123", time.Hour)
	}
	if err != nil {
		return err
	}
	return m.Send(ctx, msg)
}

func deliverTo(m *mailer.Mailer, to string) error {
	msg, err := m.AccountExists(context.Background(), to, "X")
	if err != nil {
		return err
	}
	return m.Send(context.Background(), msg)
}
