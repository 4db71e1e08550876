package scheduler

import (
	"kanmon/internal/testutil/smtppeer"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"kanmon/internal/dnsresolve"
	"kanmon/internal/queue"
	"kanmon/internal/testutil/postfix"
)

func ownUser(rcpts ...string) queue.Envelope {
	env := queue.Envelope{From: "alice@example.org", Origin: queue.OriginAuthenticated, AuthUser: "alice@example.org", ClientIP: "127.0.0.1"}
	for _, r := range rcpts {
		env.Recipients = append(env.Recipients, queue.Recipient{Addr: r})
	}
	return env
}

// TestDeliverToSmtpSink: a real receiving MTA (Postfix's smtp-sink) on
// loopback gets the message through a static route; one "delivery" log
// line per recipient says delivered, with the mx; the queue empties.
func TestDeliverToSmtpSink(t *testing.T) {
	sink := postfix.StartSink(t, "")
	e := newEnv(t, func(s *Scheduler) { rem(s).Routes["remote.test"] = sink.Addr })
	id := e.submit(t, ownUser("bob@remote.test", "carol@remote.test"), testMessage("alice@example.org", "bob@remote.test", "to-the-sink"))
	waitFor(t, "queue to empty", e.queueEmpty)
	var got string
	waitFor(t, "the sink's dump", func() bool {
		msgs, _ := sink.Messages()
		for _, m := range msgs {
			if strings.Contains(string(m), "Subject: to-the-sink") {
				got = string(m)
				return true
			}
		}
		return false
	})
	for _, want := range []string{"bob@remote.test", "carol@remote.test", "alice@example.org", "body of to-the-sink"} {
		if !strings.Contains(got, want) {
			t.Errorf("sink dump lacks %q:\n%s", want, got)
		}
	}
	host, _, _ := net.SplitHostPort(sink.Addr)
	for _, rcpt := range []string{"bob@remote.test", "carol@remote.test"} {
		if !e.logs.Has("delivery", func(l map[string]any) bool {
			return l["queue_id"] == id && l["rcpt"] == rcpt && l["result"] == "delivered" && l["mx"] == host &&
				strings.HasPrefix(l["reply"].(string), "250 ")
		}) {
			t.Errorf("no delivery log line for %s with result delivered, mx %s", rcpt, host)
		}
	}
}

// TestMXLookupSTARTTLS: the MX of remote.test comes from the resolver
// (a Mock), the peer offers STARTTLS and gets the message over TLS 1.2+,
// with our EHLO name; the log line names the MX host and the TLS version.
func TestMXLookupSTARTTLS(t *testing.T) {
	p := smtppeer.Start(t, &smtppeer.Peer{TLS: smtppeer.TLSConfig(t)})
	_, port, _ := net.SplitHostPort(p.Addr)
	mock := &dnsresolve.Mock{
		MX: map[string][]*net.MX{"remote.test": {{Host: "mx2.remote.test.", Pref: 20}, {Host: "mx1.remote.test.", Pref: 10}}},
		IP: map[string][]netip.Addr{"mx1.remote.test": {netip.MustParseAddr("127.0.0.1")}},
	}
	e := newEnv(t, func(s *Scheduler) {
		rem(s).Resolver = mock
		rem(s).Port, _ = strconv.Atoi(port)
	})
	e.submit(t, ownUser("bob@remote.test"), testMessage("alice@example.org", "bob@remote.test", "over-tls"))
	waitFor(t, "queue to empty", e.queueEmpty)
	msgs := p.Messages()
	if len(msgs) != 1 || !msgs[0].TLS || msgs[0].Helo != "mx.example.org" || msgs[0].From != "alice@example.org" ||
		!strings.Contains(msgs[0].Data, "body of over-tls") {
		t.Fatalf("peer got %+v, want one message over TLS with EHLO mx.example.org", msgs)
	}
	if !e.logs.Has("delivery", func(l map[string]any) bool {
		return l["mx"] == "mx1.remote.test" && strings.HasPrefix(l["tls"].(string), "TLS 1.") && l["result"] == "delivered"
	}) {
		t.Errorf("no delivery line with mx mx1.remote.test and tls")
	}
}

