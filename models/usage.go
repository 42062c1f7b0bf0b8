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

// UsageCount is one key's requests in one hour (or, from UsageDays, one
// day), by outcome; the table key_usage of migration 15.
type UsageCount struct {
	KeyID       int64
	Hour        int64 // whole hours since the Unix epoch, UTC: the bucket's start
	Success     int64
	RateLimited int64
	Forbidden   int64
	Other       int64
}

// TableName is migration 15's.
func (UsageCount) TableName() string { return "key_usage" }

// usageCountsPerStatement keeps a statement's parameters (6 a row) under
// SQLite's limit of 32,766.
const usageCountsPerStatement = 5000

// AddUsageCounts adds counts to the stored ones with one upsert per 5,000
// (key, hour) buckets, never one statement per key or request. A count of
// a key deleted meanwhile is dropped rather than failing the batch.
func AddUsageCounts(tx *gorm.DB, counts []UsageCount) error {
	first := "(?, ?, ?, ?, ?, ?)"
	if IsPostgres(tx) {
		first = "(?::bigint, ?::bigint, ?::bigint, ?::bigint, ?::bigint, ?::bigint)"
	}
	for start := 0; start < len(counts); start += usageCountsPerStatement {
		chunk := counts[start:min(start+usageCountsPerStatement, len(counts))]
		rows := make([]string, len(chunk))
		args := make([]any, 0, 6*len(chunk))
		for i, c := range chunk {
			rows[i] = "(?, ?, ?, ?, ?, ?)"
			args = append(args, c.KeyID, c.Hour, c.Success, c.RateLimited, c.Forbidden, c.Other)
		}
		rows[0] = first
		// SQLite reads ON CONFLICT after a SELECT only once it has a WHERE.
		sql := `WITH v (key_id, hour, success, rate_limited, forbidden, other) AS (VALUES ` + strings.Join(rows, ", ") + `)
			INSERT INTO key_usage (key_id, hour, success, rate_limited, forbidden, other)
			SELECT key_id, hour, success, rate_limited, forbidden, other FROM v
			WHERE EXISTS (SELECT 1 FROM api_keys WHERE api_keys.id = v.key_id)
			ON CONFLICT (key_id, hour) DO UPDATE SET
				success = key_usage.success + excluded.success,
				rate_limited = key_usage.rate_limited + excluded.rate_limited,
				forbidden = key_usage.forbidden + excluded.forbidden,
				other = key_usage.other + excluded.other`
		if err := tx.Exec(sql, args...).Error; err != nil {
			return err
		}
	}
	return nil
}

// UsageHours reads the hourly counts of keys from hour from up to (not
// including) hour to, oldest first; hours without requests have no row.
// It reads the primary key (key_id, hour).
func UsageHours(db *gorm.DB, keyIDs []int64, from, to int64) ([]UsageCount, error) {
	var out []UsageCount
	if len(keyIDs) == 0 {
		return out, nil
	}
	err := db.Where("key_id IN ? AND hour >= ? AND hour < ?", keyIDs, from, to).Order("hour, key_id").Find(&out).Error
	return out, err
}

// UsageDays sums the hourly counts of keys by UTC day, from hour from up
// to hour to (both whole days); Hour is each day's first hour. One query
// for every key of a page, on the primary key (key_id, hour).
func UsageDays(db *gorm.DB, keyIDs []int64, from, to int64) ([]UsageCount, error) {
	var out []UsageCount
	if len(keyIDs) == 0 {
		return out, nil
	}
	err := db.Model(&UsageCount{}).
		Select("key_id, (hour / 24) * 24 AS hour, SUM(success) AS success, SUM(rate_limited) AS rate_limited, SUM(forbidden) AS forbidden, SUM(other) AS other").
		Where("key_id IN ? AND hour >= ? AND hour < ?", keyIDs, from, to).
		Group("key_id, hour / 24").Order("hour, key_id").Scan(&out).Error
	return out, err
}

// PruneUsage deletes the counts of hours before hour before (index
// key_usage_hour_idx) and says how many buckets went.
func PruneUsage(db *gorm.DB, before int64) (int64, error) {
	res := db.Where("hour < ?", before).Delete(&UsageCount{})
	return res.RowsAffected, res.Error
}
