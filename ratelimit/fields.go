package ratelimit

import (
	"strconv"
	"time"
)

// The structured fields of draft-ietf-httpapi-ratelimit-headers-10 that
// describe limits and decisions to a client:
//
//	RateLimit-Policy: "minute";q=1000;w=60, "hour";q=5000;w=3600
//	RateLimit: "minute";r=999;t=1

// Policy is the RateLimit-Policy field of these limits: each window that
// has one, shortest first.
func (l Limits) Policy() string {
	var b []byte
	for _, w := range windows {
		if q := l.Of(w); q > 0 {
			if len(b) > 0 {
				b = append(b, ", "...)
			}
			b = appendItem(b, w, ";q=", q)
			b = append(b, ";w="...)
			b = strconv.AppendInt(b, int64(w.Period()/time.Second), 10)
		}
	}
	return string(b)
}

// AppendField appends the RateLimit field of d to b, given reset, the
// whole seconds until d's window is full.
func (d Decision) AppendField(b []byte, reset int) []byte {
	b = appendItem(b, d.Window, ";r=", d.Remaining)
	b = append(b, ";t="...)
	return strconv.AppendInt(b, int64(reset), 10)
}

// appendItem appends a structured-field item naming window w, with its
// first parameter: "hour";q=5000.
func appendItem(b []byte, w Window, param string, n int) []byte {
	b = append(b, '"')
	b = append(b, w.String()...)
	b = append(b, '"')
	b = append(b, param...)
	return strconv.AppendInt(b, int64(n), 10)
}