// TestTemporaryFailureRetried: a peer answering 451 twice is retried with
// backoff until it accepts; no DSN is sent.
func TestTemporaryFailureRetried(t *testing.T) {
	p := smtppeer.Start(t, &smtppeer.Peer{Rcpt: func(n int, _ string) string {
		if n < 2 {
			return "451 4.3.0 try again later"
		}
		return ""
	}})
	e := newEnv(t, func(s *Scheduler) { rem(s).Routes["remote.test"] = p.Addr })
	id := e.submit(t, ownUser("bob@remote.test"), testMessage("alice@example.org", "bob@remote.test", "retry-me"))
	waitFor(t, "queue to empty", e.queueEmpty)
	if n := len(p.Messages()); n != 1 {
		t.Fatalf("peer received %d messages, want 1", n)
	}
	deferred := 0
	for _, l := range e.logs.Lines("delivery") {
		if l["queue_id"] == id && l["result"] == "deferred" {
			deferred++
			if !strings.Contains(l["reply"].(string), "451 4.3.0") {
				t.Errorf("deferred line without the peer's reply: %v", l)
			}
		}
	}
	if deferred != 2 {
		t.Errorf("%d deferred attempts logged, want 2", deferred)
	}
	if len(e.maildir("alice@example.org")) != 0 || len(e.logs.Lines("queue")) == 0 {
		t.Errorf("a DSN was sent for a message that got through")
	}
}

// TestPermanentFailureBouncesOwnUser: a 550 for one recipient fails it at
// once; our own (authenticated) user gets an RFC 3464 DSN in her Maildir,
// with the original headers, while the other recipient is delivered.
func TestPermanentFailureBouncesOwnUser(t *testing.T) {
	p := smtppeer.Start(t, &smtppeer.Peer{Rcpt: func(_ int, a string) string {
		if strings.HasPrefix(a, "nobody@") {
			return "550 5.1.1 no such user here"
		}
		return ""
	}})
	e := newEnv(t, func(s *Scheduler) { rem(s).Routes["remote.test"] = p.Addr })
	id := e.submit(t, ownUser("nobody@remote.test", "bob@remote.test"), testMessage("alice@example.org", "nobody@remote.test", "will-bounce"))
	waitFor(t, "queue to empty", e.queueEmpty)
	var dsn string
	waitFor(t, "the DSN in alice's Maildir", func() bool {
		if m := e.maildir("alice@example.org"); len(m) == 1 {
			dsn = m[0]
			return true
		}
		return false
	})
	for _, want := range []string{
		"Return-Path: <>\r\n", "multipart/report", "report-type=delivery-status", "message/delivery-status",
		"Final-Recipient: rfc822; nobody@remote.test", "Action: failed", "Status: 5.1.1",
		"Diagnostic-Code: smtp; 550 5.1.1 no such user here", "text/rfc822-headers", "Subject: will-bounce",
		"Auto-Submitted: auto-replied", "X-Kanmon-Queue-ID: " + id,
	} {
		if !strings.Contains(dsn, want) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn)
		}
	}
	if strings.Contains(dsn, "body of will-bounce") {
		t.Errorf("DSN carries the original body; only headers belong in it")
	}
	if strings.Contains(dsn, "bob@remote.test") {
		t.Errorf("DSN mentions the recipient that was delivered")
	}
	if !e.logs.Has("queue", func(l map[string]any) bool { return l["queue_id"] == id && l["op"] == "bounced" }) {
		t.Errorf("no queue op=bounced line")
	}
	if n := len(p.Messages()); n != 1 {
		t.Errorf("peer got %d messages, want 1 (for bob)", n)
	}
}

// TestNoBounceForMailFromOutside: law 3. Mail that came in from outside
// (a relay_domains backup-MX message), mail from the null sender and a
// DSN itself are dropped on a 550 without any DSN, and the log says so.
func TestNoBounceForMailFromOutside(t *testing.T) {
	p := smtppeer.Start(t, &smtppeer.Peer{Rcpt: func(int, string) string { return "550 5.1.1 no such user" }})
	e := newEnv(t, func(s *Scheduler) { rem(s).Routes["partner.test"] = p.Addr })
	cases := []struct {
		name   string
		env    queue.Envelope
		reason string
	}{
		{"inbound", queue.Envelope{From: "someone@elsewhere.test", Origin: queue.OriginInbound}, "law 3"},
		{"null sender", queue.Envelope{From: "", Origin: queue.OriginAuthenticated}, "never a DSN to <>"},
		{"dsn", queue.Envelope{From: "", Origin: queue.OriginLocal}, "never a DSN about a DSN"},
		{"inbound claiming our user", queue.Envelope{From: "alice@example.org", Origin: queue.OriginInbound}, "law 3"},
	}
	ids := map[string]string{}
	for _, c := range cases {
		c.env.Recipients = []queue.Recipient{{Addr: "x@partner.test"}}
		ids[c.name] = e.submit(t, c.env, testMessage(c.env.From, "x@partner.test", "drop"))
	}
	waitFor(t, "queue to empty", e.queueEmpty)
	for _, c := range cases {
		if !e.logs.Has("queue", func(l map[string]any) bool {
			return l["queue_id"] == ids[c.name] && l["op"] == "dropped" && l["bounce"] == false &&
				strings.Contains(l["reason"].(string), c.reason)
		}) {
			t.Errorf("%s: no queue op=dropped bounce=false line with reason %q", c.name, c.reason)
		}
	}
	if len(e.logs.Lines("queue")) == 0 || e.logs.Has("queue", func(l map[string]any) bool { return l["op"] == "bounced" }) {
		t.Errorf("a DSN was generated for mail from outside")
	}
	if m := e.maildir("alice@example.org"); len(m) != 0 {
		t.Errorf("alice got %d messages (a DSN for a forged sender?)", len(m))
	}
}

