// Package keys is the domain of API keys: the SPEC §2 format and its
// checksum, generation, parsing, hints, scopes and the lifecycle rules
// (create, rename, rotate, revoke). Plain Go; the HTTP layers call it.
package keys

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"strings"
	"unsafe"
)

// Kind is a key's kind: secret (server-side) or publishable (browser-safe).
type Kind string

// Env is the environment a key works in.
type Env string

const (
	Secret      Kind = "sk"
	Publishable Kind = "pk"

	Live Env = "live"
	Test Env = "test"
)

// Valid reports whether k is sk or pk.
func (k Kind) Valid() bool { return k == Secret || k == Publishable }

// Label is the kind as people read it.
func (k Kind) Label() string {
	if k == Publishable {
		return "Publishable"
	}
	return "Secret"
}

// Valid reports whether e is live or test.
func (e Env) Valid() bool { return e == Live || e == Test }

const (
	alphabet    = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	randomLen   = 32 // 32 × log2(62) ≈ 190.5 bits
	checksumLen = 6  // 62^6 > 2^32: a CRC32 always fits
	bodyLen     = randomLen + checksumLen
)

// ErrMalformed is returned for anything that is not a well-formed key with a
// correct checksum. Callers answer invalid_api_key without a database lookup.
var ErrMalformed = errors.New("keys: malformed API key")

// Generate makes a new key's plaintext: prefix_kind_env_ then 32 random
// base62 characters and 6 base62 characters of the CRC32 of all before them.
func Generate(prefix string, kind Kind, env Env) string {
	var b strings.Builder
	b.Grow(len(prefix) + 9 + bodyLen)
	b.WriteString(prefix)
	b.WriteByte('_')
	b.WriteString(string(kind))
	b.WriteByte('_')
	b.WriteString(string(env))
	b.WriteByte('_')
	b.WriteString(randomBase62(randomLen))
	b.WriteString(checksum(b.String()))
	return b.String()
}

// randomBase62 draws n uniform base62 characters from crypto/rand,
// rejecting bytes ≥ 248 so that no character is likelier than another.
func randomBase62(n int) string {
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/4)
	for len(out) < n {
		_, _ = rand.Read(buf) // crypto/rand.Read never fails (Go 1.24+)
		for _, c := range buf {
			if c < 248 && len(out) < n {
				out = append(out, alphabet[c%62])
			}
		}
	}
	return string(out)
}

func checksum(s string) string {
	sum := checksumOf(s)
	return string(sum[:])
}

// checksumOf is the base62 CRC32 of s. It hands crc32 the string's bytes
// without a copy (crc32 only reads them), so Parse allocates nothing.
func checksumOf(s string) [checksumLen]byte {
	n := crc32.Update(0, crc32.IEEETable, unsafe.Slice(unsafe.StringData(s), len(s)))
	var out [checksumLen]byte
	for i := checksumLen - 1; i >= 0; i-- {
		out[i] = alphabet[n%62]
		n /= 62
	}
	return out
}

// isBase62 tells which bytes may appear in a key's body.
var isBase62 = func() (t [256]bool) {
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = true
	}
	return t
}()

// Parsed is a key that passed Parse.
type Parsed struct {
	Prefix string
	Kind   Kind
	Env    Env
}

// Parse checks a presented key's shape and checksum, with no I/O. It
// accepts only keys under the operator's prefix.
func Parse(key, prefix string) (Parsed, error) {
	rest, ok := strings.CutPrefix(key, prefix+"_")
	if !ok || len(rest) != 3+len("live_")+bodyLen && len(rest) != 3+len("test_")+bodyLen {
		return Parsed{}, ErrMalformed
	}
	kind, rest := Kind(rest[:2]), rest[2:]
	if !kind.Valid() || rest[0] != '_' {
		return Parsed{}, ErrMalformed
	}
	env, body := Env(rest[1:5]), rest[5:]
	if !env.Valid() || body[0] != '_' {
		return Parsed{}, ErrMalformed
	}
	body = body[1:]
	for i := 0; i < len(body); i++ {
		if !isBase62[body[i]] {
			return Parsed{}, ErrMalformed
		}
	}
	sum := checksumOf(key[:len(key)-checksumLen])
	if string(sum[:]) != body[randomLen:] {
		return Parsed{}, ErrMalformed
	}
	return Parsed{Prefix: prefix, Kind: kind, Env: env}, nil
}

// Hash is how a key is stored and looked up: SHA-256 of the whole key, hex.
func Hash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Hint is what the dashboard shows of a key: everything before the body,
// then the body's first and last four characters, e.g. ks_sk_live_7Gd0…x9Qa.
func Hint(key string) string {
	if len(key) < bodyLen {
		return ""
	}
	head, body := key[:len(key)-bodyLen], key[len(key)-bodyLen:]
	return head + body[:4] + "…" + body[bodyLen-4:]
}
