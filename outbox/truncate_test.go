package outbox

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// An SMTP error is stored as last_error: it must be text PostgreSQL takes.
func TestTruncateKeepsStorableText(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"451 try again later", 500, "451 try again later"},
		{"451 try again later", 8, "451 try "},
		{strings.Repeat("é", 3), 3, "é"},    // never half a character
		{"bad \xff byte", 8, "bad \uFFFD "}, // invalid UTF-8 replaced
		{"nul\x00 inside", 8, "nul insi"},   // NUL bytes dropped
	} {
		if got := truncate(tc.in, tc.n); got != tc.want || !utf8.ValidString(got) {
			t.Errorf("truncate(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
