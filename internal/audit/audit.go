// Package audit checks a mail server from the outside for the weaknesses
// kanmon exists to prevent (MISSION.md, seeds 000-004): open relay tricks,
// account disclosure through VRFY, EXPN and accept-then-bounce, plaintext
// credentials, weak or missing TLS, banner disclosure, early-talker
// tolerance and the DNS hygiene of the mail domain, on every mail port:
// SMTP (smtp, submission, smtps: ports.go, portcheck.go) and POP3 and IMAP
// (mailbox.go), each in its role. Run returns a Report
// whose findings carry a severity, the exact dialogue as evidence and the
// fix; Main is the "kanmon audit" command line.
//
// The audit speaks SMTP with its own small client (client.go, reply.go)
// because it must send what ordinary clients refuse to (source routes,
// bang paths, quoted local parts containing "@") and keep every reply line
// as evidence.
//
// SECURITY: the audited server is untrusted. Replies are read with hard
// limits (line length, lines per reply, a timeout on every read and write,
// the caller's context), and dialogue lines are escaped before they are
// printed. The audit never sends DATA for a relay test, except with
// Options.ConfirmTo, and then only to that address; the foreign recipients
// of the relay battery are reserved example domains and TEST-NET addresses,
// and nothing is sent to them beyond RCPT. AUTH is only started, never
// completed: no credentials are sent, the exchange is cancelled with "*";
// a POP3 server is given a made-up USER name and never PASS.
// DNS questions go only through Options.Resolver (law 6). Run it from an
// address the server does not trust (not from its mynetworks), or every
// relay test passes for the wrong reason.
package audit

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"kanmon/internal/dnsresolve"
)

// Defaults for Options fields left empty.
const (
	DefaultPort          = "25"
	DefaultKnownUser     = "postmaster"
	DefaultHeloName      = "kanmon-audit.invalid"
	DefaultFrom          = "kanmon-audit@example.org"
	DefaultForeignDomain = "example.com"
	DefaultTimeout       = 30 * time.Second
)

// Options configure Run.
type Options struct {
	// Target is the server, "HOST[:PORT]"; HOST may be a name (resolved
	// through Resolver) or an IP address. With a PORT only that port is
	// audited (in the role of that standard port, else as smtp); without
	// one, Ports or DefaultPorts.
	Target string
	// Ports are the ports to audit and their roles; they override a port
	// in Target.
	Ports []PortSpec
	// Domain is a mail domain the server receives mail for (required).
	Domain string
	// KnownUser is a local part that exists on the server, compared with a
	// random one for VRFY, EXPN and RCPT; default "postmaster".
	KnownUser string
	// ConfirmTo, when set, is an address the operator reads: every relay
	// variant the server accepts is then sent there as a real test message
	// (DATA), so the relay is proved, not just suspected. The relay battery
	// uses this address's domain as its foreign domain.
	ConfirmTo string
	// HeloName is the name the audit gives in EHLO; default
	// "kanmon-audit.invalid".
	HeloName string
	// From is the outside sender used in MAIL FROM; default
	// "kanmon-audit@example.org".
	From string
	// ForeignDomain is the domain of the foreign recipient in the relay
	// battery when ConfirmTo is not set; default "example.com".
	ForeignDomain string
	// Timeout bounds every connect, read, write and TLS handshake; default
	// 30s. The whole run is bounded by ctx.
	Timeout time.Duration
	// Resolver answers every DNS question (target name, MX, SPF, DMARC,
	// DNSBL). Nil means the system resolver (dnsresolve.New("")).
	Resolver dnsresolve.Resolver
	// SkipDNS turns off the DNS checks (MX, SPF, DMARC, DNSBL, reverse
	// DNS, MTA-STS, TLS-RPT, DKIM).
	SkipDNS bool
	// DNSBLs are DNS blocklist zones in which the server's address is
	// looked up.
	DNSBLs []string
	// DKIMSelector, when set, is the selector the server signs with: its
	// key record (SELECTOR._domainkey.DOMAIN) is checked.
	DKIMSelector string
	// TLSServerName is the name the certificate must match; default the
	// host part of Target.
	TLSServerName string
	// RootCAs verifies the server's certificate; nil means the system
	// roots.
	RootCAs *x509.CertPool
	// InsecureTLSOK accepts a certificate that does not chain to a trusted
	// root (self-signed, private CA) without a finding. Expiry and name
	// mismatch are still reported.
	InsecureTLSOK bool
}

