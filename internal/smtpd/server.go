// Package smtpd is kanmon's SMTP server: the MX (25), submission (587) and
// SMTPS (465) listeners, the SMTP dialogue, and the hand-off of accepted
// messages to the queue.
//
// # Why our own protocol engine
//
// The design names github.com/emersion/go-smtp, and kanmon still uses it
// as the SMTP client for delivery. The server side is our own because
// go-smtp's server cannot give hooks the laws require: a per-connection,
// redacted transcript of the plaintext dialogue after STARTTLS (it only
// offers a server-wide Debug writer, which logs credentials); our own
// policy rejections counting toward the error limit; closing on HTTP
// verbs; refusing bare CR/LF inside DATA (it passes them through, and its
// end-of-data detection is the smuggling surface); the queue id in the
// final reply; and batching replies into one write per pipelined group,
// which the accept path's system-call budget needs.
//
// SECURITY: everything read from the network is bounded (line length,
// message size, recipients, commands, errors, time) before it is parsed.
// Relay is decided by the policy package from facts established here
// (authentication, client address), never from what the client says.
// AUTH is accepted only over TLS, and its payloads never reach the logs.
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"kanmon/internal/auth"
	"kanmon/internal/config"
	"kanmon/internal/dkim"
	"kanmon/internal/inbound"
	"kanmon/internal/listener"
	"kanmon/internal/metrics"
	"kanmon/internal/msgauth"
	"kanmon/internal/policy"
	"kanmon/internal/queue"
	"kanmon/internal/ratelimit"
)

// Role is a listener's job.
type Role string

// Listener roles.
const (
	RoleMX         Role = policy.ListenerMX
	RoleSubmission Role = policy.ListenerSubmission
	RoleSMTPS      Role = policy.ListenerSMTPS
	// RoleLocal is the Unix socket used by `kanmon sendmail`: no TLS, no
	// AUTH; the session is authenticated as the address configured for
	// the peer's Unix user, learnt from the kernel (SO_PEERCRED).
	RoleLocal Role = policy.ListenerLocal
)

// LocalIdentity maps a Unix user id to its user name and the address it
// may send as through the local socket; address "" refuses the user.
type LocalIdentity func(uid uint32) (user, address string)

// Scheduler takes a message once it is committed to the queue. It gets
// the envelope in memory, so it need not read the queue file back to
// schedule it (internal/scheduler).
type Scheduler interface {
	Enqueue(env *queue.Envelope)
}

// Deps are the services a Server uses.
type Deps struct {
	Config *config.Config
	Auth   *auth.Authenticator
	Spool  *queue.Spool
	// Policy decides MAIL and RCPT, and establishes the relay facts of
	// a client (trusted networks, POP-before-SMTP: Engine.Clients).
	Policy  *policy.Engine
	TLS     *tls.Config // nil: no STARTTLS, no AUTH
	Logger  *slog.Logger
	Metrics *metrics.Metrics
	// LocalIdentity identifies clients of RoleLocal (nil: RoleLocal
	// refuses everyone).
	LocalIdentity LocalIdentity
	// Scheduler is handed every committed message (nil: none is).
	Scheduler Scheduler
	// Inbound screens clients and senders on the MX listener (nil: no
	// inbound checks, no greet delay).
	Inbound *inbound.Screen
	// DKIM holds the signing keys (nil: nothing is signed).
	DKIM *dkim.Store
	// Limits applies [ratelimit] (nil: no rate limits, no suspension
	// check, no MX connection rate; limits.go).
	Limits *ratelimit.Limiter
	// MsgAuth is the DATA stage of the inbound checks: header From:,
	// DKIM verification, DMARC, Authentication-Results (nil: none).
	MsgAuth *msgauth.Checker
}

// Server runs the SMTP listeners. Each listener has its own connection
// pool (internal/listener), so a flood on one cannot lock out another.
type Server struct {
	d   Deps
	cfg *config.Config

	mu        sync.Mutex
	closing   bool
	listeners []*listener.Listener
}

// New returns a Server.
func New(d Deps) *Server {
	return &Server{d: d, cfg: d.Config}
}

