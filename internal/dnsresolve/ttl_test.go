package dnsresolve

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// ttlServer serves fixed answers with chosen TTLs on a loopback port
// (UDP and TCP), which go-mockdns cannot (its TTLs are all 9999).
func ttlServer(t *testing.T) string {
	t.Helper()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		name := q.Question[0].Name
		a := func(ip string, ttl uint32) dns.RR {
			return &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: net.ParseIP(ip)}
		}
		soa := &dns.SOA{Hdr: dns.RR_Header{Name: "bl.test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 3600},
			Ns: "ns.bl.test.", Mbox: "h.bl.test.", Serial: 1, Refresh: 1, Retry: 1, Expire: 1, Minttl: 900}
		_, udp := w.RemoteAddr().(*net.UDPAddr)
		switch name {
		case "2.0.0.127.bl.test.":
			m.Answer = []dns.RR{a("127.0.0.2", 300), a("127.0.0.4", 120)}
		case "3.0.0.127.bl.test.": // NXDOMAIN with an SOA: RFC 2308
			m.Rcode, m.Ns = dns.RcodeNameError, []dns.RR{soa}
		case "4.0.0.127.bl.test.": // NOERROR, nothing, no SOA
		case "5.0.0.127.bl.test.":
			m.Rcode = dns.RcodeServerFailure
		case "6.0.0.127.bl.test.": // only over TCP
			if udp {
				m.Truncated = true
			} else {
				m.Answer = []dns.RR{a("127.0.0.2", 30)}
			}
		}
		_ = w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp4", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	u, tc := &dns.Server{PacketConn: pc, Handler: h}, &dns.Server{Listener: l, Handler: h}
	go func() { _ = u.ActivateAndServe() }()
	go func() { _ = tc.ActivateAndServe() }()
	t.Cleanup(func() { _ = u.Shutdown(); _ = tc.Shutdown() })
	return pc.LocalAddr().String()
}

// TestLookupATTL: the answer's smallest TTL, RFC 2308's negative TTL,
// SERVFAIL as temporary, a truncated answer asked again over TCP.
func TestLookupATTL(t *testing.T) {
	r := WithTimeout(New(ttlServer(t)), 5*time.Second)
	c := ctx(t)
	ips, ttl, err := LookupATTL(c, r, "2.0.0.127.bl.test")
	if err != nil || len(ips) != 2 || ttl != 120*time.Second {
		t.Errorf("listed: %v %v %v, want 2 addresses, 2m0s", ips, ttl, err)
	}
	_, ttl, err = LookupATTL(c, r, "3.0.0.127.bl.test")
	if !IsNotFound(err) || ttl != 900*time.Second {
		t.Errorf("NXDOMAIN: ttl %v err %v, want not found and SOA minimum 15m0s", ttl, err)
	}
	_, ttl, err = LookupATTL(c, r, "4.0.0.127.bl.test")
	if !IsNotFound(err) || ttl != 0 {
		t.Errorf("empty answer: ttl %v err %v, want not found, 0", ttl, err)
	}
	if _, _, err = LookupATTL(c, r, "5.0.0.127.bl.test"); err == nil || IsNotFound(err) {
		t.Errorf("SERVFAIL: %v, want a temporary error", err)
	}
	ips, ttl, err = LookupATTL(c, r, "6.0.0.127.bl.test")
	if err != nil || len(ips) != 1 || ttl != 30*time.Second {
		t.Errorf("truncated: %v %v %v, want the TCP answer", ips, ttl, err)
	}
	listed, answers, ttl, err := LookupDNSBLTTL(c, r, netip.MustParseAddr("127.0.0.2"), "bl.test")
	if err != nil || !listed || len(answers) != 2 || ttl != 120*time.Second {
		t.Errorf("LookupDNSBLTTL: %v %v %v %v", listed, answers, ttl, err)
	}
	listed, _, ttl, err = LookupDNSBLTTL(c, r, netip.MustParseAddr("127.0.0.3"), "bl.test")
	if err != nil || listed || ttl != 900*time.Second {
		t.Errorf("LookupDNSBLTTL not listed: %v %v %v", listed, ttl, err)
	}
}

// TestLookupATTLWithoutTTLs: a resolver that cannot tell TTLs answers
// through LookupIP, IPv4 only, with TTL 0.
func TestLookupATTLWithoutTTLs(t *testing.T) {
	m := struct{ Resolver }{&Mock{IP: map[string][]netip.Addr{"h.test": {netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.0.2.1")}, "v6.test": {netip.MustParseAddr("2001:db8::1")}}}}
	ips, ttl, err := LookupATTL(ctx(t), m, "h.test")
	if err != nil || len(ips) != 1 || ips[0].String() != "192.0.2.1" || ttl != 0 {
		t.Errorf("%v %v %v", ips, ttl, err)
	}
	if _, _, err := LookupATTL(ctx(t), m, "v6.test"); !IsNotFound(err) {
		t.Errorf("IPv6 only: %v, want not found", err)
	}
}

// TestLookupATTLNeverAnswered: a server that never answers costs the
// question's time bound, and the error is temporary.
func TestLookupATTLNeverAnswered(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	r := WithTimeout(New(pc.LocalAddr().String()), 300*time.Millisecond)
	start := time.Now()
	_, _, err = LookupATTL(ctx(t), r, "2.0.0.127.bl.test")
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v, want about the 300ms bound", d)
	}
	if err == nil || IsNotFound(err) {
		t.Errorf("err %v, want a temporary error", err)
	}
}