// auditor carries one run's state.
type auditor struct {
	opts    Options
	ports   []PortSpec
	port    PortSpec    // the port being audited
	cur     *PortReport // its summary
	addr    string      // ip:port dialed
	ip      netip.Addr
	addrs   []netip.Addr // every address of the target (its reverse DNS is checked)
	host    string       // host part of Target
	report  *Report
	unknown string // random local part that surely does not exist

	// unknownLocal is the server's RCPT reply for the unknown local user
	// (nil when not asked): a permanent rejection means it checks
	// recipients at RCPT.
	unknownLocal *Reply
}

// Run audits opts.Target and returns the report. An error means the audit
// could not start (bad options, no connection, no greeting); once it has
// started, checks that cannot run are listed in Report.Notes and a
// cancelled ctx returns the partial report with ctx's error.
func Run(ctx context.Context, opts Options) (*Report, error) {
	a, err := newAuditor(ctx, opts)
	if err != nil {
		return nil, err
	}
	a.report.Started = time.Now()
	defer func() { a.report.Duration = time.Since(a.report.Started) }()

	var lastErr error
	opened := 0
	for _, p := range a.ports {
		if ctx.Err() != nil {
			break
		}
		a.setPort(p)
		if err := a.auditPort(ctx); err != nil {
			lastErr = err
			a.note("%s: not audited: %v", p, err)
			continue
		}
		opened++
	}
	if opened == 0 {
		if lastErr == nil {
			lastErr = ctx.Err()
		}
		return nil, fmt.Errorf("audit: %s: %w", a.opts.Target, lastErr)
	}
	a.port, a.cur = PortSpec{}, nil // what follows is about the host, not a port
	if ctx.Err() == nil {
		a.checkDNS(ctx)
	}
	a.report.sort()
	if err := ctx.Err(); err != nil {
		return a.report, fmt.Errorf("audit: %s: interrupted: %w", a.opts.Target, err)
	}
	return a.report, nil
}

