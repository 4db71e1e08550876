// Package listener is the part of every kanmon protocol server that is not
// the protocol: the accept loop, the connection pool of one listener, the
// per-client limit, stress mode, connection ids and the graceful drain.
// SMTP (internal/smtpd) and POP3 (internal/pop3) plug their dialogues into
// it through Handler, so every listener counts, refuses and drains the
// same way.
//
// # Pools
//
// Each Listener has its own pool of MaxConns connections, so a flood of
// idle strangers on the MX port cannot take the slots of logged-in users
// on submission or POP3. Within a pool, one client may hold at most
// MaxConnsPerClient connections, where a client is an IPv4 address or an
// IPv6 /64 (one subscriber's network: counting IPv6 addresses one by one
// would let a single host take the whole pool). A connection without an
// IP address (the local Unix socket) counts toward the pool only.
//
// # Stress mode
//
// When a pool is StressPercent full, the listener is "stressed" (as in
// Postfix's stress-adaptive behaviour): sessions ask Stressed before each
// read and then use short timeouts and a low error limit, and sessions
// already waiting are told at once (StressAware), so idle connections are
// shed before the pool runs out. The listener leaves stress mode when the
// pool drops ten points below the threshold, so it does not flap. Each
// transition is one "listener.stress" log line and sets the StressGauge.
//
// SECURITY: everything here runs before a single byte is read from the
// client. The client address comes from the socket, never from the
// dialogue; a refused client is told in its protocol's words and cut off
// after a bounded write. A panic in one session is contained to its
// connection (Listener.run): the client hears the protocol's goodbye,
// the stack is one log line, and every other session goes on.
package listener

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"kanmon/internal/logging"
)

// Rules named in connect.refused log lines and rejection metrics.
const (
	RuleConnections          = "limit.connections"
	RuleConnectionsPerClient = "limit.connections_per_ip"
)

// ErrClosed is returned by Serve after Shutdown.
var ErrClosed = errors.New("listener: closed")

// refuseTimeout bounds the write of a refusal to a client over a limit.
const refuseTimeout = 5 * time.Second

// stressHysteresis is how many percentage points below StressPercent the
// pool must drop before stress mode ends.
const stressHysteresis = 10

// Gauge is the one method of a Prometheus gauge the listener uses.
type Gauge interface{ Set(float64) }

// Counter is the one method of a Prometheus counter the listener uses.
type Counter interface{ Inc() }

// Config configures one Listener.
type Config struct {
	// Name names the listener in logs: "mx", "submission", "pop3", ...
	Name string
	// MaxConns bounds the connections of this listener (at least 1).
	MaxConns int
	// MaxConnsPerClient bounds the connections of one client (an IPv4
	// address or an IPv6 /64; at least 1).
	MaxConnsPerClient int
	// StressPercent is how full the pool is (1-100) when stress mode
	// starts; 0 means never.
	StressPercent int
	// StressGauge, when set, is 1 while stressed and 0 otherwise.
	StressGauge Gauge
	// Logger receives connect.refused, listener.stress, accept and
	// panic lines.
	Logger *slog.Logger
	// Panics, when set, counts sessions ended by a panic
	// (kanmon_panics_total{where="smtp"}, ...).
	Panics Counter
	// Screen, when set, is asked about each new connection before it
	// takes a slot (the MX connection rate): a rule name refuses it,
	// through Handler.Refuse, like a pool limit.
	Screen func(ip netip.Addr) (rule string)
}

// Reply is what a Handler told a refused client, for the log line.
type Reply struct {
	Code     int    // SMTP reply code; 0 for protocols without one
	Enhanced string // enhanced status code, "" if none
	Line     string // the line sent, without CRLF
}

// Handler is a protocol plugged into a Listener.
type Handler interface {
	// Refuse tells a client over a limit, in the protocol's own words and
	// within the write deadline already set, that it must try later.
	// The listener closes the connection afterwards.
	Refuse(nc net.Conn, id, rule string) Reply
	// Open starts a session for an admitted connection. It returns nil
	// when the protocol refuses the client itself (it has then closed
	// nc); the slot is released.
	Open(nc net.Conn, c Conn) Session
}

// Session is one admitted connection's dialogue.
type Session interface {
	// Serve runs the dialogue until it ends; it closes the connection.
	Serve()
	// Shutdown asks the session to end: an idle one at once, with the
	// protocol's "shutting down" reply; one in the middle of a transfer
	// (SMTP DATA) or logged in (POP3) when it is done.
	Shutdown()
	// Goodbye is called, on Serve's goroutine, after Serve panicked: it
	// tells the client in the protocol's words (SMTP 421 4.3.0, POP3
	// -ERR [SYS/TEMP]) that the server failed and the connection ends,
	// within the write deadline already set. Serve must therefore leave
	// the connection open when it panics (close it on return, not in a
	// deferred call); the listener closes it after Goodbye.
	Goodbye()
}

// StressAware is implemented by sessions that shorten a wait already in
// progress when their listener becomes stressed.
type StressAware interface {
	Stress()
}

