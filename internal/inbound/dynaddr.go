package inbound

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// maxAddrTokens bounds the tokens of a reverse name searched for an
// embedded IPv6 address (a DNS name has at most 127 labels anyway).
const maxAddrTokens = 128

// embedsAddress reports whether host (a reverse name without its last two
// labels) spells the address ip, in one of the forms providers use for
// their customers' generic names:
//
//	IPv4 203.0.113.5: 203-0-113-5, 203.0.113.5, 5.113.0.203 (any
//	separators, either byte order, zero-padded or not: 203-000-113-005),
//	203000113005 and 005113000203, cb007105 and 057100cb (hex),
//	3405803781 (the address as one decimal number).
//	IPv6 2001:db8::1: groups with dashes or dots (2001-db8-0-0-0-0-0-1,
//	2001-db8--1, zero-padded), the 32 hex digits in one run, and the 32
//	nibbles forward or reversed (the ip6.arpa form) with any separators.
func embedsAddress(host string, ip netip.Addr) bool {
	ip = ip.WithZone("").Unmap()
	host = strings.ToLower(host)
	if ip.Is4() {
		return embedsIPv4(host, ip.As4())
	}
	return embedsIPv6(host, ip)
}

func embedsIPv4(host string, b [4]byte) bool {
	runs := strings.FieldsFunc(host, func(r rune) bool { return r < '0' || r > '9' })
	// Four consecutive digit runs with the octets' values, either order.
	for i := 0; i+4 <= len(runs); i++ {
		if octetsMatch(runs[i:i+4], b[0], b[1], b[2], b[3]) || octetsMatch(runs[i:i+4], b[3], b[2], b[1], b[0]) {
			return true
		}
	}
	padded := fmt.Sprintf("%03d%03d%03d%03d", b[0], b[1], b[2], b[3])
	revPadded := fmt.Sprintf("%03d%03d%03d%03d", b[3], b[2], b[1], b[0])
	number := strconv.FormatUint(uint64(b[0])<<24|uint64(b[1])<<16|uint64(b[2])<<8|uint64(b[3]), 10)
	for _, r := range runs {
		if r == padded || r == revPadded || r == number {
			return true
		}
	}
	// Hex, with or without separators between the bytes.
	flat := stripSeparators(host)
	return strings.Contains(flat, fmt.Sprintf("%02x%02x%02x%02x", b[0], b[1], b[2], b[3])) ||
		strings.Contains(flat, fmt.Sprintf("%02x%02x%02x%02x", b[3], b[2], b[1], b[0]))
}

// octetsMatch reports whether the four decimal runs have the values
// o0..o3 (leading zeros allowed, at most three digits each).
func octetsMatch(runs []string, o ...byte) bool {
	for i, r := range runs {
		if len(r) > 3 {
			return false
		}
		n, err := strconv.Atoi(r)
		if err != nil || n != int(o[i]) {
			return false
		}
	}
	return true
}

func embedsIPv6(host string, ip netip.Addr) bool {
	b := ip.As16()
	full := fmt.Sprintf("%x", b[:])
	rev := []byte(full)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	// One hex run, or nibbles with separators, forward or reversed.
	flat := stripSeparators(host)
	if strings.Contains(flat, full) || strings.Contains(flat, string(rev)) {
		return true
	}
	// Groups: a run of tokens that, joined with ':', parse as ip
	// ("2001-db8--1" gives 2001, db8, "", 1: the empty token is "::").
	tokens := strings.FieldsFunc(host, isSeparator)
	if strings.Contains(host, "--") {
		tokens = strings.Split(strings.NewReplacer(".", "-", "_", "-").Replace(host), "-")
	}
	tokens = tokens[:min(len(tokens), maxAddrTokens)]
	for i := range tokens {
		for j := i + 2; j <= min(len(tokens), i+8); j++ {
			s := strings.Join(tokens[i:j], ":")
			if strings.HasSuffix(s, ":") && !strings.HasSuffix(s, "::") {
				s += ":" // "2001-db8--" ends in "::"
			}
			if a, err := netip.ParseAddr(s); err == nil && a == ip {
				return true
			}
		}
	}
	return false
}

func isSeparator(r rune) bool { return r == '.' || r == '-' || r == '_' }

// stripSeparators drops the separators of host, so bytes or nibbles
// split by them become one run.
func stripSeparators(host string) string {
	return strings.Map(func(r rune) rune {
		if isSeparator(r) {
			return -1
		}
		return r
	}, host)
}
