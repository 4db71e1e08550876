package server

import (
	"context"
	"fmt"
	"net"
	"os"
	"syscall"

	"kanmon/internal/config"
	"kanmon/internal/privdrop"
)

// tcpListenerNames are the TCP listeners in the order they are bound.
var tcpListenerNames = []string{"mx", "submission", "smtps", "pop3", "pop3s", "admin"}

// listenerAddr is the configured address of a TCP listener ("" = off).
func listenerAddr(cfg *config.Config, name string) string {
	l := cfg.Listeners
	return map[string]string{"mx": l.MX, "submission": l.Submission, "smtps": l.SMTPS,
		"pop3": l.POP3, "pop3s": l.POP3S, "admin": l.Admin}[name]
}

// bindTCP binds every configured TCP listener. It runs before privileges
// are dropped, so ports below 1024 need no capability. Every failure is
// reported, not just the first.
func bindTCP(cfg *config.Config) (map[string]net.Listener, []error) {
	out := map[string]net.Listener{}
	var errs []error
	// No TCP keepalive on accepted connections: every read of a session
	// has its own deadline (law 5), which already ends a session whose
	// client vanished, and the four socket options per connection cost
	// system calls on every message.
	lc := net.ListenConfig{KeepAlive: -1}
	for _, name := range tcpListenerNames {
		a := listenerAddr(cfg, name)
		if a == "" {
			continue
		}
		ln, err := lc.Listen(context.Background(), "tcp", a)
		if err != nil {
			errs = append(errs, fmt.Errorf("listen %s on %s: %w", name, a, err))
			continue
		}
		out[name] = ln
	}
	return out, errs
}

// closeTCP closes listeners bound but not served (a start that failed).
func closeTCP(ls map[string]net.Listener) {
	for _, ln := range ls {
		ln.Close()
	}
}

// dropPrivileges becomes run_as when started as root, after the ports
// are bound and the certificate is read, and before the data directory is
// touched, so everything kanmon creates there belongs to run_as.
func (s *Server) dropPrivileges(target *privdrop.User) error {
	if target == nil {
		if os.Geteuid() == 0 {
			s.log.Warn("privileges", "op", "kept", "user", privdrop.Root, "uid", 0,
				"reason", `run_as = "root": every thread serves as root; use an unprivileged user outside throwaway test machines`)
		}
		return nil
	}
	from := os.Geteuid()
	if err := privdrop.Drop(*target); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	s.log.Info("privileges", "op", "dropped", "user", target.Name, "uid", target.UID, "gid", target.GID,
		"groups", fmt.Sprint(target.Groups), "from_uid", from)
	return nil
}

// checkOwner refuses a data directory that exists and belongs to another
// user (one an older version created as root, say): everything below it
// would fail later, one file at a time.
func checkOwner(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil // absent: created below, as us
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || os.Geteuid() == 0 || int(st.Uid) == os.Geteuid() {
		return nil
	}
	return fmt.Errorf("server: data_dir %s belongs to uid %d, not to uid %d that kanmon serves as: "+
		"give it to that user (chown -R USER: %s) or set run_as to its owner", dir, st.Uid, os.Geteuid(), dir)
}