// Conn describes an admitted connection to its protocol.
type Conn struct {
	// ID is the connection id ("c…"), on every log line and in refusals.
	ID string
	// Client is the peer's address (unmapped), invalid for a Unix socket.
	Client netip.Addr
	// Log carries conn and listener.
	Log *slog.Logger
	l   *Listener
}

// Stressed reports whether the connection's listener is in stress mode.
func (c Conn) Stressed() bool { return c.l != nil && c.l.stressed.Load() }

type entry struct {
	nc   net.Conn
	sess Session
}

// Listener serves one net.Listener with its own pool.
type Listener struct {
	cfg Config
	h   Handler
	log *slog.Logger

	closing  atomic.Bool
	stressed atomic.Bool

	mu        sync.Mutex
	ln        net.Listener
	total     int
	perClient map[netip.Prefix]int
	conns     map[*entry]struct{}
	wg        sync.WaitGroup
}

// New returns a Listener; limits below 1 are raised to 1, so a zero
// never means "no bound".
func New(cfg Config, h Handler) *Listener {
	cfg.MaxConns = max(cfg.MaxConns, 1)
	cfg.MaxConnsPerClient = max(cfg.MaxConnsPerClient, 1)
	cfg.StressPercent = min(max(cfg.StressPercent, 0), 100)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.StressGauge != nil {
		cfg.StressGauge.Set(0)
	}
	return &Listener{cfg: cfg, h: h, log: log, perClient: map[netip.Prefix]int{}, conns: map[*entry]struct{}{}}
}

// Name is the listener's name.
func (l *Listener) Name() string { return l.cfg.Name }

// Stressed reports whether the pool is in stress mode.
func (l *Listener) Stressed() bool { return l.stressed.Load() }

// Active is the number of connections holding a slot.
func (l *Listener) Active() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// Serve accepts connections on ln until Shutdown, then returns ErrClosed.
// A Listener serves one net.Listener: its pool is that listener's.
func (l *Listener) Serve(ln net.Listener) error {
	l.mu.Lock()
	if l.closing.Load() || l.ln != nil {
		l.mu.Unlock()
		ln.Close()
		if l.closing.Load() {
			return ErrClosed
		}
		return fmt.Errorf("listener: serve %s: already serving", l.cfg.Name)
	}
	l.ln = ln
	l.mu.Unlock()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if l.closing.Load() {
				return ErrClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("listener: accept %s: %w", l.cfg.Name, err)
			}
			// Out of file descriptors, a connection aborted before
			// accept, and the like: wait, then go on serving. Anything
			// else is treated the same, since a listener that stops
			// silently is worse than one that retries once a second.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("accept", "listener", l.cfg.Name, "err", err.Error(), "temporary", temporary(err),
				"retry_ms", backoff.Milliseconds())
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		l.mu.Lock()
		if l.closing.Load() {
			l.mu.Unlock()
			nc.Close()
			return ErrClosed
		}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.handle(nc)
	}
}

// temporary reports whether an accept error is one that passes.
func temporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// ServeConn serves one connection accepted elsewhere (tests, fuzzing)
// as if Serve had accepted it, and returns when it is done.
func (l *Listener) ServeConn(nc net.Conn) {
	l.mu.Lock()
	if l.closing.Load() {
		l.mu.Unlock()
		nc.Close()
		return
	}
	l.wg.Add(1)
	l.mu.Unlock()
	l.handle(nc)
}

func (l *Listener) handle(nc net.Conn) {
	defer l.wg.Done()
	id := logging.NewID('c')
	ip := RemoteIP(nc.RemoteAddr())
	log := l.log.With("conn", id, "listener", l.cfg.Name)
	if l.cfg.Screen != nil {
		if rule := l.cfg.Screen(ip); rule != "" {
			l.refuse(nc, id, rule, log)
			return
		}
	}
	if rule := l.admit(ip); rule != "" {
		l.refuse(nc, id, rule, log)
		return
	}
	defer l.release(ip)
	c := Conn{ID: id, Client: ip, Log: log, l: l}
	sess := l.open(nc, c)
	if sess == nil {
		return
	}
	e := &entry{nc: nc, sess: sess}
	l.mu.Lock()
	l.conns[e] = struct{}{}
	// A connection accepted just as Shutdown ran was not in the set it
	// walked: tell it now, so it hears the protocol's shutdown reply.
	late := l.closing.Load()
	l.mu.Unlock()
	if late {
		sess.Shutdown()
	}
	defer func() {
		l.mu.Lock()
		delete(l.conns, e)
		l.mu.Unlock()
	}()
	l.run(sess, nc, c.Log)
}

// open starts the protocol's session. A panic there (identifying a
// local client, say) is contained like one in Serve, but there is no
// session yet to say goodbye: the connection is closed.
func (l *Listener) open(nc net.Conn, c Conn) (sess Session) {
	defer func() {
		if v := recover(); v != nil {
			c.Log.Error("panic", "in", "open", "err", fmt.Sprint(v), "stack", string(debug.Stack()))
			if l.cfg.Panics != nil {
				l.cfg.Panics.Inc()
			}
			nc.Close()
			sess = nil
		}
	}()
	return l.h.Open(nc, c)
}