// Serve accepts connections on ln for the given role until Shutdown. For
// RoleSMTPS the connection is wrapped in TLS here (implicit TLS, RFC 8314).
// Each call has its own pool of limits.max_connections (or the role's
// override) connections.
func (s *Server) Serve(ln net.Listener, role Role) error {
	key := string(role)
	if role == RoleLocal {
		key = "sendmail" // as the config names it
	}
	l := listener.New(listener.Config{
		Name: string(role), MaxConns: s.cfg.MaxConnectionsFor(key),
		MaxConnsPerClient: s.cfg.Limits.MaxConnectionsPerIP, StressPercent: s.cfg.Limits.StressThreshold,
		StressGauge: s.d.Metrics.Stress.WithLabelValues(string(role)), Logger: s.d.Logger,
		Panics: s.d.Metrics.Panics.WithLabelValues("smtp"), Screen: s.connectionRate(role),
	}, handler{s, role})
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners = append(s.listeners, l)
	s.mu.Unlock()
	if err := l.Serve(ln); err != nil && !errors.Is(err, listener.ErrClosed) {
		return fmt.Errorf("smtpd: serve %s: %w", role, err)
	}
	return nil
}

// handler plugs the SMTP dialogue of one role into a listener.
type handler struct {
	s    *Server
	role Role
}

// Refuse answers a client over a connection limit before the greeting.
func (h handler) Refuse(nc net.Conn, id, rule string) listener.Reply {
	h.s.d.Metrics.Rejected.WithLabelValues(rule).Inc()
	text := "Too many connections, try again later [" + id + "]"
	if rule == ruleConnectionRate {
		text = "too many new connections from your address, try again in a minute [" + id + "]"
	}
	nc.Write([]byte("421 4.7.0 " + text + "\r\n"))
	return listener.Reply{Code: 421, Enhanced: "4.7.0", Line: "421 4.7.0 " + text}
}

// Open starts an SMTP session; a local-socket client is identified first.
func (h handler) Open(nc net.Conn, lc listener.Conn) listener.Session {
	c := newConn(h.s, nc, h.role, lc.ID, lc.Client, lc.Log)
	c.raw, c.lc = nc, lc
	if h.role == RoleLocal && !c.identifyLocal() {
		return nil
	}
	return session{c}
}

// session adapts a conn to listener.Session.
type session struct{ c *conn }

// Serve runs the SMTP dialogue.
func (s session) Serve() {
	m := s.c.s.d.Metrics
	m.Connections.WithLabelValues(string(s.c.role)).Inc()
	m.Active.WithLabelValues(string(s.c.role)).Inc()
	defer m.Active.WithLabelValues(string(s.c.role)).Dec()
	s.c.serve()
}

// Shutdown: an idle session gets 421 4.3.2; one receiving DATA finishes.
func (s session) Shutdown() { s.c.shutdown() }

// Goodbye: after a panic the client gets 421 4.3.0 and the connection
// ends; its transaction was not acknowledged, so the sender retries.
func (s session) Goodbye() { s.c.goodbye() }

// Stress cuts the wait of an idle session to the stress timeout.
func (s session) Stress() {
	if !s.c.inTx.Load() {
		s.c.raw.SetReadDeadline(time.Now().Add(s.c.s.cfg.Limits.StressCommandTimeout.Duration))
	}
}

// stressDeadline shortens a wait just begun when the listener became
// stressed while it was being set up. It is checked after the deadline
// is set: either it sees the flag, or the listener's Stress call comes
// later and cuts the wait itself.
func (c *conn) stressDeadline(timeout time.Duration) {
	if st := c.s.cfg.Limits.StressCommandTimeout.Duration; st < timeout && c.lc.Stressed() {
		c.raw.SetReadDeadline(time.Now().Add(st))
	}
}

// commandTimeout is the wait for the next command: shorter when the
// listener is stressed, so idle connections give their slots back.
func (c *conn) commandTimeout() time.Duration {
	l := c.s.cfg.Limits
	if c.lc.Stressed() {
		return min(l.CommandTimeout.Duration, l.StressCommandTimeout.Duration)
	}
	return l.CommandTimeout.Duration
}

// maxErrors is the error allowance, lower when the listener is stressed.
func (c *conn) maxErrors() int {
	l := c.s.cfg.Limits
	if c.lc.Stressed() {
		return min(l.MaxErrors, l.StressMaxErrors)
	}
	return l.MaxErrors
}

// Shutdown stops accepting, tells idle sessions to close with 421 and waits
// for sessions in the middle of a transaction to finish (a message being
// received is either committed and acknowledged, or not acknowledged).
// When ctx ends, remaining connections are closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
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
	return errors.Join(errs...)
}
