package keys

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"

	"keysmith/metrics"
)

// ChangeFeed carries "these keys changed" from the replica that changed
// them to every other replica sharing one PostgreSQL, through LISTEN and
// NOTIFY, so a revocation is refused everywhere at once and each replica's
// cache may live LongCacheTTL. While its listening connection is down the
// verifier falls back to ShortCacheTTL, and it is cleared when the
// connection is back, since notifications may have been missed.
//
// A notification is "k:ID,ID…" (keys) or "w:ID" (a workspace, whose name
// cached keys carry). NOTIFY is delivered only to sessions of the same
// database, after the notifying transaction commits.
type ChangeFeed struct {
	url      string // the database URL, for the listening connection
	verifier *Verifier
	log      *slog.Logger
	metrics  *metrics.Metrics
	channel  string
	up       atomic.Bool

	// Backoff is the wait before reconnecting after the listener failed.
	Backoff time.Duration
}

// NewChangeFeed prepares a feed on the PostgreSQL database at url. The
// channel is named after the current schema, so databases holding several
// Keysmiths (tests do) keep their feeds apart.
func NewChangeFeed(ctx context.Context, db *gorm.DB, url string, v *Verifier, log *slog.Logger, m *metrics.Metrics) (*ChangeFeed, error) {
	var schema string
	if err := db.WithContext(ctx).Raw("SELECT current_schema()").Scan(&schema).Error; err != nil {
		return nil, fmt.Errorf("change feed: %w", err)
	}
	return &ChangeFeed{url: url, verifier: v, log: log, metrics: m,
		channel: "keysmith_keys_" + schema, Backoff: time.Second}, nil
}

// Connected reports whether the feed is listening now.
func (f *ChangeFeed) Connected() bool { return f.up.Load() }

// AnnounceKeys tells every replica, this one included, that these keys
// changed. Called inside the transaction that changes them, the
// notification goes out if and only if it commits. A nil feed (SQLite)
// announces nothing.
func (f *ChangeFeed) AnnounceKeys(tx *gorm.DB, ids ...int64) error {
	if f == nil {
		return nil
	}
	if len(ids) == 0 {
		return f.notify(tx, "*") // a change naming no key clears every cache
	}
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.FormatInt(id, 10)
	}
	return f.notify(tx, "k:"+strings.Join(parts, ","))
}

// AnnounceWorkspace tells every replica that a workspace's name changed,
// inside the transaction that changes it.
func (f *ChangeFeed) AnnounceWorkspace(tx *gorm.DB, id int64) error {
	if f == nil {
		return nil
	}
	return f.notify(tx, "w:"+strconv.FormatInt(id, 10))
}

func (f *ChangeFeed) notify(tx *gorm.DB, payload string) error {
	return tx.Exec("SELECT pg_notify(?, ?)", f.channel, payload).Error
}

// Run listens until ctx ends, reconnecting after failures.
func (f *ChangeFeed) Run(ctx context.Context) {
	for {
		err := f.listen(ctx)
		if f.up.Swap(false) {
			f.verifier.SetComplete(false)
		}
		if ctx.Err() != nil {
			return
		}
		f.log.Warn("key change feed lost: other replicas' changes now take effect here within "+ShortCacheTTL.String()+" until it reconnects", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(f.Backoff):
		}
	}
}

func (f *ChangeFeed) listen(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, f.url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{f.channel}.Sanitize()); err != nil {
		return err
	}
	// Listening from here on: whatever changed before is re-read.
	f.verifier.SetComplete(true)
	f.up.Store(true)
	f.metrics.KeyChange("connected")
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		f.metrics.KeyChange("notified")
		f.apply(n.Payload)
	}
}

// apply evicts what a notification names; a malformed one clears all.
func (f *ChangeFeed) apply(payload string) {
	kind, list, _ := strings.Cut(payload, ":")
	var ids []int64
	for _, s := range strings.Split(list, ",") {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			f.verifier.Clear()
			return
		}
		ids = append(ids, id)
	}
	switch kind {
	case "k":
		f.verifier.Evict(ids...)
	case "w":
		for _, id := range ids {
			f.verifier.EvictWorkspace(id)
		}
	default:
		f.verifier.Clear()
	}
}
