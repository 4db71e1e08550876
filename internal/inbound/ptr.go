package inbound

import (
	"context"
	"net/netip"

	"kanmon/internal/config"
	"kanmon/internal/dnsresolve"
	"kanmon/internal/policy"
)

// maxPTRNames bounds how many reverse names of one address are checked.
const maxPTRNames = 5

// CheckMissingPTR: a client whose address has no reverse name at all
// (rule client.no_ptr; default tempfail, 450 4.7.25, RFC 7372). A
// reverse lookup that fails temporarily is not "no name": the check
// passes and logs client.ptr_temperror, because our own DNS trouble (or
// the client's provider's) is no evidence against the client.
func CheckMissingPTR(ctx context.Context, s *Screen, c *Conn) Result {
	if s.cfg.MissingPTR == config.ActionOff {
		return Result{}
	}
	names, err := c.PTR(ctx, s)
	switch {
	case err != nil && !dnsresolve.IsNotFound(err):
		return Result{Rule: "client.ptr_temperror", Action: config.ActionLog,
			Verdict: policy.Verdict{Accept: true, Rule: "client.ptr_temperror", Reason: "reverse DNS lookup failed temporarily; not held against the client"}, Attrs: []any{"err", err.Error()}}
	case err != nil || len(names) == 0:
		return judge(s.cfg.MissingPTR, "client.no_ptr", 550, 450, "7.25",
			"no reverse DNS (PTR) name for "+c.IP.String()+": use your provider's submission service (port 587) or ask your provider for a reverse name")
	}
	return Result{}
}

// CheckFCrDNS: the client's reverse name must resolve back to its
// address (forward-confirmed reverse DNS; rule client.fcrdns, default
// log). A forward lookup that fails temporarily passes. Only the
// client's address family is asked (A for IPv4): one question, not two.
func CheckFCrDNS(ctx context.Context, s *Screen, c *Conn) Result {
	if s.cfg.FCrDNSMismatch == config.ActionOff {
		return Result{}
	}
	names, err := c.PTR(ctx, s)
	if err != nil || len(names) == 0 {
		return Result{} // CheckMissingPTR's finding
	}
	for _, n := range names[:min(len(names), maxPTRNames)] {
		ips, err := dnsresolve.LookupIPOfFamily(ctx, s.dns, n, c.IP)
		if err != nil && !dnsresolve.IsNotFound(err) {
			return Result{}
		}
		if containsIP(ips, c.IP) {
			return Result{}
		}
	}
	return judge(s.cfg.FCrDNSMismatch, "client.fcrdns", 550, 450, "7.25",
		"reverse name "+names[0]+" of "+c.IP.String()+" does not resolve back to it", "ptr", names[0])
}

// resolvesTo reports whether name resolves to the client's address.
func (s *Screen) resolvesTo(ctx context.Context, name string, c *Conn) bool {
	ips, err := dnsresolve.LookupIPOfFamily(ctx, s.dns, name, c.IP)
	return err == nil && containsIP(ips, c.IP)
}

func containsIP(ips []netip.Addr, ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, a := range ips {
		if a.Unmap() == ip {
			return true
		}
	}
	return false
}
