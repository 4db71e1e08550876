package remote

import "testing"

// TestParseLiteral: which address literals are delivered to.
func TestParseLiteral(t *testing.T) {
	for lit, want := range map[string]string{
		"[192.0.2.1]":             "192.0.2.1",
		"[ipv6:2001:db8::1]":      "2001:db8::1",
		"[IPv6:::1]":              "::1",
		"[IPv6:::ffff:192.0.2.1]": "::ffff:192.0.2.1",
		"[::1]":                   "", // IPv6 needs its tag
		"[IPv6:192.0.2.1]":        "", // and IPv4 must not have it
		"[0.0.0.0]":               "", // reaches this host
		"[IPv6:::]":               "",
		"[224.0.0.1]":             "",
		"[255.255.255.255]":       "",
		"[IPv6:fe80::1%eth0]":     "",
		"[300.1.1.1]":             "",
		"[192.0.2.1":              "",
		"[x400:whatever]":         "",
		"[]":                      "",
	} {
		ip, ok := parseLiteral(lit)
		if got := map[bool]string{true: ip.String(), false: ""}[ok]; got != want {
			t.Errorf("parseLiteral(%q) = %q, want %q", lit, got, want)
		}
	}
	if _, fail := literalHop("[0.0.0.0]", 25); fail == nil || !fail.Permanent || fail.Enhanced != "5.1.2" {
		t.Errorf("literalHop([0.0.0.0]) = %+v, want a permanent 5.1.2 failure", fail)
	}
}