func newAuditor(ctx context.Context, opts Options) (*auditor, error) {
	if opts.Target == "" {
		return nil, errors.New("audit: no target")
	}
	if opts.Domain == "" {
		return nil, errors.New("audit: no domain (the server's local mail domain is needed)")
	}
	opts.Domain = strings.ToLower(strings.TrimSuffix(opts.Domain, "."))
	if !validDomain(opts.Domain) {
		return nil, fmt.Errorf("audit: %q is not a domain name", opts.Domain)
	}
	if opts.KnownUser == "" {
		opts.KnownUser = DefaultKnownUser
	}
	if opts.HeloName == "" {
		opts.HeloName = DefaultHeloName
	}
	if opts.From == "" {
		opts.From = DefaultFrom
	}
	if opts.ForeignDomain == "" {
		opts.ForeignDomain = DefaultForeignDomain
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Resolver == nil {
		opts.Resolver = dnsresolve.New("")
	}
	for _, s := range []struct{ name, v string }{
		{"known user", opts.KnownUser}, {"HELO name", opts.HeloName}, {"sender", opts.From},
		{"foreign domain", opts.ForeignDomain}, {"confirm-to address", opts.ConfirmTo},
	} {
		if strings.ContainsAny(s.v, "\r\n<> \t") {
			return nil, fmt.Errorf("audit: %s %q contains spaces, brackets or line breaks", s.name, s.v)
		}
	}
	if opts.DKIMSelector != "" && !validDomain(opts.DKIMSelector) {
		return nil, fmt.Errorf("audit: DKIM selector %q is not a DNS name", opts.DKIMSelector)
	}
	if opts.ConfirmTo != "" {
		at := strings.LastIndexByte(opts.ConfirmTo, '@')
		if at <= 0 || !validDomain(opts.ConfirmTo[at+1:]) {
			return nil, fmt.Errorf("audit: confirm-to address %q is not user@domain", opts.ConfirmTo)
		}
	}

	host, port, err := net.SplitHostPort(opts.Target)
	if err != nil {
		host, port = strings.Trim(opts.Target, "[]"), ""
	}
	ports := opts.Ports
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("audit: bad port in %q", opts.Target)
		}
		if len(ports) == 0 {
			role := standardRole(int(n))
			if role == "" {
				role = RoleSMTP
			}
			ports = []PortSpec{{int(n), role}}
		}
		opts.Target = net.JoinHostPort(host, port)
	} else {
		opts.Target = host
	}
	if len(ports) == 0 {
		ports = DefaultPorts
	}
	ip, err := netip.ParseAddr(host)
	addrs := []netip.Addr{ip}
	if err != nil {
		ips, lerr := opts.Resolver.LookupIP(ctx, host)
		if lerr != nil {
			return nil, fmt.Errorf("audit: resolving %s: %w", host, lerr)
		}
		if len(ips) == 0 {
			return nil, fmt.Errorf("audit: %s has no address", host)
		}
		if len(ips) > maxIdentityAddr {
			ips = ips[:maxIdentityAddr]
		}
		ip, addrs = ips[0], ips
	}
	ip = ip.Unmap()
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	a := &auditor{
		opts:    opts,
		ports:   ports,
		ip:      ip,
		addrs:   addrs,
		host:    host,
		unknown: "kanmon-audit-nouser-" + hex.EncodeToString(rnd[:]),
		report: &Report{
			Target:   opts.Target,
			Domain:   opts.Domain,
			Address:  ip.String(),
			Findings: []Finding{},
			Notes:    []string{},
			Ports:    []*PortReport{},
		},
	}
	if len(ports) == 1 {
		a.report.Address = net.JoinHostPort(ip.String(), strconv.Itoa(ports[0].Port))
	}
	return a, nil
}

// setPort makes p the port the checks talk to.
func (a *auditor) setPort(p PortSpec) {
	a.port = p
	a.addr = net.JoinHostPort(a.ip.String(), strconv.Itoa(p.Port))
	a.cur = &PortReport{Port: p.Port, Role: p.Role, TLS: "none"}
	a.report.Ports = append(a.report.Ports, a.cur)
}

// open connects to the current SMTP port (with the TLS handshake first
// on smtps), reads the greeting and says EHLO helo.
func (a *auditor) open(ctx context.Context, helo string) (*session, error) {
	var (
		s   *session
		err error
	)
	if a.port.Role.implicitTLS() {
		s, err = dialTLS(ctx, a.addr, a.opts.Timeout, a.tlsConfig(tls.VersionTLS12, 0))
		if err != nil && s != nil {
			s.close()
		}
	} else {
		s, err = dial(ctx, a.addr, a.opts.Timeout)
	}
	if err != nil {
		return nil, err
	}
	if err := s.greet(); err != nil {
		s.close()
		return s, err
	}
	if err := s.hello(helo); err != nil {
		s.close()
		return s, err
	}
	return s, nil
}

// add records a finding, labelled with the port being audited.
func (a *auditor) add(f Finding) {
	if f.Port == "" && a.cur != nil {
		f.Port = a.port.String()
	}
	a.report.Findings = append(a.report.Findings, f)
}

// note records something that is not a finding.
func (a *auditor) note(format string, args ...any) {
	a.report.Notes = append(a.report.Notes, fmt.Sprintf(format, args...))
}

// validDomain is a loose syntax check for a domain name given on the
// command line.
func validDomain(d string) bool {
	d = strings.TrimSuffix(d, ".")
	if d == "" || len(d) > 253 {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// ipLiteral returns the SMTP address literal of ip ("[192.0.2.1]",
// "[IPv6:2001:db8::1]").
func ipLiteral(ip netip.Addr) string {
	if ip.Is4() {
		return "[" + ip.String() + "]"
	}
	return "[IPv6:" + ip.String() + "]"
}
