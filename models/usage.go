package models

import (
	"strings"
	"time"

	"gorm.io/gorm"
)

// LastUse is the latest use of one key, as the API saw it.
type LastUse struct {
	KeyID     int64
	At        time.Time
	IP        string
	UserAgent string
}

// lastUsesPerStatement keeps a statement's parameters (4 a row) under
// SQLite's limit of 32,766 and PostgreSQL's of 65,535: a flush of up to
// 8,000 keys used since the last one is one statement.
const lastUsesPerStatement = 8000

// WriteLastUses records uses with one UPDATE … FROM a VALUES list per
// 8,000 keys, never one statement per key. A use never moves
// last_used_at backwards (another replica may have written a later one),
// and updated_at stays: a use is not a change to the key.
func WriteLastUses(tx *gorm.DB, uses []LastUse) error {
	// PostgreSQL types a VALUES list from its first row; SQLite needs no cast.
	first := "(?, ?, ?, ?)"
	if IsPostgres(tx) {
		first = "(?::bigint, ?::timestamptz, ?::text, ?::text)"
	}
	for start := 0; start < len(uses); start += lastUsesPerStatement {
		chunk := uses[start:min(start+lastUsesPerStatement, len(uses))]
		rows := make([]string, len(chunk))
		args := make([]any, 0, 4*len(chunk))
		for i, u := range chunk {
			rows[i] = "(?, ?, ?, ?)"
			args = append(args, u.KeyID, u.At, u.IP, u.UserAgent)
		}
		rows[0] = first
		sql := `WITH v (id, at, ip, ua) AS (VALUES ` + strings.Join(rows, ", ") + `)
			UPDATE api_keys SET last_used_at = v.at, last_used_ip = v.ip, last_used_user_agent = v.ua
			FROM v WHERE api_keys.id = v.id AND (api_keys.last_used_at IS NULL OR api_keys.last_used_at < v.at)`
		if err := tx.Exec(sql, args...).Error; err != nil {
			return err
		}
	}
	return nil
}
