package outbox

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"

	"keysmith/mailer"
	"keysmith/models"
)

// Mail is an email for the outbox: composed now (mailer), kept sealed
// until it is sent, since it may carry a single-use link.
type Mail struct {
	Message     mailer.Message
	WorkspaceID int64 // whose delivery log shows it; 0 for none (a sign-up link)
	UserID      int64
	KeyID       int64
}

// SendMail enqueues mails and sends them at once in the background.
func (o *Outbox) SendMail(ctx context.Context, mails ...Mail) error {
	return o.Deliver(ctx, mailMessages(mails)...)
}

// EnqueueMail adds mails to the queue in db (the caller's transaction), for
// the next pass.
func (o *Outbox) EnqueueMail(ctx context.Context, db *gorm.DB, mails ...Mail) error {
	_, err := o.Enqueue(ctx, db, mailMessages(mails)...)
	return err
}

func mailMessages(mails []Mail) []Message {
	msgs := make([]Message, len(mails))
	for i, m := range mails {
		to := ""
		if len(m.Message.To) > 0 {
			to = m.Message.To[0]
		}
		msgs[i] = Message{Kind: KindMail, WorkspaceID: m.WorkspaceID, UserID: m.UserID, KeyID: m.KeyID,
			Recipient: to, Subject: m.Message.Subject, Payload: m.Message}
	}
	return msgs
}

// MailComposer sends the mails enqueued composed: it opens each, gives it
// a Message-ID stable for the delivery, and hands it to the mailer.
type MailComposer struct {
	Outbox *Outbox
	Mailer *mailer.Mailer
}

func (c MailComposer) Compose(_ context.Context, _ *gorm.DB, ds []models.Delivery, _ time.Time) ([]Ready, []int64, error) {
	ready := make([]Ready, 0, len(ds))
	for _, d := range ds {
		var msg mailer.Message
		if err := c.Outbox.Open(d, &msg); err != nil {
			return nil, nil, err
		}
		msg.MessageID = fmt.Sprintf("mail-%d@%s", d.ID, c.Mailer.Domain())
		ready = append(ready, Ready{Delivery: d, Send: func(ctx context.Context) (int, error) {
			return 0, c.Mailer.Send(ctx, msg)
		}})
	}
	return ready, nil, nil
}
