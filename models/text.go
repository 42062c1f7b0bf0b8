package models

import "strings"

// StorableText makes text from outside (a User-Agent header, say) fit a
// TEXT column on both engines: at most maxBytes, valid UTF-8 (a cut rune or
// a client's Latin-1 becomes U+FFFD) and without NUL, which PostgreSQL
// refuses. Input the user typed is refused at the edge instead; this is
// for what is recorded about a request, which must not fail the write.
func StorableText(s string, maxBytes int) string {
	if len(s) > maxBytes {
		s = s[:maxBytes]
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}
