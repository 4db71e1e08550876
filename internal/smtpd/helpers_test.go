package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"kanmon/internal/testutil/logbuf"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kanmon/internal/auth"
	"kanmon/internal/config"
	"kanmon/internal/directory"
	"kanmon/internal/logging"
	"kanmon/internal/metrics"
	"kanmon/internal/policy"
	"kanmon/internal/queue"
	"kanmon/internal/tlsutil"
)

const testPassword = "correct horse battery"

// enqueuer stands in for the scheduler: it passes on the ids of
// committed messages (dropping them when nobody reads).
type enqueuer chan string

func (q enqueuer) Enqueue(env *queue.Envelope) {
	select {
	case q <- env.ID:
	default:
	}
}

type testServer struct {
	srv    *Server
	db     *directory.DB
	spool  *queue.Spool
	addrs  map[Role]string
	logs   *logbuf.Buffer
	queued chan string
	tls    *tls.Config
}

// newTestServer starts MX, submission and smtps listeners on loopback with
// a fresh spool and the account alice@example.org.
func newTestServer(t testing.TB, mutate func(*config.Config)) *testServer {
	t.Helper()
	return newTestServerDeps(t, mutate, nil)
}

// newTestServerDeps is newTestServer with a last say on the Deps (a
// BATV guard, inbound checks) before anything is served.
func newTestServerDeps(t testing.TB, mutate func(*config.Config), deps func(*Deps)) *testServer {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Hostname = "mx.example.org"
	cfg.Domains = []string{"example.org"}
	cfg.DataDir = dir
	cfg.TLS.Cert = filepath.Join(dir, "cert.pem")
	cfg.TLS.Key = filepath.Join(dir, "key.pem")
	if mutate != nil {
		mutate(cfg)
	}
	if err := cfg.Finish(); err != nil {
		t.Fatal(err)
	}
	if _, err := tlsutil.WriteSelfSigned(cfg.TLS.Cert, cfg.TLS.Key, []string{"mx.example.org", "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	certs, err := tlsutil.Load(cfg.TLS.Cert, cfg.TLS.Key)
	if err != nil {
		t.Fatal(err)
	}
	db, err := directory.Open(cfg.DBPath())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	h, _ := auth.HashPassword(testPassword)
	ctx := context.Background()
	if err := db.AddUser(ctx, "alice@example.org", h); err != nil {
		t.Fatal(err)
	}
	if err := db.AddUser(ctx, "bob@example.org", h); err != nil {
		t.Fatal(err)
	}
	if err := db.AddAlias(ctx, "postmaster@example.org", "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	spool, err := queue.Open(cfg.QueueDir(), queue.Limits{MaxMessages: cfg.Queue.MaxMessages, MaxBytes: int64(cfg.Queue.MaxSize)})
	if err != nil {
		t.Fatal(err)
	}
	logs := &logbuf.Buffer{}
	domains := policy.Domains{Local: map[string]bool{"example.org": true}, Relay: map[string]bool{}}
	for _, d := range cfg.RelayDomains {
		domains.Relay[d] = true
	}
	pol := policy.NewEngine(domains, db, cfg.Policy.RejectForgedLocalSender)
	pol.Mailboxes = directory.NewMailboxes(db, cfg.MailRoot(), int64(cfg.Limits.MailboxQuota))
	pol.Clients = policy.Clients{Trusted: cfg.Trusted}
	ts := &testServer{db: db, spool: spool, addrs: map[Role]string{}, logs: logs, queued: make(chan string, 100), tls: certs.Config()}
	d := Deps{
		Config: cfg, Auth: auth.New(db, auth.NewThrottle(auth.ThrottleConfig{Window: time.Minute, FreeFailures: 3, MaxFailures: 10, MaxDelay: time.Millisecond})), Spool: spool,
		Policy: pol,
		TLS:    certs.Config(), Logger: logging.New(logs, "json", slog.LevelInfo),
		Metrics:   metrics.New(func() float64 { return 0 }, func() float64 { return 0 }),
		Scheduler: enqueuer(ts.queued),
	}
	if deps != nil {
		deps(&d)
	}
	ts.srv = New(d)
	for _, role := range []Role{RoleMX, RoleSubmission, RoleSMTPS} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ts.addrs[role] = ln.Addr().String()
		go ts.srv.Serve(ln, role)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ts.srv.Shutdown(ctx)
	})
	return ts
}

// client is a raw SMTP client: it sends exactly what the test says.
type client struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func (ts *testServer) dial(t testing.TB, role Role) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", ts.addrs[role], 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if role == RoleSMTPS {
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		c = tc
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	cl := &client{t: t, c: c, br: bufio.NewReader(c)}
	cl.expect("220 ")
	return cl
}

func (cl *client) send(line string) {
	cl.t.Helper()
	if _, err := io.WriteString(cl.c, line+"\r\n"); err != nil {
		cl.t.Fatalf("send %q: %v", line, err)
	}
}

func (cl *client) raw(s string) {
	cl.t.Helper()
	if _, err := io.WriteString(cl.c, s); err != nil {
		cl.t.Fatalf("send raw: %v", err)
	}
}

// reply reads one (possibly multi-line) reply and returns all its lines.
func (cl *client) reply() []string {
	cl.t.Helper()
	var lines []string
	for {
		l, err := cl.br.ReadString('\n')
		if err != nil {
			cl.t.Fatalf("read reply after %q: %v", lines, err)
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return lines
		}
	}
}

// expect reads a reply and checks that its last line starts with prefix
// (code and enhanced code, e.g. "550 5.7.1").
func (cl *client) expect(prefix string) string {
	cl.t.Helper()
	lines := cl.reply()
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, prefix) {
		cl.t.Fatalf("expected %q, got %q", prefix, lines)
	}
	return strings.Join(lines, "\n")
}

func (cl *client) cmd(line, prefix string) string {
	cl.t.Helper()
	cl.send(line)
	return cl.expect(prefix)
}

// closed asserts the server closed the connection.
func (cl *client) closed() {
	cl.t.Helper()
	cl.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(cl.br)
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			cl.t.Fatalf("connection still open; read %q", b)
		}
	}
}

func (cl *client) starttls() {
	cl.t.Helper()
	cl.cmd("STARTTLS", "220 2.0.0")
	tc := tls.Client(cl.c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		cl.t.Fatal(err)
	}
	cl.c = tc
	cl.br = bufio.NewReader(tc)
}

func plainAuth(user, pass string) string {
	return b64("\x00" + user + "\x00" + pass)
}

func queued(t testing.TB, ts *testServer) []string {
	t.Helper()
	ids, err := ts.spool.IDs()
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func readQueued(t testing.TB, ts *testServer, id string) (queue.Envelope, string) {
	t.Helper()
	m, err := ts.spool.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	b, _ := io.ReadAll(m.Body())
	return m.Envelope, string(b)
}

func dialRaw(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		c.SetDeadline(time.Now().Add(10 * time.Second))
	}
	return c, err
}

// openConns counts the connections holding a slot on any listener.
func (s *Server) openConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.listeners {
		n += l.Active()
	}
	return n
}
