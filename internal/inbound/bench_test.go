package inbound

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"kanmon/internal/address"
	"kanmon/internal/config"
	"kanmon/internal/dnsresolve"
)

// benchDNS serves, on loopback, what the checks ask about a clean
// client 127.0.0.8 (mx.sender.bench) sending as bench@sender.bench;
// every other name is NXDOMAIN with an SOA.
func benchDNS(b *testing.B) string {
	b.Helper()
	recs := map[string]string{
		"8.0.0.127.in-addr.arpa. PTR": "mx.sender.bench.",
		"mx.sender.bench. A":          "127.0.0.8",
		"sender.bench. MX":            "10 mx.sender.bench.",
		"sender.bench. TXT":           `"v=spf1 ip4:127.0.0.8 -all"`,
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		qq := q.Question[0]
		name := strings.ToLower(qq.Name)
		if v, ok := recs[name+" "+dns.TypeToString[qq.Qtype]]; ok {
			rr, _ := dns.NewRR(fmt.Sprintf("%s 3600 IN %s %s", name, dns.TypeToString[qq.Qtype], v))
			m.Answer = []dns.RR{rr}
		} else if name != "mx.sender.bench." && name != "sender.bench." {
			m.Rcode = dns.RcodeNameError
			soa, _ := dns.NewRR("bench. 300 IN SOA ns.bench. h.bench. 1 60 60 60 300")
			m.Ns = []dns.RR{soa}
		}
		_ = w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: h}
	go func() { _ = srv.ActivateAndServe() }()
	b.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// BenchmarkChecks: the connection and MAIL stages for one message from
// a clean client, every check on, against a loopback DNS server.
func BenchmarkChecks(b *testing.B) {
	cfg := config.DefaultInbound()
	cfg.DNSBL = []config.DNSBLZone{{Zone: "bl.bench", Weight: 1}, {Zone: "bl2.bench", Weight: 0.5}}
	cfg.PolicyBlockZones = []string{"pbl.bench"}
	cfg.FCrDNSMismatch = config.ActionReject
	s := New(cfg, dnsresolve.WithTimeout(dnsresolve.New(benchDNS(b)), 0), nil)
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	from, _ := address.ParseReversePath("<bench@sender.bench>", false)
	ip := netip.MustParseAddr("127.0.0.8")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		c := &Conn{ID: "cbench", IP: ip, Log: log}
		if out := s.Connect(ctx, c); out.Refused {
			b.Fatalf("connect: %+v", out.Verdict)
		}
		if out := s.Mail(ctx, c, "mx.sender.bench", from); out.Refused || out.SPF != "pass" {
			b.Fatalf("mail: %+v", out)
		}
	}
}
