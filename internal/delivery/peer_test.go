package delivery

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"kanmon/internal/directory"
	"kanmon/internal/logging"
	"kanmon/internal/metrics"
	"kanmon/internal/queue"
	"kanmon/internal/tlsutil"
)

// syncBuffer collects log output safely across goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// peerMsg is one transaction a scripted peer received.
type peerMsg struct {
	helo  string
	from  string
	rcpts []string
	data  string
	tls   bool
}

// peer is a small scripted SMTP server on loopback, for replies a real
// MTA will not give on demand (451, 550, silence).
type peer struct {
	addr   string
	listen string      // address to listen on (default 127.0.0.1:0)
	tls    *tls.Config // STARTTLS offered when set
	utf8   bool        // SMTPUTF8 offered
	// rcpt returns the reply to RCPT number n (counting from 0 over the
	// peer's life); nil accepts.
	rcpt func(n int, addr string) string
	// hang keeps every connection silent after accepting it until closed.
	hang chan struct{}

	mu    sync.Mutex
	n     int
	conns int
	msgs  []peerMsg
}

func startPeer(t *testing.T, p *peer) *peer {
	t.Helper()
	if p.listen == "" {
		p.listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", p.listen)
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
			go p.serve(c)
		}
	}()
	return p
}

func (p *peer) messages() []peerMsg {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]peerMsg(nil), p.msgs...)
}

func (p *peer) serve(c net.Conn) {
	defer c.Close()
	p.mu.Lock()
	p.conns++
	p.mu.Unlock()
	if p.hang != nil {
		<-p.hang
		return
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	w := func(s string) { c.Write([]byte(s + "\r\n")) }
	w("220 peer.test ESMTP")
	var cur peerMsg
	inTLS := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb := strings.ToUpper(line)
		switch {
		case strings.HasPrefix(verb, "EHLO"):
			cur = peerMsg{helo: strings.TrimSpace(line[4:]), tls: inTLS}
			ext := []string{"peer.test", "PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"}
			if p.utf8 {
				ext = append(ext, "SMTPUTF8")
			}
			if p.tls != nil && !inTLS {
				ext = append(ext, "STARTTLS")
			}
			for i, e := range ext {
				if i == len(ext)-1 {
					w("250 " + e)
				} else {
					w("250-" + e)
				}
			}
		case verb == "STARTTLS":
			w("220 2.0.0 go ahead")
			tc := tls.Server(c, p.tls)
			if tc.Handshake() != nil {
				return
			}
			c, br, inTLS = tc, bufio.NewReader(tc), true
		case strings.HasPrefix(verb, "MAIL FROM:"):
			cur.from = strings.Trim(strings.Fields(line[10:] + " ")[0], "<>")
			cur.rcpts = nil
			w("250 2.1.0 ok")
		case strings.HasPrefix(verb, "RCPT TO:"):
			addr := strings.Trim(line[8:], "<> ")
			p.mu.Lock()
			n := p.n
			p.n++
			p.mu.Unlock()
			reply := "250 2.1.5 ok"
			if p.rcpt != nil {
				if r := p.rcpt(n, addr); r != "" {
					reply = r
				}
			}
			if strings.HasPrefix(reply, "2") {
				cur.rcpts = append(cur.rcpts, addr)
			}
			w(reply)
		case verb == "DATA" && len(cur.rcpts) == 0:
			// RFC 2920 3.1: with no valid recipient, DATA is refused.
			w("554 5.5.1 no valid recipients")
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
			cur.data = data.String()
			p.mu.Lock()
			p.msgs = append(p.msgs, cur)
			p.mu.Unlock()
			w("250 2.0.0 queued as PEER1")
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

// env is a test setup: a spool, a scheduler and its log.
type testEnv struct {
	spool *queue.Spool
	sched *Scheduler
	logs  *syncBuffer
	root  string
}

// newEnv builds a scheduler with fast retries; mutate adjusts it before
// Start. alice@example.org is a local account (DSNs to her are local).
func newEnv(t *testing.T, mutate func(*Scheduler)) *testEnv {
	t.Helper()
	dir := t.TempDir()
	spool, err := queue.Open(filepath.Join(dir, "queue"), queue.Limits{MaxMessages: 1000, MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	e := &testEnv{spool: spool, logs: logs, root: filepath.Join(dir, "mail")}
	e.sched = &Scheduler{
		Spool: spool, MailRoot: e.root, Log: logging.New(logs, "json", slog.LevelDebug),
		Metrics: metrics.New(func() float64 { return 0 }, func() float64 { return 0 }),
		Workers: 4, RetryMin: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond, Expire: time.Hour,
		Hostname: "mx.example.org", Tick: 20 * time.Millisecond,
		LocalAccount: func(a string) (string, bool) {
			if strings.EqualFold(a, "alice@example.org") {
				return "alice@example.org", true
			}
			return "", false
		},
		Remote: &Remote{HeloName: "mx.example.org", Routes: map[string]string{}, ConnectTimeout: 2 * time.Second,
			CommandTimeout: 5 * time.Second, DataTimeout: 5 * time.Second},
	}
	if mutate != nil {
		mutate(e.sched)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.sched.Start(ctx)
	t.Cleanup(func() {
		cancel()
		e.sched.Wait()
		if t.Failed() {
			t.Logf("scheduler log:\n%s", logs.String())
		}
	})
	return e
}

// submit queues a message and tells the scheduler.
func (e *testEnv) submit(t *testing.T, env queue.Envelope, body string) string {
	t.Helper()
	w, err := e.spool.Create(env)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	e.sched.Enqueue(w.ID())
	return w.ID()
}

func testMessage(from, to, subject string) string {
	return "Received: from client (127.0.0.1) by mx.example.org\r\nFrom: " + from + "\r\nTo: " + to +
		"\r\nSubject: " + subject + "\r\nMessage-Id: <" + subject + "@example.org>\r\n\r\nbody of " + subject + "\r\n"
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// queueEmpty reports whether the spool holds nothing.
func (e *testEnv) queueEmpty() bool {
	n, _ := e.spool.Len()
	return n == 0
}

// maildir returns the messages in an account's Maildir new/.
func (e *testEnv) maildir(account string) []string {
	dir := filepath.Join(directory.MailboxPath(e.root, account), "new")
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, d := range ents {
		b, err := os.ReadFile(filepath.Join(dir, d.Name()))
		if err == nil {
			out = append(out, string(b))
		}
	}
	return out
}

// peerTLS returns a server TLS config with a fresh self-signed certificate.
func peerTLS(t *testing.T) *tls.Config {
	t.Helper()
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if _, err := tlsutil.WriteSelfSigned(cert, key, []string{"peer.test", "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	st, err := tlsutil.Load(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return st.Config()
}
