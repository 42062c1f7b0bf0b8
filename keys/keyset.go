package keys

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"
)

// Cursor is a place in a list ordered by (created_at, id), newest first:
// the audit log and the key list. A cursor stays put while rows arrive
// above it, and a page after it costs the same at any depth: both engines
// seek the (…, created_at, id) index to it instead of counting past every
// row above.
type Cursor struct {
	At time.Time
	ID int64
}

// String is the cursor as it travels in a URL: the row's time in Unix
// nanoseconds and its id, "1767225600123456000.4711".
func (c Cursor) String() string {
	return strconv.FormatInt(c.At.UnixNano(), 10) + "." + strconv.FormatInt(c.ID, 10)
}

// ParseCursor reads a cursor written by String.
func ParseCursor(s string) (Cursor, bool) {
	at, id, ok := strings.Cut(s, ".")
	if !ok {
		return Cursor{}, false
	}
	nanos, err1 := strconv.ParseInt(at, 10, 64)
	n, err2 := strconv.ParseInt(id, 10, 64)
	if err1 != nil || err2 != nil || n <= 0 {
		return Cursor{}, false
	}
	return Cursor{At: time.Unix(0, nanos).UTC(), ID: n}, true
}

// Position says which page of a list to read: the first (newest) page when
// both are nil.
type Position struct {
	Before *Cursor // the page of rows just older than this one
	After  *Cursor // the page of rows just newer than this one
}

// keyset is one list read by keyset pages. older(c) is the list below c,
// newest first (the whole list when c is nil); newer(c) the list above c,
// oldest first; at is the cursor of a row.
type keyset[T any] struct {
	older func(c *Cursor) *gorm.DB
	newer func(c Cursor) *gorm.DB
	at    func(T) Cursor
}

// page reads perPage rows at pos, newest first, with the cursors of the
// pages either side (nil: there is none). perPage+1 rows tell whether more
// lie beyond the page; one index seek whether any lie above it.
func (l keyset[T]) page(pos Position, perPage int) (rows []T, newer, older *Cursor, err error) {
	perPage = max(perPage, 1)
	cursor := func(r T) *Cursor { c := l.at(r); return &c }
	if pos.After != nil {
		if err := l.newer(*pos.After).Limit(perPage + 1).Find(&rows).Error; err != nil {
			return nil, nil, nil, err
		}
		if len(rows) > perPage {
			rows = rows[:perPage]
			slices.Reverse(rows)
			return rows, cursor(rows[0]), cursor(rows[len(rows)-1]), nil
		}
		// Back at the top: show the first page, full.
		pos, rows = Position{}, nil
	}
	if err := l.older(pos.Before).Limit(perPage + 1).Find(&rows).Error; err != nil {
		return nil, nil, nil, err
	}
	if len(rows) > perPage {
		rows = rows[:perPage]
		older = cursor(rows[perPage-1])
	}
	if pos.Before != nil {
		top := *pos.Before
		if len(rows) > 0 {
			top = l.at(rows[0])
		}
		var above []int64
		if err := l.newer(top).Limit(1).Pluck("id", &above).Error; err != nil {
			return nil, nil, nil, err
		}
		if len(above) > 0 {
			newer = &top
		}
	}
	return rows, newer, older, nil
}
