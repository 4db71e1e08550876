package inbound

import (
	"context"
	"strings"

	"kanmon/internal/config"
	"kanmon/internal/dnsresolve"
)

// CheckSenderDomain: the MAIL FROM domain must exist and accept mail
// (seed 000): an MX, or failing that an A or AAAA record.
//   - NXDOMAIN or no address at all: rule sender.domain_unknown, 550 5.1.8
//   - a null MX (RFC 7505): rule sender.null_mx, 550 5.7.27
//   - a DNS timeout or SERVFAIL: rule sender.domain_temperror, 451 4.4.3,
//     whatever the action: our own DNS trouble never refuses for good.
//
// The null sender and address literals are not checked.
func CheckSenderDomain(ctx context.Context, s *Screen, m *Mail) Result {
	a := s.cfg.SenderDomain
	d := m.From.Domain
	if a == config.ActionOff || m.From.IsNull() || d == "" || strings.HasPrefix(d, "[") {
		return Result{}
	}
	mx, err := s.dns.LookupMX(ctx, d)
	switch {
	case err == nil && dnsresolve.IsNullMX(mx):
		return judge(a, "sender.null_mx", 550, 450, "7.27",
			"sender domain "+d+" accepts no mail (null MX), so it cannot send any either", "domain", d)
	case err == nil && len(mx) > 0:
		return Result{}
	case err != nil && !dnsresolve.IsNotFound(err):
		return tempDNS(a, d, err)
	}
	ips, err := s.dns.LookupIP(ctx, d)
	switch {
	case err == nil && len(ips) > 0:
		return Result{}
	case err != nil && !dnsresolve.IsNotFound(err):
		return tempDNS(a, d, err)
	}
	return judge(a, "sender.domain_unknown", 550, 450, "1.8",
		"sender domain "+d+" does not exist in DNS (no MX, A or AAAA)", "domain", d)
}

// tempDNS is the finding for a lookup that failed temporarily: tempfail
// even when the action is reject.
func tempDNS(action, domain string, err error) Result {
	if action == config.ActionReject {
		action = config.ActionTempfail
	}
	return judge(action, "sender.domain_temperror", 451, 451, "4.3",
		"could not look up sender domain "+domain+" in DNS, try again later", "domain", domain, "err", err.Error())
}
