package keys_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"keysmith/keys"
	"keysmith/models"
	"keysmith/testutil"
	"keysmith/validate"
)

func TestAllowlistMatching(t *testing.T) {
	list := keys.ParseAllowlist("203.0.113.7 10.0.0.0/8 2001:db8::/32 2001:db8:ffff::1 ::1")
	cases := []struct {
		ip   string
		want bool
	}{
		{"203.0.113.7", true},
		{"203.0.113.8", false},
		{"10.255.0.1", true},
		{"11.0.0.1", false},
		{"::ffff:10.1.2.3", true}, // IPv4-mapped, as a dual-stack listener reports it
		{"::ffff:203.0.113.8", false},
		{"2001:db8:1::5", true},
		{"2001:db9::1", false},
		{"fe80::1%eth0", false},
		{"::1", true},
		{"", false},
		{"not an address", false},
	}
	for _, c := range cases {
		if got := list.Allows(c.ip); got != c.want {
			t.Errorf("Allows(%q) = %v, want %v", c.ip, got, c.want)
		}
	}
	// No list: anywhere, even an address that cannot be read.
	for _, ip := range []string{"198.51.100.1", "2001:db8::1", ""} {
		if !keys.ParseAllowlist("").Allows(ip) {
			t.Errorf("an empty allowlist refused %q", ip)
		}
	}
	// A zoned address in the list is never stored; a zoned client matches
	// the network of its address.
	if !keys.ParseAllowlist("fe80::/10").Allows("fe80::1%eth0") {
		t.Error("a zoned link-local client is outside fe80::/10")
	}
}

func TestCanonicalAllowlist(t *testing.T) {
	cases := []struct {
		in   []string
		want string // canonical, space-separated; "!" + a fragment of the message when refused
	}{
		{nil, ""},
		{[]string{""}, ""},
		{[]string{"203.0.113.7"}, "203.0.113.7"},
		{[]string{"203.0.113.7/32", "2001:DB8::1/128"}, "203.0.113.7 2001:db8::1"},
		{[]string{"10.0.0.0/8, 192.168.1.0/24\n2001:db8::/32"}, "10.0.0.0/8 192.168.1.0/24 2001:db8::/32"},
		{[]string{"203.0.113.7", "203.0.113.7/32"}, "203.0.113.7"},
		{[]string{"::ffff:192.0.2.1"}, "192.0.2.1"},
		{[]string{"10.1.2.3/8"}, "!the network is 10.0.0.0/8"},
		{[]string{"203.0.113.300"}, `!"203.0.113.300" is not an IP address`},
		{[]string{"example.com"}, `!"example.com" is not`},
		{[]string{"10.0.0.0/33"}, "!is not an IP address"},
		{[]string{"fe80::1%eth0"}, "!is not an IP address"},
	}
	for _, c := range cases {
		got, msg := keys.CanonicalAllowlist(c.in)
		if strings.HasPrefix(c.want, "!") {
			if !strings.Contains(msg, c.want[1:]) {
				t.Errorf("%q: message %q, want one saying %q", c.in, msg, c.want[1:])
			}
			continue
		}
		if msg != "" || strings.Join(got, " ") != c.want {
			t.Errorf("%q: %q %q, want %q", c.in, got, msg, c.want)
		}
	}
	many := make([]string, keys.MaxAllowedIPs+1)
	for i := range many {
		many[i] = fmt.Sprintf("192.0.2.%d", i)
	}
	if _, msg := keys.CanonicalAllowlist(many); msg == "" {
		t.Errorf("%d entries accepted", len(many))
	}
}

