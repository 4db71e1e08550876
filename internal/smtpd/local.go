package smtpd

import (
	"io"
	"strconv"
	"time"
)

// identifyLocal authenticates a RoleLocal session as the address mapped
// to the peer's Unix user. The uid comes from the kernel (SO_PEERCRED);
// nothing the client sends can change it. It reports false, after
// answering and closing, when the user may not send.
func (c *conn) identifyLocal() bool {
	refuse := func(rule, reason string, attrs ...any) bool {
		c.s.d.Metrics.Rejected.WithLabelValues(rule).Inc()
		line := "554 5.7.1 " + reason + " [" + c.id + "]"
		c.log.Info("decision", append([]any{"rule", rule, "code", 554, "enhanced", "5.7.1", "reason", reason, "line", line}, attrs...)...)
		c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c.nc, line+"\r\n")
		c.nc.Close()
		return false
	}
	uid, err := peerUID(c.nc)
	if err != nil {
		return refuse("local.peer_unknown", "cannot identify the local user", "err", err.Error())
	}
	var user, addr string
	if c.s.d.LocalIdentity != nil {
		user, addr = c.s.d.LocalIdentity(uid)
	}
	if addr == "" {
		return refuse("local.user_not_allowed", "local user "+user+" (uid "+strconv.FormatUint(uint64(uid), 10)+
			") has no sending address: add it to [sendmail] users or set default_domain", "uid", uid, "user", user)
	}
	c.authUser = addr
	c.local = "user " + user + " uid " + strconv.FormatUint(uint64(uid), 10)
	c.log.Info("auth", "method", "peercred", "uid", uid, "user", user, "account", addr)
	return true
}
