package authsock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"kanmon/internal/auth"
	"kanmon/internal/logging"
)

// Authenticator checks a password (auth.Authenticator).
type Authenticator interface {
	Authenticate(ctx context.Context, username, password string, remote netip.Addr) (string, error)
}

// Server answers password checks on a Unix socket.
type Server struct {
	Auth Authenticator
	// Allowed reports whether the Unix user with this uid may ask.
	Allowed func(uid uint32) bool
	Log     *slog.Logger
	// MaxConns bounds the checks in progress; more get TEMP at once.
	MaxConns int

	mu     sync.Mutex
	ln     net.Listener
	wg     sync.WaitGroup
	cancel context.CancelFunc
}

const (
	readTimeout = 5 * time.Second
	// checkTimeout covers a throttled answer (up to 8 s) and a wait for
	// a hashing slot.
	checkTimeout = 30 * time.Second
)

// Serve accepts on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	ctx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	s.ln, s.cancel = ln, cancel
	s.mu.Unlock()
	max := s.MaxConns
	if max <= 0 {
		max = 64
	}
	slots := make(chan struct{}, max)
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.Log.Error("accept", "listener", "checkpassword", "err", err.Error(), "retry_ms", 100)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		select {
		case slots <- struct{}{}:
		default:
			c.SetDeadline(time.Now().Add(time.Second))
			c.Write([]byte("TEMP\ttoo many checks at once\n"))
			c.Close()
			s.Log.Warn("connect.refused", "listener", "checkpassword", "rule", "checkpassword.max_conns", "max_connections", max)
			continue
		}
		s.wg.Add(1)
		go func() {
			defer func() { <-slots; s.wg.Done() }()
			s.handle(ctx, c)
		}()
	}
}

// Shutdown stops accepting and waits for the checks in progress.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	ln, cancel := s.ln, s.cancel
	s.mu.Unlock()
	if ln == nil {
		return nil
	}
	ln.Close()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		cancel()
		return fmt.Errorf("authsock: shutdown: %w", ctx.Err())
	}
}

// handle answers one request; every outcome is one log line.
func (s *Server) handle(ctx context.Context, c net.Conn) {
	defer c.Close()
	id := logging.NewID('c')
	log := s.Log.With("conn", id, "listener", "checkpassword")
	uid, err := peerUID(c)
	if err != nil || !s.Allowed(uid) {
		// Read the (bounded) request first: closing a Unix socket with
		// unread data resets it, and the client would see a reset
		// (try later) instead of this answer.
		c.SetReadDeadline(time.Now().Add(time.Second))
		readRequest(c)
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write([]byte("NO\n"))
		log.Warn("connect.refused", "rule", "checkpassword.peer", "uid", uid,
			"reason", "this Unix user is not in [checkpassword] users")
		return
	}
	c.SetReadDeadline(time.Now().Add(readTimeout))
	req, err := readRequest(c)
	if err != nil {
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write([]byte("TEMP\tbad request\n"))
		log.Warn("auth", "ok", false, "rule", "checkpassword.request", "uid", uid, "err", err.Error())
		return
	}
	remote, perr := netip.ParseAddr(req.Remote)
	if perr != nil {
		// No client address (a local login): all such attempts share
		// one throttle entry, and the account's own entry still counts.
		remote = netip.IPv6Unspecified()
	}
	cctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	account, err := s.Auth.Authenticate(cctx, req.User, req.Password, remote.Unmap())
	reply, attrs := "OK\t"+account+"\n", []any{"ok", true, "user", account}
	switch {
	case err == nil:
	case errors.Is(err, auth.ErrInvalid):
		reply, attrs = "NO\n", []any{"ok", false, "rule", "auth.invalid", "user", clean(truncate(req.User, 254))}
	case errors.Is(err, auth.ErrThrottled):
		reply, attrs = "TEMP\tthrottled\n", []any{"ok", false, "rule", "auth.throttled", "user", clean(truncate(req.User, 254))}
	default:
		reply, attrs = "TEMP\tinternal error\n", []any{"ok", false, "rule", "auth.error", "err", err.Error()}
	}
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, werr := c.Write([]byte(reply)); werr != nil {
		attrs = append(attrs, "write_err", werr.Error())
	}
	log.Info("auth", append(attrs, "service", clean(truncate(req.Service, 32)), "remote", remote.String(), "uid", uid)...)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// peerUID returns the uid of the process at the other end, as the kernel
// recorded it at connect (SO_PEERCRED): the client cannot choose it.
func peerUID(nc net.Conn) (uint32, error) {
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		return 0, errors.New("authsock: not a unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("authsock: peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, fmt.Errorf("authsock: peer credentials: %w", err)
	}
	if cerr != nil {
		return 0, fmt.Errorf("authsock: peer credentials: %w", cerr)
	}
	return cred.Uid, nil
}
