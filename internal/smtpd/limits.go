package smtpd

import (
	"net/netip"

	"kanmon/internal/address"
	"kanmon/internal/policy"
	"kanmon/internal/ratelimit"
)

// The hooks of [ratelimit] (internal/ratelimit) and greylisting
// (internal/inbound greylist.go) into the dialogue; the decisions are
// theirs.

// ruleConnectionRate is the MX connection rate's rule.
const ruleConnectionRate = "client.connection_rate"

// connectionRate is the listener's screen for the MX connection rate
// (nil for other roles, or without limits). Trusted networks are
// exempt, as from every MX check.
func (s *Server) connectionRate(role Role) func(netip.Addr) string {
	if role != RoleMX || s.d.Limits == nil {
		return nil
	}
	return func(ip netip.Addr) string {
		if s.d.Policy.ClientOf(ip, string(role), "").Trusted {
			return ""
		}
		if v := s.d.Limits.Connect(ip); !v.Accept {
			return v.Rule
		}
		return ""
	}
}

func (c *conn) sender() ratelimit.Sender {
	return ratelimit.Sender{Conn: c.id, Listener: string(c.role), Account: c.authUser, IP: c.ip, Log: c.log}
}

// limitMail applies the suspension and message limits at MAIL FROM; it
// sends the refusal and returns false when the sender may not go on.
func (c *conn) limitMail() bool {
	if c.s.d.Limits == nil || c.authUser == "" {
		return true
	}
	if v := c.s.d.Limits.Mail(c.sender()); !v.Accept {
		c.reject(v.Rule, v.Code, v.Enhanced, v.Reason, "user", c.authUser)
		return false
	}
	return true
}

// limitRcpt applies, to a recipient the policy accepted, greylisting
// (MX clients the inbound checks apply to) and the recipient limits
// (authenticated users). On refusal it has sent the reply; counted says
// whether it counts toward the error limit: a greylisted recipient does
// not, since a real server may name many in one transaction.
func (c *conn) limitRcpt(from, to address.Addr) (ok, counted bool) {
	if c.scr != nil && c.s.d.Inbound != nil {
		if out := c.s.d.Inbound.Greylist(c.scr.conn, from, to); out.Refused {
			c.deny(out.Verdict, append([]any{"addr", to.String(), "from", from.String()}, out.Attrs...)...)
			return false, false
		}
	}
	if c.s.d.Limits == nil || c.authUser == "" {
		return true, false
	}
	if v := c.s.d.Limits.Rcpt(c.sender(), to); !v.Accept {
		c.reject(v.Rule, v.Code, v.Enhanced, v.Reason, "addr", to.String(), "user", c.authUser)
		return false, true
	}
	return true, false
}

// deny sends a refusal that does not count toward the error limit.
func (c *conn) deny(v policy.Verdict, attrs ...any) {
	c.reject(v.Rule, v.Code, v.Enhanced, v.Reason, attrs...)
	c.errors--
}
