package scheduler_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"keysmith/models"
	"keysmith/testutil"
)

// BenchmarkReminderPass measures one scheduler pass (plan and send, to the
// in-memory dev mailbox) over a workspace of 1,000,000 keys of which
// `due` (5,000 or none) have a reminder due; KEYSMITH_BENCH_KEYS=small
// makes that 10,000 keys and 50 due, for CI. Seeding takes a while; run it
// on purpose:
//
//	go test -run '^$' -bench ReminderPass -benchtime 3x ./scheduler/
func BenchmarkReminderPass(b *testing.B) {
	total, dueKeys := 1_000_000, 5000
	if os.Getenv("KEYSMITH_BENCH_KEYS") == "small" {
		total, dueKeys = 10_000, 50
	}
	app := testutil.StartApp(b, testutil.DatabaseURL(b, "sqlite"), testutil.WithQuietLogs())
	tm := newTeam(&testing.T{}, app) // newTeam only fails the test on a broken database
	now := app.Clock.Now()
	start := time.Now()
	// One INSERT … SELECT over a recursive counter: 1M keys in seconds.
	// Keys 1..dueKeys have their 7-day reminder due; the rest expire next year.
	err := app.DB.Exec(`
		WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ?)
		INSERT INTO api_keys (workspace_id, name, kind, environment, permission, scopes, secret_hash, hint,
			expires_at, created_at, updated_at, created_by_id, reminder_due_at)
		SELECT ?, 'key ' || n, 'sk', 'live', 'read', 'files:read', printf('%064d', n), 'ks_sk_live_…',
			CASE WHEN n <= ? THEN ? ELSE ? END, ?, ?, ?,
			CASE WHEN n <= ? THEN ? ELSE ? END
		FROM seq`,
		total, tm.ws, dueKeys, now.Add(6*day), now.Add(365*day), now.Add(-30*day), now.Add(-30*day), tm.owner.ID, dueKeys,
		now.Add(-time.Minute), now.Add(351*day)).Error
	if err != nil {
		b.Fatal(err)
	}
	app.Accounts.SetReminders(b.Context(), tm.admin.ID, false)
	b.Logf("seeded %d keys in %s", total, time.Since(start).Round(time.Millisecond))

	for _, due := range []int{dueKeys, 0} {
		b.Run(fmt.Sprintf("due=%d", due), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				app.DB.Exec("DELETE FROM deliveries")
				app.DB.Exec("UPDATE api_keys SET reminder_due_at = ? WHERE id <= ?", now.Add(-time.Minute), due)
				b.StartTimer()
				if err := app.Reminders.Run(b.Context()); err != nil {
					b.Fatal(err)
				}
			}
			var sent int64
			app.DB.Model(&models.Delivery{}).Where("status = ?", "sent").Count(&sent)
			if sent != int64(due) {
				b.Fatalf("%d reminders sent, want %d", sent, due)
			}
		})
	}
}
