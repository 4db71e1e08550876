package listener

import (
	"bufio"
	"context"
	"errors"
	"io"
	"kanmon/internal/testutil/logbuf"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// echoHandler greets with "HELLO <id>", echoes lines, says "BYE shutdown"
// when told to shut down while idle, and records stress notices.
type echoHandler struct {
	stressed  atomic.Int32
	opened    atomic.Int32
	goodbyes  atomic.Int32
	panicOpen atomic.Bool // Open panics
}

func (h *echoHandler) Refuse(nc net.Conn, id, rule string) Reply {
	line := "NO " + rule + " (" + id + ")"
	io.WriteString(nc, line+"\r\n")
	return Reply{Code: 421, Enhanced: "4.7.0", Line: line}
}

func (h *echoHandler) Open(nc net.Conn, c Conn) Session {
	if h.panicOpen.Load() {
		panic("open failed")
	}
	h.opened.Add(1)
	return &echoSession{h: h, nc: nc, c: c}
}

type echoSession struct {
	h       *echoHandler
	nc      net.Conn
	c       Conn
	closing atomic.Bool
}

// Serve closes the connection on return, not in a deferred call, as
// Session requires: after a panic Goodbye still has it open.
func (s *echoSession) Serve() {
	s.serve()
	s.nc.Close()
}

func (s *echoSession) serve() {
	io.WriteString(s.nc, "HELLO "+s.c.ID+"\r\n")
	br := bufio.NewReader(s.nc)
	for {
		s.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if s.closing.Load() {
			io.WriteString(s.nc, "BYE shutdown\r\n")
			return
		}
		line, err := br.ReadString('\n')
		if err != nil {
			if s.closing.Load() {
				io.WriteString(s.nc, "BYE shutdown\r\n")
			}
			return
		}
		if line == "PANIC\r\n" {
			var m map[string]int
			//lint:ignore SA5000 a nil map write on purpose: a real runtime panic
			m["boom"]++
		}
		io.WriteString(s.nc, line)
	}
}

func (s *echoSession) Goodbye() {
	s.h.goodbyes.Add(1)
	io.WriteString(s.nc, "BYE internal error ("+s.c.ID+")\r\n")
}

func (s *echoSession) Shutdown() {
	s.closing.Store(true)
	s.nc.SetReadDeadline(time.Now())
}

func (s *echoSession) Stress() { s.h.stressed.Add(1) }

type gauge struct{ v atomic.Int64 }

func (g *gauge) Set(f float64) { g.v.Store(int64(f)) }

// start serves a Listener on a loopback port.
func start(t *testing.T, cfg Config, h Handler) (*Listener, string, *logbuf.Buffer) {
	t.Helper()
	logs := &logbuf.Buffer{}
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	l := New(cfg, h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		l.Shutdown(ctx)
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Errorf("Serve returned %v, want ErrClosed", err)
		}
	})
	return l, ln.Addr().String(), logs
}

// dialFrom connects from a loopback source address and reads the first line.
func dialFrom(t *testing.T, src, a string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	nc, err := d.Dial("tcp", a)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(nc)
	line, _ := br.ReadString('\n')
	return nc, br, strings.TrimRight(line, "\r\n")
}

func waitActive(t *testing.T, l *Listener, n int) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if l.Active() == n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%d connections active, want %d", l.Active(), n)
}

// TestPoolFullRefusedInProtocolWords: the connection over max_connections
// hears the protocol's own refusal, is closed, and is logged once; a slot
// freed is usable again.
func TestPoolFullRefusedInProtocolWords(t *testing.T) {
	h := &echoHandler{}
	l, a, logs := start(t, Config{Name: "mx", MaxConns: 3, MaxConnsPerClient: 3}, h)
	var held []net.Conn
	for i, src := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		nc, _, g := dialFrom(t, src, a)
		if !strings.HasPrefix(g, "HELLO c") {
			t.Fatalf("connection %d greeted %q", i+1, g)
		}
		held = append(held, nc)
	}
	nc, br, g := dialFrom(t, "127.0.0.5", a)
	if !strings.HasPrefix(g, "NO limit.connections (c") {
		t.Fatalf("4th connection got %q, want the handler's refusal", g)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("refused connection left open")
	}
	nc.Close()
	if n := logs.Count(`"msg":"connect.refused"`, `"rule":"limit.connections"`, `"code":421`, `"listener":"mx"`); n != 1 {
		t.Errorf("%d connect.refused lines, want 1:\n%s", n, logs)
	}
	if h.opened.Load() != 3 {
		t.Errorf("Open called %d times, want 3 (never for the refused one)", h.opened.Load())
	}
	held[0].Close()
	waitActive(t, l, 2)
	if _, _, g := dialFrom(t, "127.0.0.5", a); !strings.HasPrefix(g, "HELLO") {
		t.Errorf("after a slot was freed: %q", g)
	}
}

