package keys_test

import (
	"crypto/sha256"
	"testing"

	"keysmith/keys"
)

// BenchmarkSHA256 is the floor under BenchmarkVerifyPath: SHA-256 of the
// key alone, as the verifier computes it for its cache lookup.
func BenchmarkSHA256(b *testing.B) {
	key := keys.Generate("ks", keys.Secret, keys.Live)
	b.ReportAllocs()
	for b.Loop() {
		_ = sha256.Sum256([]byte(key))
	}
}

// BenchmarkHash is keys.Hash: SHA-256 of the key, hex, as stored.
func BenchmarkHash(b *testing.B) {
	key := keys.Generate("ks", keys.Secret, keys.Live)
	b.ReportAllocs()
	for b.Loop() {
		_ = keys.Hash(key)
	}
}
