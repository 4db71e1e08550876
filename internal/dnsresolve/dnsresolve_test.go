package dnsresolve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/foxcpp/go-mockdns"
)

// queryLog captures the mock server's trace so a test can prove that a
// question reached it.
type queryLog struct {
	mu    sync.Mutex
	lines []string
}

func (q *queryLog) Printf(f string, args ...any) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.lines = append(q.lines, fmt.Sprintf(f, args...))
}

func (q *queryLog) saw(s string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, l := range q.lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

func startDNS(t *testing.T, zones map[string]mockdns.Zone) (string, *queryLog) {
	t.Helper()
	log := &queryLog{}
	srv, err := mockdns.NewServerWithLogger(zones, log, false)
	if err != nil {
		t.Fatalf("mock DNS server: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv.LocalAddr().String(), log
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

var fixtureZones = map[string]mockdns.Zone{
	"example.test.": {
		MX:  []net.MX{{Host: "mx2.example.test.", Pref: 20}, {Host: "mx1.example.test.", Pref: 10}},
		TXT: []string{"v=spf1 ip4:192.0.2.0/24 -all", strings.Repeat("x", 300)},
		A:   []string{"192.0.2.10"},
	},
	"mx1.example.test.":        {A: []string{"192.0.2.11"}, AAAA: []string{"2001:db8::11"}},
	"nomail.test.":             {MX: []net.MX{{Host: ".", Pref: 0}}},
	"broken.test.":             {Err: errors.New("boom")},
	"onlya.test.":              {A: []string{"192.0.2.99"}},
	"11.2.0.192.in-addr.arpa.": {PTR: []string{"mx1.example.test."}},
	"2.0.0.127.bl.test.":       {A: []string{"127.0.0.2"}, TXT: []string{"listed for testing"}},
	"3.0.0.127.bl.test.":       {A: []string{"10.0.0.1"}},
}

func TestNewAsksTheConfiguredServer(t *testing.T) {
	addr, log := startDNS(t, fixtureZones)
	r := New(addr)
	c := ctx(t)

	mx, err := r.LookupMX(c, "example.test")
	if err != nil {
		t.Fatalf("LookupMX: %v", err)
	}
	if len(mx) != 2 || mx[0].Host != "mx1.example.test." || mx[0].Pref != 10 {
		t.Errorf("LookupMX = %v, want mx1 first", mxString(mx))
	}
	if !log.saw("example.test.") {
		t.Errorf("the configured server never saw the question; trace: %v", log.lines)
	}

	txt, err := r.LookupTXT(c, "example.test")
	if err != nil {
		t.Fatalf("LookupTXT: %v", err)
	}
	if !slices.Contains(txt, "v=spf1 ip4:192.0.2.0/24 -all") || !slices.Contains(txt, strings.Repeat("x", 300)) {
		t.Errorf("LookupTXT = %q: want the SPF record and the 300-byte record joined", txt)
	}

	ips, err := r.LookupIP(c, "mx1.example.test")
	if err != nil {
		t.Fatalf("LookupIP: %v", err)
	}
	want := []netip.Addr{netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("2001:db8::11")}
	slices.SortFunc(ips, netip.Addr.Compare)
	if !slices.Equal(ips, want) {
		t.Errorf("LookupIP = %v, want %v", ips, want)
	}

	names, err := r.LookupAddr(c, netip.MustParseAddr("192.0.2.11"))
	if err != nil {
		t.Fatalf("LookupAddr: %v", err)
	}
	if len(names) != 1 || names[0] != "mx1.example.test." {
		t.Errorf("LookupAddr = %v", names)
	}
}

func TestNullMXIsVisible(t *testing.T) {
	addr, _ := startDNS(t, fixtureZones)
	mx, err := New(addr).LookupMX(ctx(t), "nomail.test")
	if err != nil {
		t.Fatalf("LookupMX: %v", err)
	}
	if !IsNullMX(mx) {
		t.Errorf("LookupMX(nomail.test) = %v: want a null MX", mxString(mx))
	}
}

func TestNotFoundAndTemporary(t *testing.T) {
	addr, _ := startDNS(t, fixtureZones)
	r := New(addr)
	c := ctx(t)

	_, err := r.LookupMX(c, "nxdomain.test")
	if !IsNotFound(err) || IsTemporary(err) {
		t.Errorf("NXDOMAIN: err = %v, IsNotFound=%v IsTemporary=%v", err, IsNotFound(err), IsTemporary(err))
	}
	_, err = r.LookupMX(c, "onlya.test") // the name exists, no MX record
	if !IsNotFound(err) {
		t.Errorf("no MX record: err = %v, want not found", err)
	}
	_, err = r.LookupTXT(c, "broken.test") // SERVFAIL
	if IsNotFound(err) || !IsTemporary(err) {
		t.Errorf("SERVFAIL: err = %v, IsNotFound=%v IsTemporary=%v", err, IsNotFound(err), IsTemporary(err))
	}
}

func TestUnreachableServerIsTemporary(t *testing.T) {
	// A loopback port with nothing listening: the question must fail as
	// temporary and must not fall back to the system's resolvers.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	_ = pc.Close()
	c, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = New(addr).LookupMX(c, "example.test")
	if err == nil || IsNotFound(err) || !IsTemporary(err) {
		t.Errorf("unreachable server: err = %v, want a temporary error", err)
	}
}

func TestNewBareAddressMeansPort53(t *testing.T) {
	r := New("127.0.0.1").(*netResolver)
	if r.server != "127.0.0.1:53" {
		t.Errorf("server = %q", r.server)
	}
	r = New("::1").(*netResolver)
	if r.server != "[::1]:53" {
		t.Errorf("server = %q", r.server)
	}
	if New("").(*netResolver).String() != "system" {
		t.Error("New(\"\") should be the system resolver")
	}
}

func TestDNSBLThroughServer(t *testing.T) {
	addr, _ := startDNS(t, fixtureZones)
	r := New(addr)
	c := ctx(t)
	listed, answers, reason, err := LookupDNSBL(c, r, netip.MustParseAddr("127.0.0.2"), "bl.test")
	if err != nil || !listed || len(answers) != 1 || reason != "listed for testing" {
		t.Errorf("127.0.0.2: listed=%v answers=%v reason=%q err=%v", listed, answers, reason, err)
	}
	listed, _, _, err = LookupDNSBL(c, r, netip.MustParseAddr("127.0.0.9"), "bl.test")
	if err != nil || listed {
		t.Errorf("127.0.0.9: listed=%v err=%v, want not listed", listed, err)
	}
	listed, _, _, err = LookupDNSBL(c, r, netip.MustParseAddr("127.0.0.3"), "bl.test")
	if err == nil || listed {
		t.Errorf("answer outside 127/8: listed=%v err=%v, want an error and no listing", listed, err)
	}
}

func TestReverseName(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":        "1.2.0.192",
		"::ffff:192.0.2.1": "1.2.0.192",
		"2001:db8::1":      "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2",
	} {
		if got := ReverseName(netip.MustParseAddr(in)); got != want {
			t.Errorf("ReverseName(%s) = %s, want %s", in, got, want)
		}
	}
	if got := DNSBLName(netip.MustParseAddr("192.0.2.1"), "zen.example."); got != "1.2.0.192.zen.example" {
		t.Errorf("DNSBLName = %s", got)
	}
}

func TestMock(t *testing.T) {
	m := &Mock{
		MX:   map[string][]*net.MX{"Example.Test.": {{Host: "mx.example.test.", Pref: 5}}, "null.test": {{Host: "."}}},
		TXT:  map[string][]string{"_dmarc.example.test": {"v=DMARC1; p=reject"}},
		IP:   map[string][]netip.Addr{"mx.example.test": {netip.MustParseAddr("192.0.2.5")}},
		PTR:  map[string][]string{"192.0.2.5": {"mx.example.test."}},
		Fail: map[string]error{"slow.test": TemporaryError("slow.test")},
	}
	var r Resolver = m
	c := ctx(t)
	if mx, err := r.LookupMX(c, "example.test"); err != nil || len(mx) != 1 || mx[0].Host != "mx.example.test." {
		t.Errorf("MX = %v, %v", mxString(mx), err)
	}
	if mx, err := r.LookupMX(c, "null.test."); err != nil || !IsNullMX(mx) {
		t.Errorf("null MX = %v, %v", mxString(mx), err)
	}
	if _, err := r.LookupMX(c, "other.test"); !IsNotFound(err) {
		t.Errorf("missing MX: %v", err)
	}
	if _, err := r.LookupTXT(c, "slow.test"); !IsTemporary(err) {
		t.Errorf("Fail: %v", err)
	}
	if txt, err := r.LookupTXT(c, "_dmarc.example.test"); err != nil || txt[0] != "v=DMARC1; p=reject" {
		t.Errorf("TXT = %v, %v", txt, err)
	}
	if ips, err := r.LookupIP(c, "MX.example.test"); err != nil || ips[0] != netip.MustParseAddr("192.0.2.5") {
		t.Errorf("IP = %v, %v", ips, err)
	}
	if names, err := r.LookupAddr(c, netip.MustParseAddr("192.0.2.5")); err != nil || names[0] != "mx.example.test." {
		t.Errorf("PTR = %v, %v", names, err)
	}
	if q := m.Queries(); len(q) != 7 || q[0] != "MX example.test" {
		t.Errorf("Queries = %v", q)
	}
}

func mxString(mx []*net.MX) string {
	var b strings.Builder
	for _, m := range mx {
		fmt.Fprintf(&b, "%d %s; ", m.Pref, m.Host)
	}
	return b.String()
}
