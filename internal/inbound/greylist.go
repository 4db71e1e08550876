package inbound

import (
	"net/netip"
	"time"

	"kanmon/internal/address"
	"kanmon/internal/config"
	"kanmon/internal/policy"
	"kanmon/internal/state"
)

// UseState gives the screen the state database greylisting keeps its
// triplets in; without one there is no greylisting.
func (s *Screen) UseState(st state.Store) { s.state = st }

// Triplet states (Record.B).
const (
	greyPending int64 = 0
	greyPassed  int64 = 1
)

// greyNet is the client's network in a triplet: the IPv4 /24 or the IPv6
// /64, since a sending farm retries from a neighbouring address.
func greyNet(ip netip.Addr) string {
	ip = ip.Unmap()
	bits := 24
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p.String()
}

// GreyDecision is greylisting's verdict on a triplet as a pure function
// of what is recorded (r, found), the settings and the time: whether the
// recipient passes, how long the client must still wait when it does
// not, and the record to keep.
func GreyDecision(g config.Greylisting, r state.Record, found bool, now time.Time) (pass bool, wait time.Duration, keep state.Record) {
	n := now.UnixNano()
	switch {
	case !found:
		return false, g.GreylistDelay.Duration, state.Record{A: n, B: greyPending, Expires: now.Add(g.GreylistExpiry.Duration).UnixNano()}
	case r.B == greyPassed:
		r.Expires = now.Add(g.GreylistPassTTL.Duration).UnixNano()
		return true, 0, r
	}
	if waited := time.Duration(n - r.A); waited < g.GreylistDelay.Duration {
		return false, g.GreylistDelay.Duration - waited, r
	}
	r.B, r.Expires = greyPassed, now.Add(g.GreylistPassTTL.Duration).UnixNano()
	return true, 0, r
}

// Greylist decides a recipient the policy accepted from an MX client
// (rule rcpt.greylist): a new (network, sender, recipient) triplet is
// refused with 451 4.7.1 until greylist_delay has passed, as real mail
// servers retry and most spam software does not. Clients on the allow
// list skip it; trusted and authenticated clients never reach it (the
// inbound checks do not apply to them). A store too full to keep the
// triplet lets the recipient through.
func (s *Screen) Greylist(c *Conn, from, to address.Addr) Outcome {
	g := s.cfg.Greylisting
	if g.Greylist == config.GreylistOff || s.state == nil || c.Allowed {
		return Outcome{}
	}
	now := time.Now()
	key := "gl:" + greyNet(c.IP) + "\x00" + address.LowerASCII(from.String()) + "\x00" + address.LowerASCII(to.String())
	var pass, first bool
	var wait time.Duration
	stored := s.state.Update(key, now, func(r *state.Record, found bool) bool {
		first = !found
		pass, wait, *r = GreyDecision(g, *r, found, now)
		return true
	})
	if pass || !stored {
		if pass && !first {
			c.Log.Debug("greylist", "rule", "rcpt.greylist", "result", "pass", "addr", to.String())
		}
		return Outcome{}
	}
	action := config.ActionTempfail
	if g.Greylist == config.GreylistLog {
		action = config.ActionLog
	}
	wait = wait.Round(time.Second)
	if wait < time.Second {
		wait = time.Second
	}
	r := Result{Rule: "rcpt.greylist", Action: action,
		Verdict: policy.Rejected("rcpt.greylist", 451, "4.7.1", "<"+to.String()+">: greylisted, please try again in "+
			wait.String()+" (mail servers retry; rule rcpt.greylist)"),
		Attrs: []any{"client_net", greyNet(c.IP), "first", first, "retry_after_s", int64(wait / time.Second)}}
	return s.decide(c, []Result{r})
}