// goodbyeTimeout bounds the goodbye written after a session panicked.
const goodbyeTimeout = 5 * time.Second

// run is the one place a session's dialogue is called from, and so the
// place where a panic in one session is contained: without it, one nil
// dereference in one dialogue would end every listener and all delivery.
// The panicking session's client is told (Session.Goodbye) and cut off;
// every other session goes on.
func (l *Listener) run(sess Session, nc net.Conn, log *slog.Logger) {
	defer func() {
		if v := recover(); v != nil {
			l.panicked(sess, nc, log, v, debug.Stack())
		}
	}()
	sess.Serve()
}

// panicked logs a session's panic as one line (the stack in one
// attribute, so the line stays whole in JSON and text logs), counts it,
// says the protocol's goodbye and closes the connection.
func (l *Listener) panicked(sess Session, nc net.Conn, log *slog.Logger, v any, stack []byte) {
	log.Error("panic", "err", fmt.Sprint(v), "stack", string(stack))
	if l.cfg.Panics != nil {
		l.cfg.Panics.Inc()
	}
	defer nc.Close()
	defer func() {
		// A goodbye that panics in turn is logged, not repeated.
		if v := recover(); v != nil {
			log.Error("panic", "in", "goodbye", "err", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
	}()
	nc.SetWriteDeadline(time.Now().Add(goodbyeTimeout))
	sess.Goodbye()
}

func (l *Listener) refuse(nc net.Conn, id, rule string, log *slog.Logger) {
	nc.SetDeadline(time.Now().Add(refuseTimeout))
	r := l.h.Refuse(nc, id, rule)
	attrs := []any{"remote", nc.RemoteAddr().String(), "rule", rule, "line", r.Line}
	if r.Code != 0 {
		attrs = append(attrs, "code", r.Code, "enhanced", r.Enhanced)
	}
	// Logged before the close, so the line exists once the client sees
	// the connection end.
	log.Warn("connect.refused", attrs...)
	nc.Close()
}

// ClientKey is what the per-client limit counts: an IPv4 address, or the
// /64 of an IPv6 address. The zero Prefix for an invalid address.
func ClientKey(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	if !ip.IsValid() {
		return netip.Prefix{}
	}
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// RemoteIP is the unmapped IP address of a peer, invalid for a Unix socket.
func RemoteIP(a net.Addr) netip.Addr {
	switch v := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	case *net.UnixAddr, nil:
		return netip.Addr{}
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// admit takes a slot; it returns the rule that refuses the connection, or "".
func (l *Listener) admit(ip netip.Addr) string {
	key := ClientKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.cfg.MaxConns {
		return RuleConnections
	}
	// The local socket has no address: its users are not one client.
	if key.IsValid() && l.perClient[key] >= l.cfg.MaxConnsPerClient {
		return RuleConnectionsPerClient
	}
	l.total++
	if key.IsValid() {
		l.perClient[key]++
	}
	l.checkStressLocked()
	return ""
}

func (l *Listener) release(ip netip.Addr) {
	key := ClientKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if key.IsValid() {
		if l.perClient[key]--; l.perClient[key] <= 0 {
			delete(l.perClient, key)
		}
	}
	l.checkStressLocked()
}

// checkStressLocked enters or leaves stress mode after the pool changed.
func (l *Listener) checkStressLocked() {
	pct := l.cfg.StressPercent
	if pct == 0 {
		return
	}
	was := l.stressed.Load()
	var now bool
	if was {
		now = l.total*100 >= (pct-stressHysteresis)*l.cfg.MaxConns
	} else {
		now = l.total*100 >= pct*l.cfg.MaxConns
	}
	if now == was {
		return
	}
	l.stressed.Store(now)
	if l.cfg.StressGauge != nil {
		l.cfg.StressGauge.Set(map[bool]float64{false: 0, true: 1}[now])
	}
	l.log.Warn("listener.stress", "listener", l.cfg.Name, "on", now, "conns", l.total,
		"max_connections", l.cfg.MaxConns, "threshold_percent", pct)
	if !now {
		return
	}
	// The flag is set before sessions are told, so a session that starts
	// a read after this sees it, and one already waiting hears it here.
	for e := range l.conns {
		if s, ok := e.sess.(StressAware); ok {
			s.Stress()
		}
	}
}

// Shutdown stops accepting and asks every session to end (Session.Shutdown);
// it waits for them until ctx ends, then closes the connections left and
// returns ctx.Err().
func (l *Listener) Shutdown(ctx context.Context) error {
	l.mu.Lock()
	l.closing.Store(true)
	if l.ln != nil {
		l.ln.Close()
	}
	for e := range l.conns {
		e.sess.Shutdown()
	}
	l.mu.Unlock()
	done := make(chan struct{})
	go func() {
		l.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	l.mu.Lock()
	for e := range l.conns {
		e.nc.Close()
	}
	l.mu.Unlock()
	<-done
	return fmt.Errorf("listener: shutdown %s: %w", l.cfg.Name, ctx.Err())
}
