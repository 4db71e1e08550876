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
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"kanmon/internal/auth"
	"kanmon/internal/config"
	"kanmon/internal/directory"
	"kanmon/internal/logging"
	"kanmon/internal/metrics"
	"kanmon/internal/policy"
	"kanmon/internal/queue"
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

// PopBefore answers whether an address recently logged in over POP3.
type PopBefore interface {
	Allowed(ip netip.Addr) bool
}

// Deps are the services a Server uses.
type Deps struct {
	Config    *config.Config
	Dir       *directory.DB
	Auth      *auth.Authenticator
	Spool     *queue.Spool
	Policy    *policy.Engine
	TLS       *tls.Config // nil: no STARTTLS, no AUTH
	Logger    *slog.Logger
	Metrics   *metrics.Metrics
	PopBefore PopBefore // nil when POP-before-SMTP is off
	// PopBeforeOnMX lets POP-before-SMTP clients relay through MX too.
	PopBeforeOnMX bool
	// LocalIdentity identifies clients of RoleLocal (nil: RoleLocal
	// refuses everyone).
	LocalIdentity LocalIdentity
	// Queued is told about every committed message (the scheduler).
	Queued func(id string)
}

// Server runs SMTP listeners sharing connection limits.
type Server struct {
	d   Deps
	cfg *config.Config

	mu        sync.Mutex
	perIP     map[netip.Addr]int
	total     int
	listeners []net.Listener
	conns     map[*conn]struct{}
	closing   atomic.Bool
	wg        sync.WaitGroup
}

// New returns a Server.
func New(d Deps) *Server {
	return &Server{d: d, cfg: d.Config, perIP: map[netip.Addr]int{}, conns: map[*conn]struct{}{}}
}

// Serve accepts connections on ln for the given role until Shutdown. For
// RoleSMTPS the connection is wrapped in TLS here (implicit TLS, RFC 8314).
func (s *Server) Serve(ln net.Listener, role Role) error {
	s.mu.Lock()
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscallEMFILE) {
				backoff = min(max(backoff*2, 5*time.Millisecond), time.Second)
				s.d.Logger.Warn("accept", "listener", string(role), "err", err.Error())
				time.Sleep(backoff)
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			backoff = min(max(backoff*2, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(nc, role)
		}()
	}
}

func remoteIP(nc net.Conn) netip.Addr {
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}

// admit applies the connection limits; it returns a rule name when the
// connection must be refused.
func (s *Server) admit(ip netip.Addr) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.total >= s.cfg.Limits.MaxConnections {
		return "limit.connections"
	}
	// The local socket has no address: its users are not one client.
	if ip.IsValid() && s.perIP[ip] >= s.cfg.Limits.MaxConnectionsPerIP {
		return "limit.connections_per_ip"
	}
	s.total++
	s.perIP[ip]++
	return ""
}

func (s *Server) release(ip netip.Addr) {
	s.mu.Lock()
	s.total--
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
	s.mu.Unlock()
}

func (s *Server) handle(nc net.Conn, role Role) {
	ip := remoteIP(nc)
	id := logging.NewID('c')
	log := s.d.Logger.With("conn", id, "listener", string(role))
	if rule := s.admit(ip); rule != "" {
		log.Warn("connect.refused", "remote", nc.RemoteAddr().String(), "rule", rule, "code", 421, "enhanced", "4.7.0")
		s.d.Metrics.Rejected.WithLabelValues(rule).Inc()
		nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		nc.Write([]byte("421 4.7.0 Too many connections, try again later [" + id + "]\r\n"))
		nc.Close()
		return
	}
	defer s.release(ip)
	c := newConn(s, nc, role, id, ip, log)
	if role == RoleLocal && !c.identifyLocal() {
		return
	}
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		nc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.d.Metrics.Connections.WithLabelValues(string(role)).Inc()
	s.d.Metrics.Active.WithLabelValues(string(role)).Inc()
	defer func() {
		s.d.Metrics.Active.WithLabelValues(string(role)).Dec()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	c.serve()
}

// Shutdown stops accepting, tells idle sessions to close with 421 and waits
// for sessions in the middle of a transaction to finish (a message being
// received is either committed and acknowledged, or not acknowledged).
// When ctx ends, remaining connections are closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	for _, ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.shutdown()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.nc.Close()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}
