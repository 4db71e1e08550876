package inbound

import (
	"net/netip"
	"strings"
	"testing"
)

// TestEmbedsAddress: the forms providers give their customers' reverse
// names, for an IPv4 and an IPv6 client, and server names that merely
// contain some of the same numbers.
func TestEmbedsAddress(t *testing.T) {
	v4, v6 := netip.MustParseAddr("203.0.113.5"), netip.MustParseAddr("2001:db8:85a3::8a2e:370:7334")
	for _, tc := range []struct {
		ip   netip.Addr
		name string
		want bool
	}{
		{v4, "dsl-203-0-113-5.pool.isp.example", true},                                                // dashes
		{v4, "host.203.0.113.5.isp.example", true},                                                    // dots
		{v4, "5.113.0.203.dynamic.isp.example", true},                                                 // reversed
		{v4, "5-113-0-203.cust.isp.example", true},                                                    // reversed, dashes
		{v4, "pcb007105.dip0.t-ipconnect.example", true},                                              // hex (Deutsche Telekom style)
		{v4, "057100cb.rev.isp.example", true},                                                        // hex, reversed
		{v4, "cb-00-71-05.cust.isp.example", true},                                                    // hex bytes, dashes
		{v4, "203-000-113-005.static.isp.example", true},                                              // zero-padded
		{v4, "host203000113005.isp.example", true},                                                    // zero-padded, one run
		{v4, "005113000203.rev.isp.example", true},                                                    // zero-padded, reversed
		{v4, "h3405803781.isp.example", true},                                                         // one decimal number
		{v4, "ec2-203-0-113-5.compute-1.cloud.example", true},                                         // cloud style
		{v4, "c-203-0-113-5.hsd1.ca.comcast.example", true},                                           // cable style
		{v4, "mail203.example.org", false},                                                            // one octet
		{v4, "mx-0-113.example.org", false},                                                           // two octets
		{v4, "smtp-203-0-113.example.org", false},                                                     // three octets
		{v4, "203-0-113-6.cust.isp.example", false},                                                   // a neighbour
		{v4, "1203-0-113-5.cust.isp.example", false},                                                  // not an octet
		{v4, "mail.example.org", false},                                                               // a server
		{v6, "2001-db8-85a3-0-0-8a2e-370-7334.ipv6.isp.example", true},                                // groups, dashes
		{v6, "2001-0db8-85a3-0000-0000-8a2e-0370-7334.static.isp.example", true},                      // zero-padded
		{v6, "2001-db8-85a3--8a2e-370-7334.cust.isp.example", true},                                   // compressed
		{v6, "host-2001.db8.85a3.0.0.8a2e.370.7334.isp.example", true},                                // groups, dots
		{v6, "20010db885a3000000008a2e03707334.dyn6.isp.example", true},                               // one hex run
		{v6, "4.3.3.7.0.7.3.0.e.2.a.8.0.0.0.0.0.0.0.0.3.a.5.8.8.b.d.0.1.0.0.2.ip6.isp.example", true}, // nibbles, reversed
		{v6, "2-0-0-1-0-d-b-8-8-5-a-3-0-0-0-0-0-0-0-0-8-a-2-e-0-3-7-0-7-3-3-4.isp.example", true},     // nibbles, forward
		{v6, "host-2001-db8.example.net", false},                                                      // the prefix only
		{v6, "2001-db8-85a3--8a2e-370-7335.cust.isp.example", false},                                  // a neighbour
		{v6, "mail.example.org", false},
	} {
		if got := embedsAddress(hostPart(tc.name), tc.ip); got != tc.want {
			t.Errorf("embedsAddress(%q, %s) = %v, want %v", tc.name, tc.ip, got, tc.want)
		}
		if _, got := dynamicName(tc.name, &Conn{IP: tc.ip}, nil); got != tc.want {
			t.Errorf("dynamicName(%q) for %s = %v, want %v", tc.name, tc.ip, got, tc.want)
		}
	}
}

// FuzzEmbedsAddress: any reverse name, any address: no panic, and the
// address's own dashed form is always found.
func FuzzEmbedsAddress(f *testing.F) {
	f.Add("dsl-203-0-113-5.pool", "203.0.113.5")
	f.Add("2001-db8--1.cust", "2001:db8::1")
	f.Add("4.3.3.7.0.7.3.0.e.2.a.8", "::ffff:10.0.0.1")
	f.Fuzz(func(t *testing.T, host, addr string) {
		ip, err := netip.ParseAddr(addr)
		if err != nil || len(host) > 253 {
			return
		}
		embedsAddress(host, ip)
		ip = ip.WithZone("").Unmap()
		if own := strings.NewReplacer(".", "-", ":", "-").Replace(ip.String()); !embedsAddress(own, ip) {
			t.Errorf("%s not found in its own dashed form %q", ip, own)
		}
	})
}
