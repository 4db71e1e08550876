package smtpd

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"kanmon/internal/batv"
	"kanmon/internal/config"
	"kanmon/internal/inbound"
)

// newBATVServer is a test server whose policy has a BATV guard with mode
// for example.org, as a new installation (no grace); more sets other
// Deps.
func newBATVServer(t *testing.T, mode batv.Mode, more func(*Deps)) (*testServer, *batv.Guard) {
	t.Helper()
	g := newGuard(t, mode)
	ts := newTestServerDeps(t, nil, func(d *Deps) {
		d.Policy.BATV = g
		if more != nil {
			more(d)
		}
	})
	return ts, g
}

// newGuard is a BATV guard with mode for example.org.
func newGuard(t *testing.T, mode batv.Mode) *batv.Guard {
	t.Helper()
	dir := t.TempDir()
	kr, _, err := batv.OpenKeyring(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	modes := map[string]batv.Mode{"example.org": mode}
	st, _, err := batv.Sync(dir, modes, false, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	g := batv.NewGuard(kr)
	g.SetDomains(modes, st)
	return g
}

// A bounce names one recipient; the second gets 452 4.5.3, with or
// without BATV, whatever the domain.
func TestRcptBounceOneRecipient(t *testing.T) {
	ts := newTestServer(t, nil)
	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO client.remote.test", "250 ")
	cl.cmd("MAIL FROM:<>", "250 2.1.0")
	cl.cmd("RCPT TO:<alice@example.org>", "250 2.1.5")
	cl.cmd("RCPT TO:<bob@example.org>", "452 4.5.3")
	cl.cmd("RSET", "250")
	cl.cmd("MAIL FROM:<a@remote.test>", "250 2.1.0")
	cl.cmd("RCPT TO:<alice@example.org>", "250 2.1.5")
	cl.cmd("RCPT TO:<bob@example.org>", "250 2.1.5")
	if !strings.Contains(ts.logs.String(), `"rule":"rcpt.bounce_recipients"`) {
		t.Errorf("no rcpt.bounce_recipients decision line:\n%s", ts.logs.String())
	}
}

// BATV at RCPT: an untagged or forged bounce is refused with 550 5.7.1
// naming BATV, its decision line carrying the client, HELO and sender;
// a tagged one is accepted and queued for the plain address; mail with a
// sender to a tagged address is accepted and the tag removed.
func TestRcptBATV(t *testing.T) {
	ts, g := newBATVServer(t, batv.ModeEnforce, nil)
	tagged := g.Sender("alice@example.org")
	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO bouncer.remote.test", "250 ")
	cl.cmd("MAIL FROM:<>", "250 2.1.0")
	if r := cl.cmd("RCPT TO:<alice@example.org>", "550 5.7.1"); !strings.Contains(r, "BATV") {
		t.Errorf("refusal does not name BATV: %q", r)
	}
	cl.cmd("RCPT TO:<prvs=0123abcdef=alice@example.org>", "550 5.7.1")
	cl.cmd("RCPT TO:<"+tagged+">", "250 2.1.5")
	cl.cmd("DATA", "354")
	cl.raw("Subject: bounce\r\n\r\nreturned\r\n.\r\n")
	reply := cl.expect("250 2.0.0")
	env, _ := readQueued(t, ts, strings.TrimSpace(reply[strings.LastIndex(reply, " "):]))
	if len(env.Recipients) != 1 || env.Recipients[0].Addr != "alice@example.org" || env.From != "" {
		t.Fatalf("queued %+v, want the bounce for the plain alice@example.org", env)
	}
	cl.cmd("MAIL FROM:<someone@remote.test>", "250 2.1.0")
	cl.cmd("RCPT TO:<prvs=0123abcdef=bob@example.org>", "250 2.1.5")
	logs := ts.logs.String()
	for _, want := range []string{`"rule":"rcpt.batv"`, `"batv":"missing"`, `"batv":"bad_signature"`, `"client":"127.0.0.1"`,
		`"helo":"bouncer.remote.test"`, `"batv":"valid"`, `"tagged":"` + tagged + `"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
}

// Mode log: the untagged bounce is accepted, and a decision line with
// action log says what would have been refused.
func TestRcptBATVLogMode(t *testing.T) {
	ts, _ := newBATVServer(t, batv.ModeLog, nil)
	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO bouncer.remote.test", "250 ")
	cl.cmd("MAIL FROM:<>", "250 2.1.0")
	cl.cmd("RCPT TO:<alice@example.org>", "250 2.1.5")
	if logs := ts.logs.String(); !strings.Contains(logs, `"rule":"rcpt.batv","action":"log"`) || !strings.Contains(logs, `"would":"550 5.7.1 `) {
		t.Errorf("no rcpt.batv line with action log:\n%s", logs)
	}
}

// countingResolver counts DNS questions and answers each with "no such
// name".
type countingResolver struct{ n atomic.Int64 }

func (r *countingResolver) LookupMX(context.Context, string) ([]*net.MX, error) {
	r.n.Add(1)
	return nil, &net.DNSError{Err: "no such host", IsNotFound: true}
}
func (r *countingResolver) LookupTXT(context.Context, string) ([]string, error) {
	r.n.Add(1)
	return nil, &net.DNSError{Err: "no such host", IsNotFound: true}
}
func (r *countingResolver) LookupIP(context.Context, string) ([]netip.Addr, error) {
	r.n.Add(1)
	return nil, &net.DNSError{Err: "no such host", IsNotFound: true}
}
func (r *countingResolver) LookupAddr(context.Context, netip.Addr) ([]string, error) {
	r.n.Add(1)
	return nil, &net.DNSError{Err: "no such host", IsNotFound: true}
}

// A forged bounce costs no DNS lookup: the MAIL stage's checks (SPF of
// the HELO name for <>) wait until the recipient passed BATV, and the
// refusal at RCPT ends the transaction before them. A bounce with a
// valid tag does get them.
func TestForgedBounceAsksNoDNS(t *testing.T) {
	ic := config.DefaultInbound()
	ic.GreetDelay = config.Duration{}
	ic.DynamicClient, ic.MissingPTR, ic.FCrDNSMismatch = config.ActionOff, config.ActionOff, config.ActionOff
	res := &countingResolver{}
	ts, g := newBATVServer(t, batv.ModeEnforce, func(d *Deps) { d.Inbound = inbound.New(ic, res, d.Metrics) })
	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO bouncer.remote.test", "250 ")
	cl.cmd("MAIL FROM:<>", "250 2.1.0")
	cl.cmd("RCPT TO:<alice@example.org>", "550 5.7.1")
	if n := res.n.Load(); n != 0 {
		t.Fatalf("a forged bounce cost %d DNS questions, want 0", n)
	}
	cl.cmd("RCPT TO:<"+g.Sender("alice@example.org")+">", "250 2.1.5")
	if res.n.Load() == 0 {
		t.Errorf("a bounce with a valid tag was not screened (SPF of its HELO name)")
	}
}
