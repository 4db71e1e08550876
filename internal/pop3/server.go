package pop3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"kanmon/internal/auth"
	"kanmon/internal/listener"
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
	// MaxConnsPerIP bounds concurrent connections from one client (an
	// IPv4 address or an IPv6 /64) on one listener (default 10).
	MaxConnsPerIP int
	// MaxConns bounds concurrent connections of one listener (default 1000).
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
	// Panics, when set, counts sessions ended by a contained panic
	// (kanmon_panics_total{where="pop3"}).
	Panics listener.Counter
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
// Servers in a process share the one-session-per-mailbox lock. Each
// net.Listener it serves has its own connection pool (internal/listener).
type Server struct {
	cfg Config
	log *slog.Logger

	baseCtx context.Context
	cancel  context.CancelFunc
	closing atomic.Bool

	mu        sync.Mutex
	listeners []*listener.Listener
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
	return &Server{cfg: cfg, log: log, baseCtx: ctx, cancel: cancel}
}

// Serve accepts connections on ln until Shutdown. For POP3S pass a TLS
// listener (tls.NewListener): a *tls.Conn is greeted after the handshake
// and counts as encrypted; any other connection may use STLS.
func (s *Server) Serve(ln net.Listener) error {
	if s.cfg.Auth == nil || s.cfg.MailRoot == "" {
		ln.Close()
		return errors.New("pop3: Config.Auth and Config.MailRoot are required")
	}
	// POP3 has no stress mode: RFC 1939 wants at least ten minutes before
	// an autologout, and its pool is its own, so an SMTP flood cannot
	// reach it.
	l := listener.New(listener.Config{
		Name: s.cfg.Listener, MaxConns: s.cfg.MaxConns, MaxConnsPerClient: s.cfg.MaxConnsPerIP, Logger: s.log,
		Panics: s.cfg.Panics,
	}, handler{s})
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners = append(s.listeners, l)
	s.mu.Unlock()
	if err := l.Serve(ln); !errors.Is(err, listener.ErrClosed) {
		return fmt.Errorf("pop3: serve %s: %w", s.cfg.Listener, err)
	}
	return ErrServerClosed
}

// Shutdown stops accepting, ends sessions that have not logged in, and
// waits for logged-in sessions to finish (their QUIT applies their
// deletions as usual). When ctx ends first, the remaining connections are
// cut: a session cut off deletes nothing. It returns ctx.Err() then.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing.Store(true)
	ls := s.listeners
	s.mu.Unlock()
	errs := make([]error, len(ls))
	var wg sync.WaitGroup
	for i, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.Shutdown(ctx)
		}()
	}
	wg.Wait()
	s.cancel()
	if err := errors.Join(errs...); err != nil {
		return ctx.Err()
	}
	return nil
}

// handler plugs the POP3 dialogue into a listener.
type handler struct{ s *Server }

// Refuse answers a client over a connection limit: in clear on POP3,
// inside TLS on POP3S (the write handshakes).
func (h handler) Refuse(nc net.Conn, id, rule string) listener.Reply {
	line := "-ERR [SYS/TEMP] Too many connections, try again later (" + id + ")"
	nc.Write([]byte(line + "\r\n"))
	return listener.Reply{Line: line}
}

// Open starts a POP3 session.
func (h handler) Open(nc net.Conn, c listener.Conn) listener.Session {
	return popSession{newSession(h.s, nc, c.ID, c.Client, c.Log)}
}

// popSession adapts a session to listener.Session.
type popSession struct{ s *session }

// Serve runs the POP3 dialogue.
func (p popSession) Serve() { p.s.serve() }

// Shutdown ends a session not logged in at once (-ERR [SYS/TEMP]); a
// logged-in one goes on until QUIT or the drain deadline.
func (p popSession) Shutdown() { p.s.interrupt() }

// Goodbye: after a panic the client gets -ERR [SYS/TEMP] and the
// connection ends.
func (p popSession) Goodbye() { p.s.goodbye() }

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
