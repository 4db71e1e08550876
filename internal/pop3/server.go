package pop3

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"kanmon/internal/auth"
	"kanmon/internal/logging"
	"kanmon/internal/popbefore"
)

// Config configures a Server. Zero limits take the defaults below; a
// limit can be raised but not switched off.
type Config struct {
	// Hostname is named in the greeting (no software name or version).
	Hostname string
	// TLS enables STLS on a plain listener. Nil: no STLS, and with
	// AllowPlaintextAuth false nobody can log in on a plain listener.
	TLS *tls.Config
	// AllowPlaintextAuth allows USER/PASS and AUTH on a connection that is
	// not encrypted. Off by default: passwords are never sent in clear.
	AllowPlaintextAuth bool
	// IdleTimeout ends a session that sends nothing for this long
	// (default 10 minutes, RFC 1939's minimum autologout timer).
	IdleTimeout time.Duration
	// MaxLineLength bounds a command line including CRLF (default 1024).
	MaxLineLength int
	// MaxCommands bounds the commands of a session beyond five per message
	// in the mailbox, so fetching and deleting a large mailbox in one
	// session always fits (default 1000).
	MaxCommands int
	// MaxErrors closes a session after this many refused commands
	// (unknown, malformed, out of state, failed logins; default 10).
	MaxErrors int
	// MaxConnsPerIP bounds concurrent connections from one client address
	// (an IPv6 client by its /64; default 10).
	MaxConnsPerIP int
	// MaxConns bounds concurrent connections in total (default 1000).
	MaxConns int
	// MailRoot is the directory under which each account's Maildir lies
	// (directory.MailboxPath).
	MailRoot string
	// Auth verifies passwords; its throttle is shared with SMTP AUTH.
	Auth *auth.Authenticator
	// Logger receives one line per command, reply and auth outcome.
	Logger *slog.Logger
	// PopBefore, when not nil, is told the address of every successful
	// login (POP-before-SMTP).
	PopBefore *popbefore.Registry
	// Listener names the listener in logs: "pop3" or "pop3s".
	Listener string
}

// Defaults for zero Config fields.
const (
	DefaultIdleTimeout   = 10 * time.Minute
	DefaultMaxLineLength = 1024
	DefaultMaxCommands   = 1000
	DefaultMaxErrors     = 10
	DefaultMaxConnsPerIP = 10
	DefaultMaxConns      = 1000
)

// commandsPerMessage is the allowance added to MaxCommands for each
// message: LIST n, UIDL n, TOP, RETR, DELE.
const commandsPerMessage = 5

// handshakeTimeout bounds a TLS handshake (implicit or after STLS).
const handshakeTimeout = 30 * time.Second

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("pop3: server closed")

// Server is a POP3 server. One Server serves one listener role; several
// Servers in a process share the one-session-per-mailbox lock.
type Server struct {
	cfg Config
	log *slog.Logger

	baseCtx context.Context
	cancel  context.CancelFunc
	closing atomic.Bool

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	perIP     map[netip.Prefix]int
	total     int
	wg        sync.WaitGroup
}

// NewServer returns a Server for cfg, with defaults filled in.
func NewServer(cfg Config) *Server {
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
		if cfg.Hostname == "" {
			cfg.Hostname = "localhost"
		}
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxLineLength <= 0 {
		cfg.MaxLineLength = DefaultMaxLineLength
	}
	if cfg.MaxLineLength < 64 {
		cfg.MaxLineLength = 64
	}
	if cfg.MaxCommands <= 0 {
		cfg.MaxCommands = DefaultMaxCommands
	}
	if cfg.MaxErrors <= 0 {
		cfg.MaxErrors = DefaultMaxErrors
	}
	if cfg.MaxConnsPerIP <= 0 {
		cfg.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.Listener == "" {
		cfg.Listener = "pop3"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg: cfg, log: log, baseCtx: ctx, cancel: cancel,
		listeners: map[net.Listener]struct{}{},
		sessions:  map[*session]struct{}{},
		perIP:     map[netip.Prefix]int{},
	}
}

// Serve accepts connections on ln until Shutdown. For POP3S pass a TLS
// listener (tls.NewListener): a *tls.Conn is greeted after the handshake
// and counts as encrypted; any other connection may use STLS.
func (s *Server) Serve(ln net.Listener) error {
	if s.cfg.Auth == nil || s.cfg.MailRoot == "" {
		ln.Close()
		return errors.New("pop3: Config.Auth and Config.MailRoot are required")
	}
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) || isTemporary(err) {
				// Out of file descriptors and the like: wait, then retry.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			c.Close()
			return ErrServerClosed
		}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handle(c)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Shutdown stops accepting, ends sessions that have not logged in, and
// waits for logged-in sessions to finish (their QUIT applies their
// deletions as usual). When ctx ends first, the remaining connections are
// cut: a session cut off deletes nothing. It returns ctx.Err() then.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	for sess := range s.sessions {
		sess.interrupt()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
	}
	s.cancel()
	s.mu.Lock()
	for sess := range s.sessions {
		sess.raw.Close()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

func clientPrefix(ip netip.Addr) netip.Prefix {
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p
	}
	p, _ := ip.Prefix(32)
	return p
}

// admit counts a new connection against the limits; the rule is set when
// it is refused.
func (s *Server) admit(ip netip.Addr) (rule string, ok bool) {
	key := clientPrefix(ip)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.total >= s.cfg.MaxConns {
		return "limit.connections", false
	}
	if s.perIP[key] >= s.cfg.MaxConnsPerIP {
		return "limit.connections_per_ip", false
	}
	s.total++
	s.perIP[key]++
	return "", true
}

func (s *Server) release(ip netip.Addr) {
	key := clientPrefix(ip)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	if s.perIP[key]--; s.perIP[key] <= 0 {
		delete(s.perIP, key)
	}
}

func remoteIP(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

func (s *Server) handle(c net.Conn) {
	defer s.wg.Done()
	id := logging.NewID('c')
	ip := remoteIP(c.RemoteAddr())
	log := s.log.With("conn", id, "listener", s.cfg.Listener)
	if rule, ok := s.admit(ip); !ok {
		log.Info("connect.refused", "remote", c.RemoteAddr().String(), "rule", rule)
		// Said in clear on POP3, inside TLS on POP3S (the write handshakes).
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("-ERR [SYS/TEMP] Too many connections, try again later (" + id + ")\r\n"))
		c.Close()
		return
	}
	defer s.release(ip)
	sess := newSession(s, c, id, ip, log)
	s.mu.Lock()
	s.sessions[sess] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.sessions, sess)
		s.mu.Unlock()
	}()
	sess.serve()
}

// Mailbox locks are process-wide, so a POP3 and a POP3S Server (or two
// Servers of any kind) never open one mailbox twice.
var mailboxLocks = struct {
	sync.Mutex
	held map[string]string // mailbox path -> connection id
}{held: map[string]string{}}

func lockKey(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return filepath.Clean(path)
}

func lockMailbox(path, owner string) bool {
	k := lockKey(path)
	mailboxLocks.Lock()
	defer mailboxLocks.Unlock()
	if _, busy := mailboxLocks.held[k]; busy {
		return false
	}
	mailboxLocks.held[k] = owner
	return true
}

func unlockMailbox(path, owner string) {
	k := lockKey(path)
	mailboxLocks.Lock()
	defer mailboxLocks.Unlock()
	if mailboxLocks.held[k] == owner {
		delete(mailboxLocks.held, k)
	}
}
