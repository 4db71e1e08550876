package e2e

import (
	"bufio"
	"errors"
	"maps"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/foxcpp/go-mockdns"
	"github.com/miekg/dns"
)

// inboundOff is merged into every test server's config (setupServer):
// tests that are not about the inbound checks connect to the MX listener
// from 127.0.0.1 with DNS at a dead port, so they turn off the greet
// delay and the checks that ask DNS. The defaults stay the production
// ones; the tests below set what they test.
var inboundOff = map[string]string{
	"inbound.greet_delay":     `"0s"`,
	"inbound.dynamic_client":  `"off"`,
	"inbound.missing_ptr":     `"off"`,
	"inbound.fcrdns_mismatch": `"off"`,
	"inbound.sender_domain":   `"off"`,
	"inbound.spf_fail":        `"off"`,
	"inbound.spf_temperror":   `"off"`,
	// Tests connect to MX from 127.0.0.1 many times a minute
	// (ratelimit_test.go tests the connection rate).
	"ratelimit.mx_connections_per_minute": "0",
	"inbound.dmarc":                       `"off"`,
	"inbound.from_header":                 `"off"`,
}

// Fixture clients: loopback addresses with their own reverse DNS. Loopback
// is not exempt from the checks, so each rule is reached from a 127.0.0.x
// address whose fixture PTR says what the test needs (127.0.0.1 is left
// alone: the hosts file names it).
const (
	dynamicIP  = "127.0.0.5"  // PTR dsl-127-0-0-5.pool.isp.test
	noPTRIP    = "127.0.0.6"  // no PTR
	listedIP   = "127.0.0.7"  // on bl.test
	goodIP     = "127.0.0.8"  // mx.sender.test, FCrDNS ok, SPF pass for sender.test
	pblIP      = "127.0.0.9"  // host9.clean.test, FCrDNS ok, on pbl.test
	mismatchIP = "127.0.0.10" // mail.mismatch.test, which resolves to 127.0.0.99
)

// fixtureDNS is the fixture zones served on a loopback port (UDP and
// TCP) by go-mockdns's handler, behind a front that counts the questions
// and never answers any about blackhole.test (a server that never
// answers).
type fixtureDNS struct {
	Addr  string
	mu    sync.Mutex
	asked map[string]int // "A name." → questions
}

// Asked returns how many questions of type typ about name arrived.
func (f *fixtureDNS) Asked(typ, name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked[typ+" "+name]
}

func (f *fixtureDNS) ServeDNS(next dns.Handler) dns.Handler {
	return dns.HandlerFunc(func(w dns.ResponseWriter, m *dns.Msg) {
		if len(m.Question) == 1 {
			q := m.Question[0]
			f.mu.Lock()
			f.asked[dns.TypeToString[q.Qtype]+" "+strings.ToLower(q.Name)]++
			f.mu.Unlock()
			if strings.HasSuffix(strings.ToLower(q.Name), "blackhole.test.") {
				return // no answer at all: the client's timeout decides
			}
		}
		next.ServeDNS(w, m)
	})
}

// startFixtureDNS serves the fixture zones on a loopback port.
func startFixtureDNS(t *testing.T) *fixtureDNS {
	t.Helper()
	zones := map[string]mockdns.Zone{
		"5.0.0.127.in-addr.arpa.":      {PTR: []string{"dsl-127-0-0-5.pool.isp.test."}},
		"dsl-127-0-0-5.pool.isp.test.": {A: []string{dynamicIP}},
		"7.0.0.127.in-addr.arpa.":      {PTR: []string{"mail.listed.test."}},
		"mail.listed.test.":            {A: []string{listedIP}},
		"7.0.0.127.bl.test.":           {A: []string{"127.0.0.2"}, TXT: []string{"listed for testing"}},
		"8.0.0.127.in-addr.arpa.":      {PTR: []string{"mx.sender.test."}},
		"mx.sender.test.":              {A: []string{goodIP}},
		"9.0.0.127.in-addr.arpa.":      {PTR: []string{"host9.clean.test."}},
		"host9.clean.test.":            {A: []string{pblIP}},
		"9.0.0.127.pbl.test.":          {A: []string{"127.0.0.10"}},
		"10.0.0.127.in-addr.arpa.":     {PTR: []string{"mail.mismatch.test."}},
		"mail.mismatch.test.":          {A: []string{"127.0.0.99"}},
		"sender.test.":                 {MX: []net.MX{{Host: "mx.sender.test.", Pref: 10}}, TXT: []string{"v=spf1 ip4:127.0.0.8 -all"}},
		"open.test.":                   {MX: []net.MX{{Host: "mx.sender.test.", Pref: 10}}},
		"spffail.test.":                {MX: []net.MX{{Host: "mx.sender.test.", Pref: 10}}, TXT: []string{"v=spf1 ip4:192.0.2.1 -all"}},
		"nullmx.test.":                 {MX: []net.MX{{Host: ".", Pref: 0}}},
		"servfail.test.":               {Err: errors.New("fixture SERVFAIL")},
		// The harness's own connections come from 127.0.0.1, named
		// localhost by the hosts file: let that name resolve back.
		"localhost.": {A: []string{"127.0.0.1"}},
	}
	maps.Copy(zones, dmarcZones(t))
	f, err := serveZones(t, zones, "127.0.0.1:0")
	if err != nil {
		t.Fatalf("fixture DNS: %v", err)
	}
	return f
}

