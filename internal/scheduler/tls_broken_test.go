package scheduler

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"kanmon/internal/courier/remote"
	"kanmon/internal/testutil/smtppeer"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"kanmon/internal/dnsresolve"
)

// How a brokenTLSPeer misbehaves after answering 220 to STARTTLS.
const (
	breakGarbage = "garbage" // reads the ClientHello, answers with non-TLS bytes
	breakClose   = "close"   // closes the connection instead of a handshake
	breakTLS10   = "tls10"   // a real handshake, but TLS 1.0 only
)

// brokenTLSPeer is a scripted SMTP server on loopback that advertises
// STARTTLS on every connection and answers 220 to it, then breaks the
// handshake (mode). A client that does not ask for STARTTLS gets an
// ordinary plain-text transaction. Every byte received is recorded per
// connection, so a test can tell what was ever sent in clear.
type brokenTLSPeer struct {
	addr string
	mode string
	tls  *tls.Config // for breakTLS10

	mu       sync.Mutex
	raw      []*bytes.Buffer // bytes received, one buffer per connection
	starttls []int           // connection numbers that sent STARTTLS
	msgs     []smtppeer.Msg  // completed transactions (all in plain text)
	msgConn  []int           // connection number of each message
}

func startBrokenTLSPeer(t *testing.T, mode string) *brokenTLSPeer {
	t.Helper()
	p := &brokenTLSPeer{mode: mode}
	if mode == breakTLS10 {
		cfg := smtppeer.TLSConfig(t).Clone()
		cfg.MinVersion = tls.VersionTLS10
		cfg.MaxVersion = tls.VersionTLS10
		p.tls = cfg
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			n := len(p.raw)
			buf := &bytes.Buffer{}
			p.raw = append(p.raw, buf)
			p.mu.Unlock()
			go p.serve(c, n, buf)
		}
	}()
	return p
}

// recorder copies what the client sends into the connection's buffer.
type recorder struct {
	p   *brokenTLSPeer
	c   net.Conn
	buf *bytes.Buffer
}

func (r recorder) Read(b []byte) (int, error) {
	n, err := r.c.Read(b)
	r.p.mu.Lock()
	r.buf.Write(b[:n])
	r.p.mu.Unlock()
	return n, err
}

// readerConn reads through r (a bufio.Reader over Conn) and writes to Conn.
type readerConn struct {
	net.Conn
	r io.Reader
}

func (c *readerConn) Read(b []byte) (int, error) { return c.r.Read(b) }

func (p *brokenTLSPeer) conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.raw)
}

func (p *brokenTLSPeer) received() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, b := range p.raw {
		out = append(out, b.String())
	}
	return out
}

func (p *brokenTLSPeer) snapshot() (msgs []smtppeer.Msg, msgConn, starttls []int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]smtppeer.Msg(nil), p.msgs...), append([]int(nil), p.msgConn...), append([]int(nil), p.starttls...)
}

