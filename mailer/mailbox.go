package mailer

import (
	"context"
	"slices"
	"sync"
	"time"

	"keysmith/clock"
)

// Mailbox is the development transport: it keeps the newest messages in
// memory so the dev mailbox page can show them. Nothing leaves the process.
type Mailbox struct {
	mu     sync.Mutex
	clock  clock.Clock
	max    int
	nextID int
	msgs   []Stored
}

// Stored is a message the mailbox received.
type Stored struct {
	ID         int
	ReceivedAt time.Time
	Message
}

// NewMailbox keeps at most max messages, dropping the oldest.
func NewMailbox(clk clock.Clock, max int) *Mailbox {
	return &Mailbox{clock: clk, max: max}
}

// Send stores the message.
func (b *Mailbox) Send(_ context.Context, m Message) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nextID++
	b.msgs = append(b.msgs, Stored{ID: b.nextID, ReceivedAt: b.clock.Now(), Message: m})
	if len(b.msgs) > b.max {
		b.msgs = slices.Delete(b.msgs, 0, len(b.msgs)-b.max)
	}
	return nil
}

// List returns the stored messages, newest first.
func (b *Mailbox) List() []Stored {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := slices.Clone(b.msgs)
	slices.Reverse(out)
	return out
}

// Get returns one stored message.
func (b *Mailbox) Get(id int) (Stored, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.msgs {
		if m.ID == id {
			return m, true
		}
	}
	return Stored{}, false
}
