package main

import (
	"path/filepath"
	"strings"
	"testing"

	"keysmith/clock"
	"keysmith/models"
	"keysmith/testutil"
)

func TestKeyCreateSetsQuotas(t *testing.T) {
	db := filepath.Join(t.TempDir(), "k.db")
	if code, _, stderr := cli(t, db, "", "user", "create", "--email", "ops@example.com", "--password", "long enough pw"); code != 0 {
		t.Fatal(stderr)
	}
	key := []string{"key", "create", "--email", "ops@example.com", "--name", "metered", "--permission", "read"}
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--hourly-quota", "999"}, "keysmith: --hourly-quota 999: Enter at least 1000, the requests per minute this key may make, or lower that limit too.\n"},
		{[]string{"--rate-limit", "10", "--hourly-quota", "600", "--daily-quota", "599"}, "keysmith: --daily-quota 599: Enter at least 600, the key's hourly quota, or lower that quota too.\n"},
		{[]string{"--daily-quota", "0"}, "keysmith: --daily-quota 0: Enter a number of requests per day from 1 to 1440000000, or leave it empty for no daily quota.\n"},
	} {
		if code, out, stderr := cli(t, db, "", append(key, tc.flags...)...); code != 2 || out != "" || stderr != tc.want {
			t.Errorf("key create %v: exit %d %q\nstderr: %q\n  want: %q", tc.flags, code, out, stderr, tc.want)
		}
	}

	code, out, stderr := cli(t, db, "", append(key, "--rate-limit", "100", "--hourly-quota", "6000", "--daily-quota", "100000")...)
	if code != 0 || strings.Count(out, "\n") != 1 {
		t.Fatalf("key create with quotas: %d %q %q", code, out, stderr)
	}
	gdb := testutil.OpenDB(t, db, clock.Real{})
	var k models.APIKey
	gdb.Take(&k)
	if k.RateLimit == nil || *k.RateLimit != 100 || k.HourlyQuota == nil || *k.HourlyQuota != 6000 || k.DailyQuota == nil || *k.DailyQuota != 100000 {
		t.Fatalf("stored %v %v %v", k.RateLimit, k.HourlyQuota, k.DailyQuota)
	}
}
