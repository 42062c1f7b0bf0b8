package keys

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

// The pattern a secret scanner would use; every generated key must match it.
var scannerPattern = regexp.MustCompile(`^ks_(sk|pk)_(live|test)_[0-9A-Za-z]{38}$`)

func TestGenerateAndParse(t *testing.T) {
	for _, kind := range []Kind{Secret, Publishable} {
		for _, env := range []Env{Live, Test} {
			key := Generate("ks", kind, env)
			if !scannerPattern.MatchString(key) {
				t.Fatalf("%q does not match the published pattern", key)
			}
			p, err := Parse(key, "ks")
			if err != nil {
				t.Fatalf("Parse(%q): %v", key, err)
			}
			if p.Kind != kind || p.Env != env || p.Prefix != "ks" {
				t.Errorf("Parse(%q) = %+v", key, p)
			}
		}
	}
}

func TestGenerateIsRandom(t *testing.T) {
	seen := map[string]bool{}
	counts := map[byte]int{}
	for range 2000 {
		k := Generate("ks", Secret, Live)
		if seen[k] {
			t.Fatalf("duplicate key %q", k)
		}
		seen[k] = true
		for i := len("ks_sk_live_"); i < len(k)-checksumLen; i++ {
			counts[k[i]]++
		}
	}
	// 64,000 draws over 62 symbols: about 1032 each; a biased generator
	// (plain byte % 62) would give the first 8 symbols about 25% more.
	for c, n := range counts {
		if n < 850 || n > 1250 {
			t.Errorf("symbol %q drawn %d times, want about 1032", c, n)
		}
	}
	if len(counts) != 62 {
		t.Errorf("only %d of 62 symbols drawn", len(counts))
	}
}

func TestParseRejects(t *testing.T) {
	good := Generate("ks", Secret, Live)
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	cases := map[string]string{
		"empty":               "",
		"other prefix":        "xx" + good[2:],
		"bad kind":            strings.Replace(good, "_sk_", "_rk_", 1),
		"bad env":             strings.Replace(good, "_live_", "_prod_", 1),
		"short":               good[:len(good)-1],
		"long":                good + "a",
		"random char changed": flip(good, len("ks_sk_live_")+3),
		"checksum changed":    flip(good, len(good)-1),
		"non-base62":          good[:len(good)-10] + "-" + good[len(good)-9:],
		"env swapped":         strings.Replace(good, "_live_", "_test_", 1),
		"whitespace":          " " + good,
	}
	for name, key := range cases {
		if _, err := Parse(key, "ks"); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Parse(%q) = %v, want ErrMalformed", name, key, err)
		}
	}
	if _, err := Parse(Generate("acme", Secret, Test), "acme"); err != nil {
		t.Errorf("operator prefix: %v", err)
	}
}

func TestHintAndHash(t *testing.T) {
	key := "ks_sk_live_7Gd0abcdefghijklmnopqrstuvwxyz0123x9Qa"
	if len(key) != len("ks_sk_live_")+bodyLen {
		t.Fatalf("fixture has the wrong length: %d", len(key))
	}
	if got := Hint(key); got != "ks_sk_live_7Gd0…x9Qa" {
		t.Errorf("Hint = %q", got)
	}
	if h := Hash(key); len(h) != 64 || h == Hash(key+"x") || strings.Contains(h, "7Gd0") {
		t.Errorf("Hash = %q", h)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Generate("ks", Secret, Live))
	f.Add(Generate("ks", Publishable, Test))
	f.Add("ks_sk_live_")
	f.Add("ks_sk_live_00000000000000000000000000000000000000")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s, "ks")
		if err != nil {
			return
		}
		// Whatever Parse accepts is a well-formed key with a correct checksum.
		if !scannerPattern.MatchString(s) || checksum(s[:len(s)-checksumLen]) != s[len(s)-checksumLen:] {
			t.Fatalf("Parse accepted %q", s)
		}
		if !p.Kind.Valid() || !p.Env.Valid() {
			t.Fatalf("Parse(%q) = %+v", s, p)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	key := Generate("ks", Secret, Live)
	for b.Loop() {
		if _, err := Parse(key, "ks"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseAndHash(b *testing.B) {
	key := Generate("ks", Secret, Live)
	for b.Loop() {
		if _, err := Parse(key, "ks"); err != nil {
			b.Fatal(err)
		}
		_ = Hash(key)
	}
}

func BenchmarkGenerate(b *testing.B) {
	for b.Loop() {
		_ = Generate("ks", Secret, Live)
	}
}