// A key pinned to addresses verifies only from them, its tokens too (they
// are checked through the key), and a change to the list takes effect on
// the next request; the change is audited, needs what renaming needs, and
// rotation carries the list to the new key.
func TestAllowlistThroughTheVerifier(t *testing.T) {
	testutil.ForEachEngine(t, func(t *testing.T, dbURL string) {
		f := setup(t, dbURL, 0)
		in := valid()
		in.AllowedIPs = []string{"203.0.113.0/24", "2001:db8::1"}
		c, err := f.svc.Create(ctx, f.ws, f.owner, in)
		if err != nil {
			t.Fatal(err)
		}
		if c.Key.AllowedIPs != "203.0.113.0/24 2001:db8::1" {
			t.Fatalf("stored %q", c.Key.AllowedIPs)
		}
		v := keys.NewVerifier(f.db, f.clk, "ks", nil, nil, nil)
		f.svc.OnChange(v.Evict)
		check := func(secret, ip string, want keys.Code) {
			t.Helper()
			if _, code, err := v.Authenticate(ctx, secret, ip); err != nil || code != want {
				t.Fatalf("from %q: %s %v, want %s", ip, code, err, want)
			}
		}
		check(c.Secret, "203.0.113.99", keys.CodeValid)
		check(c.Secret, "2001:db8::1", keys.CodeValid)
		check(c.Secret, "198.51.100.1", keys.CodeIPNotAllowed)
		if _, code, _ := v.AuthenticateService(ctx, c.Secret, ""); code != keys.CodeIPNotAllowed {
			t.Fatalf("verify naming no address: %s", code)
		}
		if _, code, _ := v.AuthenticateService(ctx, c.Secret, "203.0.113.5"); code != keys.CodeValid {
			t.Fatalf("verify naming an allowed address: %s", code)
		}
		if _, code, _ := v.AuthenticateKeyID(ctx, c.Key.ID, "198.51.100.1"); code != keys.CodeIPNotAllowed {
			t.Fatalf("a token's key from outside: %s", code)
		}
		// Changing the list: refused when invalid, else at once.
		_, err = f.svc.Update(ctx, f.ws, f.owner, c.Key.ID, keys.UpdateInput{AllowedIPs: keys.Set([]string{"198.51.100.0/33"})})
		if ve := (validate.Errors{}); !errors.As(err, &ve) || ve["allowed_ips"] == "" {
			t.Fatalf("an invalid list: %v", err)
		}
		k, err := f.svc.Update(ctx, f.ws, f.owner, c.Key.ID, keys.UpdateInput{AllowedIPs: keys.Set([]string{"198.51.100.1"})})
		if err != nil || k.AllowedIPs != "198.51.100.1" {
			t.Fatalf("update: %v %q", err, k.AllowedIPs)
		}
		check(c.Secret, "198.51.100.1", keys.CodeValid)
		check(c.Secret, "203.0.113.99", keys.CodeIPNotAllowed)
		var ev models.AuditEvent
		f.db.Where("action = ?", keys.ActionIPs).Take(&ev)
		if ev.Detail != "allowed from 198.51.100.1 (was 203.0.113.0/24 2001:db8::1)" {
			t.Fatalf("audit detail %q", ev.Detail)
		}
		// An editor who did not create the key may not change it.
		editor := f.actor(t, "ed@example.com", models.RoleEditor)
		var fe *keys.ForbiddenError
		if _, err := f.svc.Update(ctx, f.ws, editor, c.Key.ID, keys.UpdateInput{AllowedIPs: keys.Set([]string(nil))}); !errors.As(err, &fe) {
			t.Fatalf("an editor emptied another's list: %v", err)
		}

		rotated, err := f.svc.Rotate(ctx, f.ws, f.owner, c.Key.ID, 0)
		if err != nil || rotated.Key.AllowedIPs != "198.51.100.1" {
			t.Fatalf("rotation: %v, new key's list %q", err, rotated.Key.AllowedIPs)
		}
		check(rotated.Secret, "198.51.100.1", keys.CodeValid)
		check(rotated.Secret, "203.0.113.99", keys.CodeIPNotAllowed)
		check(c.Secret, "203.0.113.99", keys.CodeExpired) // stopped at once: expiry is told first

		// Emptied, it works from anywhere again.
		if _, err := f.svc.Update(ctx, f.ws, f.owner, rotated.Key.ID, keys.UpdateInput{AllowedIPs: keys.Set([]string{})}); err != nil {
			t.Fatal(err)
		}
		check(rotated.Secret, "203.0.113.99", keys.CodeValid)
	})
}
