package remote

// Recipient verification probes: the same bounded client as delivery,
// stopping after RCPT. A backup MX asks the partner's own server whether
// a recipient exists before it answers its client, so it never accepts
// mail the partner will refuse (which it could then neither deliver nor,
// mail from outside being never bounced, report).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"kanmon/internal/dnsresolve"
)

// ProbeResult is what a verification probe learnt about one recipient.
type ProbeResult struct {
	// Code, Enhanced and Text are the next hop's reply to RCPT TO (Code
	// is 0 when no server answered it; Err then says why).
	Code     int
	Enhanced string
	Text     string
	// Host is the server that answered (or the last one tried).
	Host string
	// Err is set when no server gave an answer about the recipient: DNS,
	// connection, greeting, a bound broken, MAIL FROM:<> refused.
	Err error
}

// Prober asks a domain's next hop whether it accepts a recipient: the
// domain's static route, or else its MX hosts other than ourselves (only
// those preferred over us when we are one of them). Never the smarthost:
// it would answer for itself, not for the partner.
//
// SECURITY: the probe is a conversation with a server we do not control,
// read with the same bounds as delivery (reply line, lines, size, a
// deadline per reply) and ended by Timeout as a whole; it sends no DATA,
// and the recipient is sent only after the address parser accepted it.
type Prober struct {
	// Remote gives the resolver, routes, EHLO name, port and dial settings.
	Remote *Remote
	// SelfNames are our own host names: an MX record naming one of them
	// is this server, never probed.
	SelfNames []string
	// SelfAddrs are our own listening addresses ("ip:port"), never probed.
	SelfAddrs []string
	// Timeout bounds one whole probe, every host tried (default 20s).
	Timeout time.Duration
}

// Probe asks domain's next hop about rcpt: EHLO, STARTTLS when offered,
// MAIL FROM:<>, RCPT TO:<rcpt>, RSET and QUIT. The first server that
// answers RCPT decides; up to MaxHosts are tried.
func (p *Prober) Probe(ctx context.Context, domain, rcpt string) ProbeResult {
	if strings.ContainsAny(rcpt, "\r\n<>") || strings.ContainsAny(domain, "\r\n") {
		// The parser never lets these through; never put them on the wire.
		return ProbeResult{Err: fmt.Errorf("probe: %q: not a plain address", rcpt)}
	}
	timeout := cmp(p.Timeout, 20*time.Second)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hops, err := p.hops(ctx, strings.ToLower(domain))
	if err != nil {
		return ProbeResult{Err: err}
	}
	maxHosts := p.Remote.MaxHosts
	if maxHosts <= 0 {
		maxHosts = 5
	}
	last := ProbeResult{Err: fmt.Errorf("no mail server for %s answered", domain)}
	for i, h := range hops {
		if i >= maxHosts || ctx.Err() != nil {
			break
		}
		res := p.session(ctx, h, rcpt, false)
		if errors.Is(res.Err, errTLSFailed) {
			// Opportunistic TLS, as for delivery: try again in clear.
			res = p.session(ctx, h, rcpt, true)
		}
		if res.Err == nil {
			return res
		}
		last = res
	}
	return last
}

// hops returns where to probe for domain.
func (p *Prober) hops(ctx context.Context, domain string) ([]hop, error) {
	r := p.Remote
	if a, ok := r.Routes[domain]; ok {
		host, _, _ := net.SplitHostPort(a)
		hops, fail := r.expand(ctx, host, a, false)
		if fail != nil {
			return nil, fmt.Errorf("route %s: %s", a, fail.Text)
		}
		return p.notSelf(hops), nil
	}
	mxs, err := r.Resolver.LookupMX(ctx, domain)
	var names []string
	switch {
	case err != nil && dnsresolve.IsNotFound(err):
		names = []string{domain}
	case err != nil:
		return nil, fmt.Errorf("DNS: %w", err)
	case dnsresolve.IsNullMX(mxs):
		return nil, fmt.Errorf("%s accepts no mail (null MX)", domain)
	default:
		names = p.preferred(mxs)
	}
	port := r.Port
	if port == 0 {
		port = 25
	}
	var hops []hop
	for _, n := range names {
		ips, err := r.Resolver.LookupIP(ctx, n)
		if err != nil {
			continue
		}
		for _, ip := range ips {
			hops = append(hops, hop{host: n, addr: net.JoinHostPort(ip.String(), strconv.Itoa(port))})
		}
	}
	hops = p.notSelf(hops)
	if len(hops) == 0 {
		return nil, fmt.Errorf("no mail server of %s other than this one", domain)
	}
	return hops, nil
}

// preferred returns the MX host names other than ours; when we are one
// of the MX hosts, only those preferred over us (lower preference), as
// a backup MX forwards to them and never to an equal or lower peer.
func (p *Prober) preferred(mxs []*net.MX) []string {
	self := func(h string) bool {
		h = strings.TrimSuffix(h, ".")
		for _, n := range p.SelfNames {
			if strings.EqualFold(h, strings.TrimSuffix(n, ".")) {
				return true
			}
		}
		return false
	}
	ours, found := uint16(0), false
	for _, mx := range mxs {
		if self(mx.Host) && (!found || mx.Pref < ours) {
			ours, found = mx.Pref, true
		}
	}
	var names []string
	for _, mx := range mxs {
		if self(mx.Host) || found && mx.Pref >= ours {
			continue
		}
		names = append(names, strings.TrimSuffix(mx.Host, "."))
	}
	return names
}

// notSelf drops the hops that are our own listening addresses.
func (p *Prober) notSelf(hops []hop) []hop {
	out := hops[:0]
	for _, h := range hops {
		self := false
		for _, a := range p.SelfAddrs {
			if a == h.addr {
				self = true
			}
		}
		if !self {
			out = append(out, h)
		}
	}
	return out
}

// session runs one probe with one host.
func (p *Prober) session(ctx context.Context, h hop, rcpt string, noTLS bool) ProbeResult {
	r := p.Remote
	deadline, _ := ctx.Deadline()
	d := net.Dialer{Timeout: cmp(r.ConnectTimeout, 30*time.Second)}
	conn, err := d.DialContext(ctx, "tcp", h.addr)
	if err != nil {
		return ProbeResult{Host: h.host, Err: fmt.Errorf("%s: connect: %w", h.addr, err)}
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c := newSMTPClient(conn, cmp(r.CommandTimeout, 5*time.Minute), deadline)
	if err := r.prelude(ctx, c, h, noTLS); err != nil {
		return ProbeResult{Host: h.host, Err: fmt.Errorf("%s: %w", h.addr, err)}
	}
	rp, err := c.cmd("MAIL FROM:<>")
	if err != nil {
		return ProbeResult{Host: h.host, Err: fmt.Errorf("%s: %w", h.addr, err)}
	}
	if !rp.positive() {
		// Not an answer about the recipient: the partner refuses our
		// null sender (or is busy), so the recipient stays unverified.
		c.quit()
		return ProbeResult{Host: h.host, Err: fmt.Errorf("%s: MAIL FROM:<> refused: %s", h.addr, rp)}
	}
	rp, err = c.cmd("RCPT TO:<" + rcpt + ">")
	if err != nil {
		return ProbeResult{Host: h.host, Err: fmt.Errorf("%s: %w", h.addr, err)}
	}
	// The answer is in; RSET and QUIT change nothing about it, so their
	// failures are ignored.
	c.cmd("RSET")
	c.quit()
	return ProbeResult{Code: rp.code, Enhanced: rp.enhanced, Text: truncate(rp.text, 200), Host: h.host}
}
