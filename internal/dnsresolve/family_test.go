package dnsresolve

import (
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// TestLookupIPOfFamilyAsksOneFamily: confirming a name for an IPv4
// client asks A only; for an IPv6 client AAAA only.
func TestLookupIPOfFamilyAsksOneFamily(t *testing.T) {
	var mu sync.Mutex
	asked := map[uint16]int{}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		mu.Lock()
		asked[q.Question[0].Qtype]++
		mu.Unlock()
		m := new(dns.Msg)
		m.SetReply(q)
		hdr := dns.RR_Header{Name: q.Question[0].Name, Rrtype: q.Question[0].Qtype, Class: dns.ClassINET, Ttl: 60}
		switch q.Question[0].Qtype {
		case dns.TypeA:
			m.Answer = []dns.RR{&dns.A{Hdr: hdr, A: net.ParseIP("192.0.2.1")}}
		case dns.TypeAAAA:
			m.Answer = []dns.RR{&dns.AAAA{Hdr: hdr, AAAA: net.ParseIP("2001:db8::1")}}
		}
		_ = w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: h}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	r := WithTimeout(New(pc.LocalAddr().String()), 0)

	ips, err := LookupIPOfFamily(ctx(t), r, "mx.example.test", netip.MustParseAddr("198.51.100.7"))
	if err != nil || len(ips) != 1 || ips[0].String() != "192.0.2.1" {
		t.Fatalf("ip4: %v %v", ips, err)
	}
	ips, err = LookupIPOfFamily(ctx(t), r, "mx.example.test", netip.MustParseAddr("2001:db8::7"))
	if err != nil || len(ips) != 1 || ips[0].String() != "2001:db8::1" {
		t.Fatalf("ip6: %v %v", ips, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if asked[dns.TypeA] != 1 || asked[dns.TypeAAAA] != 1 {
		t.Errorf("questions: A %d, AAAA %d; want one of each over both lookups", asked[dns.TypeA], asked[dns.TypeAAAA])
	}
	m := &Mock{IP: map[string][]netip.Addr{"h.test": {netip.MustParseAddr("2001:db8::1")}}}
	if _, err := LookupIPOfFamily(ctx(t), m, "h.test", netip.MustParseAddr("192.0.2.9")); !IsNotFound(err) {
		t.Errorf("Mock, IPv6 only, IPv4 client: %v, want not found", err)
	}
}
