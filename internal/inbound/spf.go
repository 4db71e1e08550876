package inbound

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"

	"blitiri.com.ar/go/spf"

	"kanmon/internal/config"
	"kanmon/internal/dnsresolve"
	"kanmon/internal/policy"
)

// CheckSPF evaluates the sender's SPF record (RFC 7208, with
// blitiri.com.ar/go/spf through our one resolver) for the client's
// address: the MAIL FROM identity, or the HELO name for the null sender.
//   - fail: rule spf.fail, spf_fail (default reject, 550 5.7.23)
//   - temperror: rule spf.temperror, spf_temperror (default tempfail,
//     451 4.7.24; never permanent)
//   - softfail, neutral, permerror, none, pass: recorded only (one
//     decision line with rule spf.RESULT).
func CheckSPF(ctx context.Context, s *Screen, m *Mail) Result {
	if s.cfg.SPFFail == config.ActionOff && s.cfg.SPFTempError == config.ActionOff {
		return Result{}
	}
	sender := m.From.Local + "@" + m.From.Domain
	if m.From.IsNull() {
		sender = "postmaster@" + m.Helo
	}
	domain := sender[strings.LastIndexByte(sender, '@')+1:]
	if domain == "" || strings.HasPrefix(domain, "[") || !strings.Contains(domain, ".") {
		return Result{}
	}
	res, err := spf.CheckHostWithSender(net.IP(m.Conn.IP.Unmap().AsSlice()), m.Helo, sender,
		spf.WithContext(ctx), spf.WithResolver(spfResolver{s.dns}))
	m.spf = string(res)
	attrs := []any{"spf", string(res), "domain", domain}
	if err != nil {
		attrs = append(attrs, "err", err.Error())
	}
	switch res {
	case spf.Fail:
		return judge(s.cfg.SPFFail, "spf.fail", 550, 450, "7.23",
			"SPF of "+domain+" does not allow "+m.Conn.IP.String()+" to send its mail", attrs...)
	case spf.TempError:
		return judge(s.cfg.SPFTempError, "spf.temperror", 451, 451, "7.24",
			"SPF of "+domain+" could not be checked (DNS), try again later", attrs...)
	}
	return Result{Rule: "spf." + string(res), Action: config.ActionLog, Attrs: attrs,
		Verdict: policy.Verdict{Accept: true, Rule: "spf." + string(res), Reason: "SPF " + string(res) + " recorded"}}
}

// spfResolver adapts the one resolver to the SPF library, which tells
// "not found" from "temporary" by a *net.DNSError at the top of the
// error chain.
type spfResolver struct{ r dnsresolve.Resolver }

func (a spfResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	v, err := a.r.LookupTXT(ctx, name)
	return v, dnsError(name, err)
}

func (a spfResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	v, err := a.r.LookupMX(ctx, name)
	return v, dnsError(name, err)
}

func (a spfResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	ips, err := a.r.LookupIP(ctx, host)
	if err != nil {
		return nil, dnsError(host, err)
	}
	out := make([]net.IPAddr, len(ips))
	for i, ip := range ips {
		out[i] = net.IPAddr{IP: net.IP(ip.AsSlice())}
	}
	return out, nil
}

func (a spfResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "bad address", Name: addr, IsNotFound: true}
	}
	v, err := a.r.LookupAddr(ctx, ip)
	return v, dnsError(addr, err)
}

// dnsError unwraps err to its *net.DNSError; any other failure (a
// cancelled context, say) becomes a temporary one.
func dnsError(name string, err error) error {
	if err == nil {
		return nil
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return de
	}
	return &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true}
}