// TestClientKey: one rule for every protocol — an IPv4 client is its
// address, an IPv6 client its /64, a socket without address is no client.
func TestClientKey(t *testing.T) {
	for _, c := range []struct{ ip, want string }{
		{"192.0.2.7", "192.0.2.7/32"},
		{"::ffff:192.0.2.7", "192.0.2.7/32"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
		{"::1", "::/64"},
	} {
		if got := ClientKey(netip.MustParseAddr(c.ip)); got.String() != c.want {
			t.Errorf("ClientKey(%s) = %s, want %s", c.ip, got, c.want)
		}
	}
	if ClientKey(netip.Addr{}).IsValid() {
		t.Error("an invalid address has a client key")
	}
	if RemoteIP(&net.UnixAddr{Name: "/x", Net: "unix"}).IsValid() {
		t.Error("a Unix socket peer has an IP")
	}
}

// TestPerClientIPv6CountsTheSlash64: addresses in one /64 share the
// per-client allowance; another /64 and IPv4 addresses have their own;
// clients without an address count only toward the pool.
func TestPerClientIPv6CountsTheSlash64(t *testing.T) {
	l := New(Config{Name: "mx", MaxConns: 100, MaxConnsPerClient: 2}, &echoHandler{})
	a := netip.MustParseAddr
	if r := l.admit(a("2001:db8:1:2::1")); r != "" {
		t.Fatal(r)
	}
	if r := l.admit(a("2001:db8:1:2::ffff")); r != "" {
		t.Fatal(r)
	}
	if r := l.admit(a("2001:db8:1:2:dead:beef::9")); r != RuleConnectionsPerClient {
		t.Fatalf("3rd address of one /64: rule %q, want %s", r, RuleConnectionsPerClient)
	}
	if r := l.admit(a("2001:db8:1:3::1")); r != "" {
		t.Fatalf("another /64 refused: %s", r)
	}
	l.admit(a("192.0.2.1"))
	l.admit(a("192.0.2.1"))
	if r := l.admit(a("192.0.2.2")); r != "" {
		t.Fatalf("neighbouring IPv4 address refused: %s", r)
	}
	if r := l.admit(a("::ffff:192.0.2.1")); r != RuleConnectionsPerClient {
		t.Fatalf("mapped form of a full IPv4 client: rule %q", r)
	}
	for i := 0; i < 5; i++ {
		if r := l.admit(netip.Addr{}); r != "" {
			t.Fatalf("local socket client %d refused: %s", i, r)
		}
	}
	if l.Active() != 11 {
		t.Fatalf("active %d, want 11", l.Active())
	}
	l.release(a("2001:db8:1:2::1"))
	if r := l.admit(a("2001:db8:1:2::42")); r != "" {
		t.Fatalf("after a release in the /64: %s", r)
	}
}

// TestStressTransitions: stress starts at the threshold, is said once in
// the log and the gauge, tells waiting sessions, and ends only ten points
// lower.
func TestStressTransitions(t *testing.T) {
	h := &echoHandler{}
	g := &gauge{}
	l, a, logs := start(t, Config{Name: "mx", MaxConns: 10, MaxConnsPerClient: 10, StressPercent: 80, StressGauge: g}, h)
	var conns []net.Conn
	for i := 0; i < 7; i++ {
		nc, _, _ := dialFrom(t, "127.0.0.1", a)
		conns = append(conns, nc)
	}
	waitActive(t, l, 7)
	if l.Stressed() || g.v.Load() != 0 || h.stressed.Load() != 0 {
		t.Fatal("stressed at 70% (threshold 80%)")
	}
	nc, _, _ := dialFrom(t, "127.0.0.1", a) // 8 of 10
	conns = append(conns, nc)
	waitActive(t, l, 8)
	if !l.Stressed() || g.v.Load() != 1 {
		t.Fatal("not stressed at 80%")
	}
	// The 7 sessions registered before were told; the 8th asks Stressed.
	if n := h.stressed.Load(); n != 7 {
		t.Errorf("%d sessions told of stress, want 7", n)
	}
	nc, _, _ = dialFrom(t, "127.0.0.1", a) // 9: no second transition
	conns = append(conns, nc)
	waitActive(t, l, 9)
	for _, c := range conns[6:] { // down to 6: 70% keeps stress (hysteresis)
		c.Close()
	}
	waitActive(t, l, 6)
	if l.Stressed() {
		t.Fatal("stress ended at 60%, want it to end below 70%")
	}
	if g.v.Load() != 0 {
		t.Error("gauge still 1 after stress ended")
	}
	if on, off := logs.Count(`"msg":"listener.stress"`, `"on":true`), logs.Count(`"msg":"listener.stress"`, `"on":false`); on != 1 || off != 1 {
		t.Errorf("listener.stress lines: %d on, %d off; want one each:\n%s", on, off, logs)
	}
}

// TestStressHysteresis checks the exit point exactly, without sockets.
func TestStressHysteresis(t *testing.T) {
	l := New(Config{Name: "mx", MaxConns: 10, MaxConnsPerClient: 10, StressPercent: 80}, &echoHandler{})
	ip := netip.Addr{}
	for i := 0; i < 8; i++ {
		l.admit(ip)
	}
	if !l.Stressed() {
		t.Fatal("8/10 not stressed")
	}
	l.release(ip) // 7: 70%, still stressed
	if !l.Stressed() {
		t.Fatal("7/10 left stress mode (hysteresis is 10 points)")
	}
	l.release(ip) // 6
	if l.Stressed() {
		t.Fatal("6/10 still stressed")
	}
	off := New(Config{Name: "pop3", MaxConns: 2, MaxConnsPerClient: 2}, &echoHandler{})
	off.admit(ip)
	off.admit(ip)
	if off.Stressed() {
		t.Fatal("StressPercent 0 must never stress")
	}
}

// TestShutdownDrains: idle sessions hear the protocol's shutdown reply; a
// session that ignores Shutdown is cut when the context ends.
func TestShutdownDrains(t *testing.T) {
	h := &echoHandler{}
	logs := &logbuf.Buffer{}
	l := New(Config{Name: "mx", MaxConns: 5, MaxConnsPerClient: 5, Logger: slog.New(slog.NewJSONHandler(logs, nil))}, h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Serve(ln) }()
	_, br, _ := dialFrom(t, "127.0.0.1", ln.Addr().String())
	waitActive(t, l, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if line, _ := br.ReadString('\n'); line != "BYE shutdown\r\n" {
		t.Errorf("idle session got %q at shutdown", line)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("Serve returned %v", err)
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Error("still accepting after Shutdown")
	}

	stuck := New(Config{Name: "mx", MaxConns: 5, MaxConnsPerClient: 5}, stubbornHandler{})
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	go stuck.Serve(ln2)
	nc, _, _ := dialFrom(t, "127.0.0.1", ln2.Addr().String())
	waitActive(t, stuck, 1)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if err := stuck.Shutdown(ctx2); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown of a session that does not end: %v, want DeadlineExceeded", err)
	}
	nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := nc.Read(make([]byte, 1)); err == nil || errors.Is(err, syscall.EAGAIN) {
		t.Errorf("connection not closed at the drain deadline: %v", err)
	}
}

// stubbornHandler's sessions ignore Shutdown until their connection closes.
type stubbornHandler struct{}

func (stubbornHandler) Refuse(nc net.Conn, id, rule string) Reply { return Reply{} }
func (stubbornHandler) Open(nc net.Conn, c Conn) Session          { return stubborn{nc} }

type stubborn struct{ nc net.Conn }

func (s stubborn) Serve() {
	io.WriteString(s.nc, "HI\r\n")
	io.Copy(io.Discard, s.nc)
	s.nc.Close()
}
func (s stubborn) Shutdown() {}
func (s stubborn) Goodbye()  {}

// flakyListener fails Accept with EMFILE a few times, then delegates.
type flakyListener struct {
	net.Listener
	fails atomic.Int32
}

func (f *flakyListener) Accept() (net.Conn, error) {
	if f.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return f.Listener.Accept()
}

// TestAcceptBacksOffOnTemporaryErrors: running out of file descriptors
// does not stop the listener; it waits and serves again.
func TestAcceptBacksOffOnTemporaryErrors(t *testing.T) {
	logs := &logbuf.Buffer{}
	l := New(Config{Name: "mx", MaxConns: 5, MaxConnsPerClient: 5, Logger: slog.New(slog.NewJSONHandler(logs, nil))}, &echoHandler{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyListener{Listener: ln}
	fl.fails.Store(3)
	go l.Serve(fl)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		l.Shutdown(ctx)
	})
	if _, _, g := dialFrom(t, "127.0.0.1", ln.Addr().String()); !strings.HasPrefix(g, "HELLO") {
		t.Fatalf("after EMFILE: %q", g)
	}
	if n := logs.Count(`"msg":"accept"`, `"temporary":true`); n != 3 {
		t.Errorf("%d accept warnings, want 3:\n%s", n, logs)
	}
}