// serveZones serves zones on addr (UDP and TCP, the same port) until
// the test ends.
func serveZones(t *testing.T, zones map[string]mockdns.Zone, addr string) (*fixtureDNS, error) {
	t.Helper()
	mock, err := mockdns.NewServerWithLogger(zones, quietLogger{}, false)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { mock.Close() })
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp4", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		return nil, err
	}
	f := &fixtureDNS{Addr: pc.LocalAddr().String(), asked: map[string]int{}}
	h := f.ServeDNS(mock)
	udp, tcp := &dns.Server{PacketConn: pc, Handler: h}, &dns.Server{Listener: l, Handler: h}
	go func() { _ = udp.ActivateAndServe() }()
	go func() { _ = tcp.ActivateAndServe() }()
	t.Cleanup(func() { _ = udp.Shutdown(); _ = tcp.Shutdown() })
	return f, nil
}

type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}

// startInboundServer starts kanmon with the fixture DNS and the
// production defaults of the checks, plus set.
func startInboundServer(t *testing.T, set map[string]string) *server {
	t.Helper()
	s, _ := startInboundServerDNS(t, set)
	return s
}

// startInboundServerDNS is startInboundServer, also returning the
// fixture DNS server.
func startInboundServerDNS(t *testing.T, set map[string]string) (*server, *fixtureDNS) {
	t.Helper()
	f := startFixtureDNS(t)
	all := map[string]string{
		"dns.server":              `"` + f.Addr + `"`,
		"dns.timeout":             `"2s"`,
		"inbound.greet_delay":     `"0s"`,
		"inbound.dynamic_client":  `"reject"`,
		"inbound.missing_ptr":     `"tempfail"`,
		"inbound.fcrdns_mismatch": `"log"`,
		"inbound.sender_domain":   `"reject"`,
		"inbound.spf_fail":        `"reject"`,
		"inbound.spf_temperror":   `"tempfail"`,
		"inbound.dmarc":           `"enforce"`,
		"inbound.from_header":     `"reject"`,
		"inbound.dnsbl":           `[ { zone = "bl.test", weight = 1.0, codes = ["127.0.0.2"], url = "https://bl.test/lookup?ip=" } ]`,
	}
	for k, v := range set {
		all[k] = v
	}
	return startServer(t, options{set: all}), f
}

// expectDecision waits for the decision line of rule on connection id.
func expectDecision(t *testing.T, s *server, rule, id string) logLine {
	t.Helper()
	return s.WaitLog(t, "decision "+rule+" "+id, func(l logLine) bool {
		return l.str("msg") == "decision" && l.str("rule") == rule && (id == "" || l.str("conn") == id)
	})
}

// swaksFrom sends one message with swaks from the loopback address src
// and returns the replies.
func swaksFrom(t *testing.T, s *server, src, from string) []reply {
	t.Helper()
	out, _ := swaks(t, "--server", s.MX, "--local-interface", src, "--from", from, "--to", alice)
	return swaksReplies(out)
}

// checkRefusal asserts a reply with code and enh naming rule, and its
// decision line.
func checkRefusal(t *testing.T, s *server, rs []reply, code int, enh, rule string, texts ...string) {
	t.Helper()
	for _, r := range rs {
		if r.Code != code || r.Enhanced != enh {
			continue
		}
		if !strings.Contains(r.String(), "rule "+rule) || r.ConnID() == "" {
			t.Errorf("reply %q does not name rule %s and the connection id", r, rule)
		}
		for _, want := range texts {
			if !strings.Contains(r.String(), want) {
				t.Errorf("reply %q lacks %q", r, want)
			}
		}
		l := expectDecision(t, s, rule, r.ConnID())
		if l.str("enhanced") != enh {
			t.Errorf("decision line %v: enhanced %q, want %s", l, l.str("enhanced"), enh)
		}
		return
	}
	t.Fatalf("no %d %s reply for rule %s; replies: %v\nlog:\n%s", code, enh, rule, rs, s.LogTail(20))
}

