package keys

import (
	"fmt"
	"net/netip"
	"strings"
)

// MaxAllowedIPs bounds a key's IP allowlist: enough for a fleet's egress
// addresses and networks, small enough to check on every request.
const MaxAllowedIPs = 100

// Allowlist is where a key may be used from: addresses and networks
// (CIDRs), IPv4 and IPv6. The empty list allows every address. A cached key
// holds its list parsed once, so the hot path only compares prefixes.
type Allowlist []netip.Prefix

// ParseAllowlist reads a stored allowlist (canonical entries separated by
// spaces, as CanonicalAllowlist writes them). An entry that no longer
// parses is skipped: the list was checked when it was saved.
func ParseAllowlist(stored string) Allowlist {
	fields := strings.Fields(stored)
	if len(fields) == 0 {
		return nil
	}
	out := make(Allowlist, 0, len(fields))
	for _, f := range fields {
		if p, err := parseEntry(f); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// Allows reports whether ip (as the client's address arrives: "192.0.2.7",
// "2001:db8::1", an IPv4-mapped IPv6 address, or with a zone) may use the
// key. An empty list allows any address, even an unknown one; a non-empty
// list allows no address it cannot read.
func (l Allowlist) Allows(ip string) bool {
	if len(l) == 0 {
		return true
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	addr = addr.Unmap().WithZone("")
	for _, p := range l {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// parseEntry reads one address ("203.0.113.7", "2001:db8::1") as a
// single-address prefix, or a network ("10.0.0.0/8", "2001:db8::/32").
func parseEntry(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("zone")
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// formatEntry is an entry as it is stored and shown: a single address
// without its /32 or /128.
func formatEntry(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// CanonicalAllowlist checks entries typed by a user or sent to the API
// (each may hold several, separated by commas, spaces or new lines) and
// returns them canonical, without duplicates, in the order given, or a
// message saying which entry is wrong and how.
func CanonicalAllowlist(entries []string) ([]string, string) {
	var out []string
	seen := map[netip.Prefix]bool{}
	for _, e := range entries {
		for _, s := range strings.FieldsFunc(e, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' }) {
			p, err := parseEntry(s)
			if err != nil {
				return nil, fmt.Sprintf("%q is not an IP address or a network such as 203.0.113.7, 10.0.0.0/8 or 2001:db8::/32.", s)
			}
			if masked := p.Masked(); masked != p {
				return nil, fmt.Sprintf("%q has bits set past its /%d: the network is %s.", s, p.Bits(), formatEntry(masked))
			}
			if seen[p] {
				continue
			}
			seen[p] = true
			out = append(out, formatEntry(p))
		}
	}
	if len(out) > MaxAllowedIPs {
		return nil, fmt.Sprintf("List at most %d addresses or networks; use a network (CIDR) to cover a range.", MaxAllowedIPs)
	}
	return out, ""
}

// AllowedIPList splits a stored allowlist for display and the API: never
// nil, so an empty list is [] in JSON.
func AllowedIPList(stored string) []string {
	f := strings.Fields(stored)
	if f == nil {
		return []string{}
	}
	return f
}
