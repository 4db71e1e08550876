package remote

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"kanmon/internal/dnsresolve"
)

// probePeer answers a probe like a partner that knows only known@partner.test,
// and records the commands it got.
func probePeer(t *testing.T) (*hostilePeer, func() []string) {
	var mu sync.Mutex
	var cmds []string
	p := startHostile(t, func(p *hostilePeer, n int, c net.Conn, br *bufio.Reader) {
		c.Write([]byte("220 partner.test ESMTP\r\n"))
		for {
			l := readCmd(br)
			if l == "" {
				return
			}
			mu.Lock()
			cmds = append(cmds, l)
			mu.Unlock()
			switch {
			case strings.HasPrefix(l, "EHLO"):
				ehloOK(c, "PIPELINING")
			case strings.HasPrefix(l, "RCPT TO:<known@"):
				c.Write([]byte("250 2.1.5 ok\r\n"))
			case strings.HasPrefix(l, "RCPT"):
				c.Write([]byte("550 5.1.1 <nosuch@partner.test>: Recipient address rejected: User unknown\r\n"))
			case l == "QUIT":
				c.Write([]byte("221 2.0.0 bye\r\n"))
				return
			default:
				c.Write([]byte("250 2.0.0 ok\r\n"))
			}
		}
	})
	return p, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), cmds...)
	}
}

// TestProbeDialogue: a probe says EHLO, MAIL FROM:<>, RCPT, RSET, QUIT and
// never DATA, and hands back the partner's own answer.
func TestProbeDialogue(t *testing.T) {
	p, cmds := probePeer(t)
	pr := &Prober{Remote: &Remote{HeloName: "mx2.example.org", Routes: map[string]string{"partner.test": p.addr}}, Timeout: 5 * time.Second}
	res := pr.Probe(context.Background(), "partner.test", "nosuch@partner.test")
	if res.Err != nil || res.Code != 550 || res.Enhanced != "5.1.1" || !strings.Contains(res.Text, "User unknown") {
		t.Fatalf("probe of an unknown user = %+v", res)
	}
	want := []string{"EHLO mx2.example.org", "MAIL FROM:<>", "RCPT TO:<nosuch@partner.test>", "RSET", "QUIT"}
	if got := cmds(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("dialogue %q, want %q", got, want)
	}
	res = pr.Probe(context.Background(), "partner.test", "known@partner.test")
	if res.Err != nil || res.Code != 250 {
		t.Fatalf("probe of a known user = %+v", res)
	}
}

// TestProbeBounded: a partner that streams an endless reply line or says
// nothing costs a bounded error within the probe timeout, never an
// answer about the recipient.
func TestProbeBounded(t *testing.T) {
	long := startHostile(t, func(p *hostilePeer, n int, c net.Conn, br *bufio.Reader) {
		p.stream(c, []byte("220-"+strings.Repeat("x", 1000)), 1<<30)
	})
	silent := startHostile(t, func(p *hostilePeer, n int, c net.Conn, br *bufio.Reader) {
		for !p.abort.Load() {
			time.Sleep(10 * time.Millisecond)
		}
	})
	for name, addr := range map[string]string{"endless line": long.addr, "silent": silent.addr} {
		pr := &Prober{Remote: &Remote{Routes: map[string]string{"partner.test": addr}}, Timeout: 2 * time.Second}
		start := time.Now()
		res := pr.Probe(context.Background(), "partner.test", "user@partner.test")
		if res.Err == nil || res.Code != 0 {
			t.Errorf("%s: probe = %+v, want an error", name, res)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("%s: probe took %s with a 2s timeout", name, d)
		}
	}
}

// TestProbeSkipsSelf: the probe goes to the MX hosts preferred over ours,
// never to ourselves by name or by listening address, and fails (no
// answer) when only we are left.
func TestProbeSkipsSelf(t *testing.T) {
	p, _ := probePeer(t)
	host, _, _ := net.SplitHostPort(p.addr)
	ip := netip.MustParseAddr(host)
	res := &dnsresolve.Mock{
		MX: map[string][]*net.MX{
			"partner.test": {{Host: "mx1.partner.test.", Pref: 10}, {Host: "mx2.example.org.", Pref: 20}, {Host: "mx3.partner.test.", Pref: 30}},
			"alone.test":   {{Host: "mx2.example.org.", Pref: 10}},
		},
		IP: map[string][]netip.Addr{"mx1.partner.test": {ip}, "mx3.partner.test": {ip}, "mx2.example.org": {ip}},
	}
	r := &Remote{Resolver: res, HeloName: "mx2.example.org"}
	r.Port = mustPort(t, p.addr)
	pr := &Prober{Remote: r, SelfNames: []string{"MX2.example.org"}, Timeout: 5 * time.Second}
	hops, err := pr.hops(context.Background(), "partner.test")
	if err != nil || len(hops) != 1 || hops[0].host != "mx1.partner.test" {
		t.Fatalf("hops = %+v, %v; want mx1.partner.test only", hops, err)
	}
	if r := pr.Probe(context.Background(), "partner.test", "known@partner.test"); r.Code != 250 || r.Host != "mx1.partner.test" {
		t.Errorf("probe = %+v", r)
	}
	if r := pr.Probe(context.Background(), "alone.test", "known@alone.test"); r.Err == nil {
		t.Errorf("probe with only ourselves as MX = %+v, want an error", r)
	}
	pr.SelfNames, pr.SelfAddrs = nil, []string{p.addr}
	if r := pr.Probe(context.Background(), "alone.test", "known@alone.test"); r.Err == nil {
		t.Errorf("probe of our own listening address = %+v, want an error", r)
	}
}

func mustPort(t *testing.T, addr string) int {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return int(ap.Port())
}