// TestPeerDownDeferredThenExpired: a peer that does not listen defers the
// recipient (stays queued, retried); when the message expires our own
// user gets a DSN with 4.4.7.
func TestPeerDownDeferredThenExpired(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	down := ln.Addr().String()
	ln.Close()
	e := newEnv(t, func(s *Scheduler) {
		rem(s).Routes["remote.test"] = down
		s.Expire = 700 * time.Millisecond
	})
	id := e.submit(t, ownUser("bob@remote.test"), testMessage("alice@example.org", "bob@remote.test", "nobody-home"))
	waitFor(t, "a deferred attempt", func() bool {
		return e.logs.Has("delivery", func(l map[string]any) bool { return l["queue_id"] == id && l["result"] == "deferred" })
	})
	if e.queueEmpty() {
		t.Fatal("message left the queue after a temporary failure")
	}
	var dsn string
	waitFor(t, "the expiry DSN", func() bool {
		for _, m := range e.maildir("alice@example.org") {
			if strings.Contains(m, "Action: failed") {
				dsn = m
				return true
			}
		}
		return false
	})
	if !strings.Contains(dsn, "Status: 4.4.7") || !strings.Contains(dsn, "expired") {
		t.Errorf("expiry DSN lacks Status 4.4.7 / expired:\n%s", dsn)
	}
	waitFor(t, "queue to empty", e.queueEmpty)
}

// TestDNSOutcomes: a DNS failure defers (never bounces); a domain with no
// MX and no address fails at once (5.1.2); a null MX (RFC 7505) fails at
// once (5.1.10) without any connection; a domain without MX falls back to
// its address (RFC 5321 5.1).
func TestDNSOutcomes(t *testing.T) {
	p := smtppeer.Start(t, &smtppeer.Peer{})
	_, port, _ := net.SplitHostPort(p.Addr)
	mock := &dnsresolve.Mock{
		MX:   map[string][]*net.MX{"nullmx.test": {{Host: "."}}},
		IP:   map[string][]netip.Addr{"addronly.test": {netip.MustParseAddr("127.0.0.1")}},
		Fail: map[string]error{"servfail.test": dnsresolve.TemporaryError("servfail.test")},
	}
	e := newEnv(t, func(s *Scheduler) {
		rem(s).Resolver = mock
		rem(s).Port, _ = strconv.Atoi(port)
	})
	idTemp := e.submit(t, ownUser("a@servfail.test"), testMessage("alice@example.org", "a@servfail.test", "dns-temp"))
	idNX := e.submit(t, ownUser("a@nxdomain.test"), testMessage("alice@example.org", "a@nxdomain.test", "dns-nx"))
	idNull := e.submit(t, ownUser("a@nullmx.test"), testMessage("alice@example.org", "a@nullmx.test", "dns-null"))
	idA := e.submit(t, ownUser("a@addronly.test"), testMessage("alice@example.org", "a@addronly.test", "dns-a"))
	want := map[string]struct{ result, reply string }{
		idTemp: {"deferred", "4.4.3"}, idNX: {"failed", "550 5.1.2"}, idNull: {"failed", "556 5.1.10"}, idA: {"delivered", "250"},
	}
	for id, w := range want {
		waitFor(t, id+" "+w.result, func() bool {
			return e.logs.Has("delivery", func(l map[string]any) bool {
				return l["queue_id"] == id && l["result"] == w.result && strings.Contains(l["reply"].(string), w.reply)
			})
		})
	}
	waitFor(t, "two DSNs", func() bool { return len(e.maildir("alice@example.org")) == 2 })
	if n := len(p.Messages()); n != 1 {
		t.Errorf("peer got %d messages, want 1 (addronly.test)", n)
	}
	// A DSN leaves the queue just after its Maildir copy is written.
	waitFor(t, "the queue to hold only the deferred message", func() bool { return e.queueEmptyExcept(idTemp) })
}

