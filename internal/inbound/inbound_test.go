package inbound

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"kanmon/internal/address"
	"kanmon/internal/config"
	"kanmon/internal/dnsresolve"
	"kanmon/internal/policy"
)

func testScreen(t *testing.T, m *dnsresolve.Mock, edit func(*config.Inbound)) *Screen {
	t.Helper()
	cfg := config.DefaultInbound()
	if edit != nil {
		edit(&cfg)
	}
	return New(cfg, m, nil)
}

func testConn(ip string) *Conn {
	return &Conn{ID: "ctest", IP: netip.MustParseAddr(ip), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// TestDynamicName: generic names are recognised, ordinary server names
// are not.
func TestDynamicName(t *testing.T) {
	c := testConn("203.0.113.5")
	for name, want := range map[string]bool{
		"dsl-203-0-113-5.isp.example":      true,
		"5.113.0.203.customers.example":    true,
		"cb007105.isp.example":             true,
		"host.dyn.isp.example":             true,
		"ppp123.isp.example":               true,
		"mail.example.org":                 false,
		"mx1.mail.example.org":             false,
		"pool.example":                     false,
		"smtp-out-203.provider.example":    false,
		"dhcp-client-lan.corp.example.com": true,
	} {
		if _, got := dynamicName(name, c, nil); got != want {
			t.Errorf("dynamicName(%q) = %v, want %v", name, got, want)
		}
	}
	if _, got := dynamicName("hsd1.isp.example", c, []string{"hsd"}); !got {
		t.Error("dynamic_labels entry not honoured")
	}
}

// TestPTRTemporaryFailureIsNotMissing: a reverse lookup that fails
// temporarily is our DNS trouble, not "no PTR": the check passes (logs).
func TestPTRTemporaryFailureIsNotMissing(t *testing.T) {
	m := &dnsresolve.Mock{Fail: map[string]error{"192.0.2.9": dnsresolve.TemporaryError("9.2.0.192.in-addr.arpa")}}
	s := testScreen(t, m, nil)
	c := testConn("192.0.2.9")
	if out := s.Connect(context.Background(), c); out.Refused {
		t.Fatalf("temporary PTR failure refused the client: %v", out.Verdict)
	}
	// A real NXDOMAIN is "no PTR": 450 4.7.25 by default.
	s = testScreen(t, &dnsresolve.Mock{}, nil)
	out := s.Connect(context.Background(), testConn("192.0.2.9"))
	if !out.Refused || out.Verdict.Code != 450 || out.Verdict.Enhanced != "4.7.25" || out.Verdict.Rule != "client.no_ptr" {
		t.Fatalf("no PTR: %+v", out)
	}
}

// TestAccessAllowSkipsEverything: an allow entry skips the connection
// and sender checks; deny refuses with 554 5.7.1.
func TestAccessAllowSkipsEverything(t *testing.T) {
	s := testScreen(t, &dnsresolve.Mock{}, func(in *config.Inbound) {
		in.AllowParsed = config.AccessList{Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/28")}}
		in.DenyParsed = config.AccessList{Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}
	})
	c := testConn("192.0.2.3")
	if out := s.Connect(context.Background(), c); out.Refused || !c.Allowed {
		t.Fatalf("allowed client: %+v allowed=%v", out, c.Allowed)
	}
	from, _ := address.ParseReversePath("<a@nosuch.example>", false)
	if out := s.Mail(context.Background(), c, "h.example", from); out.Refused {
		t.Fatalf("allowed client's sender was checked: %+v", out)
	}
	out := s.Connect(context.Background(), testConn("192.0.2.200"))
	if !out.Refused || out.Verdict.Code != 554 || out.Verdict.Rule != "client.deny" {
		t.Fatalf("denied client: %+v", out)
	}
}

// TestDNSBLTimeoutCountsAsNotListed: a blocklist that fails is not a
// listing; the weights add up against the threshold.
func TestDNSBLTimeoutCountsAsNotListed(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.7")
	m := &dnsresolve.Mock{
		PTR: map[string][]string{"192.0.2.7": {"mail.example.org"}},
		IP: map[string][]netip.Addr{
			"mail.example.org":    {ip},
			"7.2.0.192.a.example": {netip.MustParseAddr("127.0.0.2")},
			"7.2.0.192.b.example": {netip.MustParseAddr("127.0.0.4")},
		},
		Fail: map[string]error{"7.2.0.192.down.example": dnsresolve.TemporaryError("down")},
	}
	s := testScreen(t, m, func(in *config.Inbound) {
		in.DNSBL = []config.DNSBLZone{{Zone: "a.example", Weight: 0.5}, {Zone: "down.example", Weight: 1},
			{Zone: "b.example", Weight: 0.5, Codes: []string{"127.0.0.2"}}}
	})
	if out := s.Connect(context.Background(), testConn("192.0.2.7")); out.Refused {
		t.Fatalf("0.5 < 1 (b.example's code does not count, down.example failed) yet refused: %+v", out)
	}
	s.cfg.DNSBL[2].Codes = []string{"127.0.0.4"}
	out := s.Connect(context.Background(), testConn("192.0.2.7"))
	if !out.Refused || out.Verdict.Code != 554 || out.Verdict.Rule != "client.dnsbl" {
		t.Fatalf("listed on two lists of weight 0.5: %+v", out)
	}
}

// TestSenderDomainTemporaryIsNeverPermanent: SERVFAIL at MAIL gives 451
// 4.4.3 even with the action reject; a null MX 550 5.7.27.
func TestSenderDomainTemporaryIsNeverPermanent(t *testing.T) {
	m := &dnsresolve.Mock{
		Fail: map[string]error{"broken.example": dnsresolve.TemporaryError("broken.example")},
		MX:   map[string][]*net.MX{"nomail.example": {{Host: "."}}},
	}
	s := testScreen(t, m, func(in *config.Inbound) { in.SPFFail, in.SPFTempError = config.ActionOff, config.ActionOff })
	c := testConn("192.0.2.7")
	for from, want := range map[string]string{"<a@broken.example>": "451 4.4.3", "<a@nomail.example>": "550 5.7.27", "<a@none.example>": "550 5.1.8"} {
		f, _ := address.ParseReversePath(from, false)
		out := s.Mail(context.Background(), c, "h.example", f)
		if got := itoa(out.Verdict.Code) + " " + out.Verdict.Enhanced; !out.Refused || got != want {
			t.Errorf("%s: %s (%+v), want %s", from, got, out, want)
		}
	}
}

// TestDNSBLCachedForTTL: a second connection from a listed address asks
// no list again; the time kept is the answer's TTL within [1m,
// dnsbl_cache], the lower bound when the TTL is unknown.
func TestDNSBLCachedForTTL(t *testing.T) {
	m := &dnsresolve.Mock{
		PTR: map[string][]string{"192.0.2.7": {"mail.example.org"}},
		IP: map[string][]netip.Addr{
			"mail.example.org":    {netip.MustParseAddr("192.0.2.7")},
			"7.2.0.192.a.example": {netip.MustParseAddr("127.0.0.2")},
		},
		TTL: map[string]time.Duration{"7.2.0.192.a.example": 300 * time.Second},
	}
	s := testScreen(t, m, func(in *config.Inbound) {
		in.DNSBL = []config.DNSBLZone{{Zone: "a.example", Weight: 1}, {Zone: "b.example", Weight: 1}}
	})
	asked := func() int {
		n := 0
		for _, q := range m.Queries() {
			if strings.HasSuffix(q, ".a.example") || strings.HasSuffix(q, ".b.example") {
				n++
			}
		}
		return n
	}
	for i := range 2 {
		if out := s.Connect(context.Background(), testConn("192.0.2.7")); !out.Refused || out.Verdict.Rule != "client.dnsbl" {
			t.Fatalf("connection %d: %+v", i+1, out)
		}
	}
	if n := asked(); n != 2 {
		t.Errorf("blocklists asked %d times over two connections, want 2 (one per list, then the cache)", n)
	}
	e, ok := s.cache.m["a.example|192.0.2.7"]
	if left := time.Until(e.expires); !ok || left < 290*time.Second || left > 300*time.Second {
		t.Errorf("listed answer kept %v, want its TTL 5m", left)
	}
	e, ok = s.cache.m["b.example|192.0.2.7"]
	if left := time.Until(e.expires); !ok || left < 50*time.Second || left > time.Minute {
		t.Errorf("not-listed answer without TTL kept %v, want the 1m lower bound", left)
	}
	c := newBLCache(time.Hour, 10)
	for ttl, want := range map[time.Duration]time.Duration{0: time.Minute, time.Second: time.Minute, 2 * time.Hour: time.Hour, 10 * time.Minute: 10 * time.Minute} {
		if got := c.keep(ttl); got != want {
			t.Errorf("keep(%v) = %v, want %v", ttl, got, want)
		}
	}
	if got := newBLCache(10*time.Second, 10).keep(time.Hour); got != 10*time.Second {
		t.Errorf("dnsbl_cache 10s: kept %v", got)
	}
}

// TestNoteWouldOnlyForARefusal: a finding logged without enforcing it
// says the reply it would have sent; a recorded result (an SPF pass, the
// allow list) has none to name, so no "would=0 ".
func TestNoteWouldOnlyForARefusal(t *testing.T) {
	var buf strings.Builder
	c := testConn("192.0.2.7")
	c.Log = slog.New(slog.NewTextHandler(&buf, nil))
	s := testScreen(t, &dnsresolve.Mock{}, nil)
	s.note(c, judge(config.ActionLog, "client.fcrdns", 550, 450, "7.25", "mismatch"), "")
	s.note(c, Result{Rule: "spf.pass", Action: config.ActionLog, Verdict: policy.Verdict{Accept: true, Rule: "spf.pass", Reason: "SPF pass recorded"}}, "")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `would="550 5.7.25"`) || strings.Contains(lines[1], "would=") {
		t.Errorf("decision lines:\n%s", buf.String())
	}
}