func (p *brokenTLSPeer) serve(c net.Conn, n int, buf *bytes.Buffer) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(recorder{p, c, buf})
	w := func(s string) { c.Write([]byte(s + "\r\n")) }
	w("220 broken.test ESMTP")
	var cur smtppeer.Msg
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb := strings.ToUpper(line)
		switch {
		case strings.HasPrefix(verb, "EHLO"):
			cur = smtppeer.Msg{Helo: strings.TrimSpace(line[4:])}
			w("250-broken.test")
			w("250-PIPELINING")
			w("250-8BITMIME")
			w("250-AUTH PLAIN LOGIN")
			w("250-ENHANCEDSTATUSCODES")
			w("250 STARTTLS")
		case verb == "STARTTLS":
			p.mu.Lock()
			p.starttls = append(p.starttls, n)
			p.mu.Unlock()
			w("220 2.0.0 go ahead")
			switch p.mode {
			case breakClose:
				return
			case breakGarbage:
				// Wait for the ClientHello so the garbage arrives as the
				// handshake answer, not as data pipelined after the 220.
				hello := make([]byte, 5)
				if _, err := io.ReadFull(br, hello); err != nil {
					return
				}
				c.Write([]byte("HTTP/1.1 400 Bad Request\r\nthis is not TLS at all\r\n\r\n"))
				time.Sleep(100 * time.Millisecond)
				return
			case breakTLS10:
				tc := tls.Server(&readerConn{Conn: c, r: br}, p.tls)
				if tc.Handshake() == nil {
					// Must not happen: the client requires TLS 1.2.
					w("421 4.7.0 handshake unexpectedly succeeded")
				}
				return
			}
		case strings.HasPrefix(verb, "AUTH"):
			w("535 5.7.8 no")
		case strings.HasPrefix(verb, "MAIL FROM:"):
			cur.From = strings.Trim(strings.Fields(line[10:] + " ")[0], "<>")
			cur.Rcpts = nil
			w("250 2.1.0 ok")
		case strings.HasPrefix(verb, "RCPT TO:"):
			cur.Rcpts = append(cur.Rcpts, strings.Trim(line[8:], "<> "))
			w("250 2.1.5 ok")
		case verb == "DATA":
			w("354 go on")
			var data strings.Builder
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				data.WriteString(strings.TrimPrefix(l, "."))
			}
			cur.Data = data.String()
			p.mu.Lock()
			p.msgs = append(p.msgs, cur)
			p.msgConn = append(p.msgConn, n)
			p.mu.Unlock()
			w("250 2.0.0 queued as BROKEN1")
		case verb == "RSET" || verb == "NOOP":
			w("250 2.0.0 ok")
		case verb == "QUIT":
			w("221 2.0.0 bye")
			return
		default:
			w("502 5.5.1 unknown")
		}
	}
}

// TestMXBrokenTLSFallsBackToPlain: an MX that offers STARTTLS, says 220
// to it and then breaks the handshake (garbage, a closed connection, or
// only TLS 1.0 while we require 1.2) gets the message in plain text on a
// second connection within the same attempt (opportunistic TLS, RFC
// 7435), where we do not try STARTTLS again. The delivery log line says
// delivered, without a TLS version; the queue empties and no DSN is sent.
func TestMXBrokenTLSFallsBackToPlain(t *testing.T) {
	for _, mode := range []string{breakGarbage, breakClose, breakTLS10} {
		t.Run(mode, func(t *testing.T) {
			p := startBrokenTLSPeer(t, mode)
			_, port, _ := net.SplitHostPort(p.addr)
			mock := &dnsresolve.Mock{
				MX: map[string][]*net.MX{"remote.test": {{Host: "mx1.remote.test.", Pref: 10}}},
				IP: map[string][]netip.Addr{"mx1.remote.test": {netip.MustParseAddr("127.0.0.1")}},
			}
			e := newEnv(t, func(s *Scheduler) {
				rem(s).Resolver = mock
				rem(s).Port, _ = strconv.Atoi(port)
			})
			subject := "broken-tls-" + mode
			body := testMessage("alice@example.org", "bob@remote.test", subject)
			id := e.submit(t, ownUser("bob@remote.test"), body)
			waitFor(t, "queue to empty", e.queueEmpty)

			msgs, msgConn, starttls := p.snapshot()
			if len(starttls) != 1 || starttls[0] != 0 {
				t.Errorf("STARTTLS sent on connections %v, want only on the first (0)", starttls)
			}
			if len(msgs) != 1 {
				t.Fatalf("peer got %d messages, want 1: %+v", len(msgs), msgs)
			}
			if msgConn[0] != 1 {
				t.Errorf("message delivered on connection %d, want 1 (the plain-text reconnect)", msgConn[0])
			}
			if got := p.conns(); got != 2 {
				t.Errorf("%d connections, want 2 (TLS attempt, plain-text fallback)", got)
			}
			m := msgs[0]
			if m.TLS || m.Helo != "mx.example.org" || m.From != "alice@example.org" ||
				len(m.Rcpts) != 1 || m.Rcpts[0] != "bob@remote.test" || m.Data != body {
				t.Errorf("peer got %+v\nwant plain text, EHLO mx.example.org, from alice, to bob, body\n%q", m, body)
			}
			if !e.logs.Has("delivery", func(l map[string]any) bool {
				return l["queue_id"] == id && l["rcpt"] == "bob@remote.test" && l["result"] == "delivered" &&
					l["mx"] == "mx1.remote.test" && l["tls"] == "" && strings.HasPrefix(l["reply"].(string), "250 ")
			}) {
				t.Errorf("no delivery line with result delivered, mx mx1.remote.test and no TLS version")
			}
			if e.logs.Has("delivery", func(l map[string]any) bool { return l["queue_id"] == id && l["result"] != "delivered" }) {
				t.Errorf("a deferred or failed delivery line for a message the fallback delivered")
			}
			if n := len(e.maildir("alice@example.org")); n != 0 {
				t.Errorf("alice got %d messages (a DSN?)", n)
			}
		})
	}
}