// TestInboundDynamicClient: a client whose reverse name embeds its
// address (a home PC speaking straight to the MX) is refused with 550
// 5.7.1 pointing to port 587; with the action "log" it passes and the
// decision is logged.
func TestInboundDynamicClient(t *testing.T) {
	t.Parallel()
	s := startInboundServer(t, nil)
	checkRefusal(t, s, swaksFrom(t, s, dynamicIP, "bob@sender.test"), 550, "5.7.1", "client.dynamic", "587", "dsl-127-0-0-5.pool.isp.test")

	s2 := startInboundServer(t, map[string]string{"inbound.dynamic_client": `"log"`, "inbound.spf_fail": `"off"`})
	rs := swaksFrom(t, s2, dynamicIP, "bob@sender.test")
	if !hasReply(rs, 250, "2.0.0") {
		t.Fatalf("log-only: message not accepted: %v", rs)
	}
	if l := expectDecision(t, s2, "client.dynamic", ""); l.str("action") != "log" {
		t.Errorf("log-only decision line: %v", l)
	}
}

// TestInboundDNSBL: a client listed on the configured blocklist gets 554
// 5.7.1 naming the list, its lookup URL and the address.
func TestInboundDNSBL(t *testing.T) {
	t.Parallel()
	s := startInboundServer(t, nil)
	checkRefusal(t, s, swaksFrom(t, s, listedIP, "bob@sender.test"), 554, "5.7.1", "client.dnsbl", "bl.test", "https://bl.test/lookup?ip=127.0.0.7")
}

// TestInboundNoPTR: a client without a reverse name is deferred with 450
// 4.7.25 (RFC 7372).
func TestInboundNoPTR(t *testing.T) {
	t.Parallel()
	s := startInboundServer(t, nil)
	checkRefusal(t, s, swaksFrom(t, s, noPTRIP, "bob@sender.test"), 450, "4.7.25", "client.no_ptr")
}

// TestInboundEarlyTalker: with a greet delay, a client that talks first
// gets 554 5.5.1 and the connection ends; one that waits is greeted, and
// greeted at once when it comes back.
func TestInboundEarlyTalker(t *testing.T) {
	t.Parallel()
	s := startInboundServer(t, map[string]string{"inbound.greet_delay": `"1s"`})
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(dynamicIP)}}
	nc, err := d.Dial("tcp", s.MX)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := &client{t: t, conn: nc, r: bufio.NewReader(nc)}
	c.Write("EHLO bot.test\r\n")
	r := c.MustRead()
	checkRefusal(t, s, []reply{r}, 554, "5.5.1", "client.early_talker")
	c.ExpectClosed("after the early-talker refusal")

	start := time.Now()
	w := dialFrom(t, goodIP, s.MX)
	if waited := time.Since(start); waited < 900*time.Millisecond {
		t.Errorf("first greeting after %v, want the 1s delay", waited)
	}
	w.Close()
	start = time.Now()
	again := dialFrom(t, goodIP, s.MX)
	if waited := time.Since(start); waited > 700*time.Millisecond {
		t.Errorf("a client that waited was made to wait again (%v)", waited)
	}
	again.Close()
}

// TestInboundSenderDomain: a MAIL FROM domain that does not exist gets
// 550 5.1.8, a null MX 550 5.7.27, and a SERVFAIL 451 4.4.3 (our DNS
// trouble is never permanent).
func TestInboundSenderDomain(t *testing.T) {
	t.Parallel()
	s := startInboundServer(t, nil)
	for _, tc := range []struct {
		from, enh, rule string
		code            int
	}{
		{"bob@nosuch.test", "5.1.8", "sender.domain_unknown", 550},
		{"bob@nullmx.test", "5.7.27", "sender.null_mx", 550},
		{"bob@servfail.test", "4.4.3", "sender.domain_temperror", 451},
	} {
		c := dialFrom(t, goodIP, s.MX)
		c.Ehlo("mx.sender.test")
		r := c.Expect("MAIL FROM:<"+tc.from+">", tc.code, tc.enh)
		checkRefusal(t, s, []reply{r}, tc.code, tc.enh, tc.rule, tc.from[strings.IndexByte(tc.from, '@')+1:])
		c.Close()
	}
}

// TestInboundSPF: an SPF fail is refused with 550 5.7.23; a sender whose
// SPF passes is delivered.
func TestInboundSPF(t *testing.T) {
	t.Parallel()
	s := startInboundServer(t, nil)
	checkRefusal(t, s, swaksFrom(t, s, goodIP, "bob@spffail.test"), 550, "5.7.23", "spf.fail", "spffail.test")

	rs := swaksFrom(t, s, goodIP, "bob@sender.test")
	if !hasReply(rs, 250, "2.0.0") {
		t.Fatalf("SPF pass: message not accepted: %v\n%s", rs, s.LogTail(20))
	}
	if l := expectDecision(t, s, "spf.pass", ""); l.str("spf") != "pass" {
		t.Errorf("spf.pass line: %v", l)
	}
	waitMaildir(t, s.Maildir(alice), "bob@sender.test")
}
