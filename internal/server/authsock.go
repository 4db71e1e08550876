package server

import (
	"errors"
	"fmt"
	"net"
	"os/user"
	"strconv"
	"strings"

	"kanmon/internal/authsock"
)

// authSocket opens the socket `kanmon checkpassword` asks (after the
// privilege drop, so the socket belongs to run_as) and resolves the Unix
// users allowed to ask. A listed user that does not exist is logged and
// left out; none at all is an error.
func (s *Server) authSocket() (bound, error) {
	cp := s.cfg.Checkpassword
	allowed := map[uint32]bool{}
	for _, name := range cp.Users {
		u, err := user.Lookup(name)
		if err != nil {
			s.log.Warn("checkpassword", "op", "user_unknown", "user", name, "err", err.Error())
			continue
		}
		uid, err := strconv.ParseUint(u.Uid, 10, 32)
		if err != nil {
			continue
		}
		allowed[uint32(uid)] = true
	}
	if len(allowed) == 0 {
		return bound{}, fmt.Errorf("listen checkpassword: none of [checkpassword] users (%s) exists on this system",
			strings.Join(cp.Users, ", "))
	}
	ln, err := listenLocal("checkpassword", s.cfg.AuthSocketPath())
	if err != nil {
		return bound{}, err
	}
	s.authsrv = &authsock.Server{Auth: s.auth, Log: s.log, Allowed: func(uid uint32) bool { return allowed[uid] }}
	return bound{"checkpassword", ln, func(l net.Listener) error {
		if err := s.authsrv.Serve(l); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	}}, nil
}