// TestRemoteBrokenTLSResult: the same fallback seen from Remote.Deliver
// through a static route: one Result, OK, with no TLS version.
func TestRemoteBrokenTLSResult(t *testing.T) {
	p := startBrokenTLSPeer(t, breakGarbage)
	r := &remote.Remote{HeloName: "mx.example.org", Routes: map[string]string{"remote.test": p.addr},
		ConnectTimeout: 2 * time.Second, CommandTimeout: 5 * time.Second, DataTimeout: 5 * time.Second}
	env := ownUser("bob@remote.test")
	body := testMessage("alice@example.org", "bob@remote.test", "direct")
	res := r.Send(context.Background(), &env, "remote.test", []string{"bob@remote.test"},
		func() io.Reader { return strings.NewReader(body) })
	if len(res) != 1 || !res[0].OK || res[0].TLS != "" || res[0].Code != 250 || res[0].Rcpt != "bob@remote.test" {
		t.Fatalf("Deliver = %+v, want one OK result in plain text", res)
	}
}

// TestSmarthostBrokenTLSNoPlaintext: a smarthost that offers STARTTLS and
// breaks the handshake never gets a plain-text fallback: the message is
// deferred (never bounced) and stays queued, and neither the credentials
// nor any part of the transaction (AUTH, MAIL) is ever sent in clear.
func TestSmarthostBrokenTLSNoPlaintext(t *testing.T) {
	for _, mode := range []string{breakGarbage, breakClose, breakTLS10} {
		t.Run(mode, func(t *testing.T) {
			p := startBrokenTLSPeer(t, mode)
			e := newEnv(t, func(s *Scheduler) {
				rem(s).Smarthost = p.addr
				rem(s).SmarthostUser = "customer@isp.test"
				rem(s).SmarthostPassword = smarthostPassword
				rem(s).SmarthostRoots = x509.NewCertPool()
			})
			id := e.submit(t, ownUser("friend@far.test"), testMessage("alice@example.org", "friend@far.test", "smarthost-"+mode))
			waitFor(t, "two deferred attempts", func() bool {
				n := 0
				for _, l := range e.logs.Lines("delivery") {
					if l["queue_id"] == id && l["result"] == "deferred" {
						n++
						if !strings.Contains(l["reply"].(string), "TLS") {
							t.Errorf("deferred line does not name the TLS failure: %v", l)
						}
					}
				}
				return n >= 2
			})
			if e.logs.Has("delivery", func(l map[string]any) bool { return l["result"] == "delivered" || l["result"] == "failed" }) {
				t.Errorf("smarthost delivery with broken TLS was delivered or failed, want deferred only")
			}
			if e.queueEmpty() {
				t.Errorf("the message left the queue")
			}
			if n := len(e.maildir("alice@example.org")); n != 0 {
				t.Errorf("alice got %d messages (a DSN for a temporary smarthost problem?)", n)
			}
			msgs, _, starttls := p.snapshot()
			if len(msgs) != 0 {
				t.Errorf("smarthost got %d messages in plain text", len(msgs))
			}
			if conns := p.conns(); len(starttls) != conns {
				t.Errorf("%d connections but STARTTLS on only %v: a plain-text session was attempted", conns, starttls)
			}
			plain := base64.StdEncoding.EncodeToString([]byte("\x00customer@isp.test\x00" + smarthostPassword))
			for i, raw := range p.received() {
				for _, bad := range []string{smarthostPassword, plain, "AUTH", "MAIL FROM", "customer@isp.test"} {
					if strings.Contains(raw, bad) {
						t.Errorf("connection %d: %q sent in clear:\n%q", i, bad, raw)
					}
				}
			}
			if strings.Contains(e.logs.String(), smarthostPassword) {
				t.Errorf("the password appears in the log")
			}
		})
	}
}