func (e *testEnv) queueEmptyExcept(id string) bool {
	ids, _ := e.spool.IDs()
	return len(ids) == 1 && ids[0] == id
}

// TestDelayWarning: our own user's mail that keeps failing temporarily
// gets one "delayed" DSN after delay_warning and stays queued.
func TestDelayWarning(t *testing.T) {
	p := smtppeer.Start(t, &smtppeer.Peer{Rcpt: func(int, string) string { return "451 4.2.0 mailbox busy" }})
	e := newEnv(t, func(s *Scheduler) {
		rem(s).Routes["remote.test"] = p.Addr
		s.Reports.DelayWarning = 150 * time.Millisecond
	})
	id := e.submit(t, ownUser("bob@remote.test"), testMessage("alice@example.org", "bob@remote.test", "slow"))
	waitFor(t, "the delay warning", func() bool { return len(e.maildir("alice@example.org")) == 1 })
	dsn := e.maildir("alice@example.org")[0]
	for _, want := range []string{"Action: delayed", "Status: 4.2.0", "Will-Retry-Until:", "Subject: Delayed Mail"} {
		if !strings.Contains(dsn, want) {
			t.Errorf("delay DSN lacks %q:\n%s", want, dsn)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if n := len(e.maildir("alice@example.org")); n != 1 {
		t.Errorf("%d delay warnings, want exactly 1", n)
	}
	if e.queueEmpty() {
		t.Errorf("the delayed message left the queue")
	}
	_ = id
}

// TestBounceLaneNotStarved: with every normal-lane connection stuck on a
// silent peer, a DSN (bounce lane) is still delivered; and the reverse
// holds for ordinary mail during a flood of null-sender mail.
func TestBounceLaneNotStarved(t *testing.T) {
	stuck := smtppeer.Start(t, &smtppeer.Peer{Hang: make(chan struct{})})
	defer close(stuck.Hang)
	good := smtppeer.Start(t, &smtppeer.Peer{})
	e := newEnv(t, func(s *Scheduler) {
		s.Workers = 2
		s.MaxConcurrency = 4 // 3 normal, 1 bounce
		s.MaxPerDomain = 10
		rem(s).Routes["stuck.test"] = stuck.Addr
		rem(s).Routes["good.test"] = good.Addr
	})
	for i := 0; i < 6; i++ {
		e.submit(t, ownUser("x"+strconv.Itoa(i)+"@stuck.test"), testMessage("alice@example.org", "x@stuck.test", "stuck"+strconv.Itoa(i)))
	}
	waitFor(t, "the normal lane to be stuck", func() bool {
		return stuck.Conns() >= 2
	})
	env := queue.Envelope{From: "", Origin: queue.OriginLocal, Recipients: []queue.Recipient{{Addr: "someone@good.test"}}}
	id := e.submit(t, env, testMessage("MAILER-DAEMON@example.org", "someone@good.test", "a-dsn"))
	waitFor(t, "the DSN to get through", func() bool {
		return e.logs.Has("delivery", func(l map[string]any) bool {
			return l["queue_id"] == id && l["result"] == "delivered" && l["lane"] == LaneBounce
		})
	})
}

// TestSMTPUTF8RequiredButNotOffered: a message that needs SMTPUTF8 fails
// (5.6.7) at a peer that does not offer it, rather than being mangled.
func TestSMTPUTF8RequiredButNotOffered(t *testing.T) {
	p := smtppeer.Start(t, &smtppeer.Peer{})
	e := newEnv(t, func(s *Scheduler) { rem(s).Routes["remote.test"] = p.Addr })
	env := ownUser("bob@remote.test")
	env.SMTPUTF8 = true
	e.submit(t, env, testMessage("alice@example.org", "bob@remote.test", "utf8"))
	waitFor(t, "the DSN", func() bool { return len(e.maildir("alice@example.org")) == 1 })
	if dsn := e.maildir("alice@example.org")[0]; !strings.Contains(dsn, "Status: 5.6.7") {
		t.Errorf("DSN lacks Status: 5.6.7:\n%s", dsn)
	}
	if n := len(p.Messages()); n != 0 {
		t.Errorf("peer got %d messages", n)
	}
}
