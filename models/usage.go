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

// UsageCount is one key's requests in one bucket, an hour or a UTC day,
// by outcome; the table key_usage of migration 15.
type UsageCount struct {
	KeyID       int64
	Span        int   // hours the bucket spans: 1 or 24
	Hour        int64 // the bucket's start, in whole hours since the Unix epoch (UTC)
	Success     int64
	RateLimited int64
	Forbidden   int64
	Other       int64
}

// TableName is migration 15's.
func (UsageCount) TableName() string { return "key_usage" }

// usageCountsPerStatement keeps a statement's parameters (7 a row) under
// SQLite's limit of 32,766.
const usageCountsPerStatement = 4000

// AddUsageCounts adds counts to the stored ones with one upsert per 4,000
// buckets, never one statement per key or request. A count of a key
// deleted meanwhile is dropped rather than failing the batch.
func AddUsageCounts(tx *gorm.DB, counts []UsageCount) error {
	first := "(?, ?, ?, ?, ?, ?, ?)"
	if IsPostgres(tx) {
		first = "(?::bigint, ?::smallint, ?::bigint, ?::bigint, ?::bigint, ?::bigint, ?::bigint)"
	}
	for start := 0; start < len(counts); start += usageCountsPerStatement {
		chunk := counts[start:min(start+usageCountsPerStatement, len(counts))]
		rows := make([]string, len(chunk))
		args := make([]any, 0, 7*len(chunk))
		for i, c := range chunk {
			rows[i] = "(?, ?, ?, ?, ?, ?, ?)"
			args = append(args, c.KeyID, c.Span, c.Hour, c.Success, c.RateLimited, c.Forbidden, c.Other)
		}
		rows[0] = first
		// SQLite reads ON CONFLICT after a SELECT only once it has a WHERE.
		sql := `WITH v (key_id, span, hour, success, rate_limited, forbidden, other) AS (VALUES ` + strings.Join(rows, ", ") + `)
			INSERT INTO key_usage (key_id, span, hour, success, rate_limited, forbidden, other)
			SELECT key_id, span, hour, success, rate_limited, forbidden, other FROM v
			WHERE EXISTS (SELECT 1 FROM api_keys WHERE api_keys.id = v.key_id)
			ON CONFLICT (key_id, span, hour) DO UPDATE SET
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

// UsageBuckets reads the counts of keys in buckets of span hours (1 or 24)
// starting from hour from up to (not including) hour to, oldest first;
// buckets without requests have no row. One query for every key of a
// page, each a range of the primary key (key_id, span, hour).
func UsageBuckets(db *gorm.DB, keyIDs []int64, span int, from, to int64) ([]UsageCount, error) {
	var out []UsageCount
	if len(keyIDs) == 0 {
		return out, nil
	}
	err := db.Where("key_id IN ? AND span = ? AND hour >= ? AND hour < ?", keyIDs, span, from, to).Find(&out).Error
	return out, err
}

// PruneUsage deletes the buckets that start before hour before (index
// key_usage_hour_idx) and says how many went.
func PruneUsage(db *gorm.DB, before int64) (int64, error) {
	res := db.Where("hour < ?", before).Delete(&UsageCount{})
	return res.RowsAffected, res.Error
}

// DailyTotals is each key's requests on each of days UTC days, the first
// starting at hour from: one row per key, the days pivoted into columns in
// SQL from the day buckets (primary key (key_id, span, hour)). A list page
// reads its sparklines with it: 25 rows, not one per key and day, since
// every row fetched costs more than the sums.
func DailyTotals(db *gorm.DB, keyIDs []int64, from int64, days int) (map[int64][]int64, error) {
	out := make(map[int64][]int64, len(keyIDs))
	if len(keyIDs) == 0 || days <= 0 {
		return out, nil
	}
	cols := make([]string, days)
	args := make([]any, 0, days+4)
	for d := range days {
		cols[d] = "SUM(CASE WHEN hour = ? THEN success + rate_limited + forbidden + other ELSE 0 END)"
		args = append(args, from+24*int64(d))
	}
	args = append(args, keyIDs, from, from+24*int64(days))
	rows, err := db.Raw(`SELECT key_id, `+strings.Join(cols, ", ")+` FROM key_usage
		WHERE key_id IN ? AND span = 24 AND hour >= ? AND hour < ? GROUP BY key_id`, args...).Rows()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		totals := make([]int64, days)
		dest := make([]any, days+1)
		dest[0] = &id
		for d := range totals {
			dest[d+1] = &totals[d]
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		out[id] = totals
	}
	return out, rows.Err()
}
