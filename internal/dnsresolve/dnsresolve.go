// Package dnsresolve is kanmon's one DNS resolver (law 6 in DESIGN.md): every
// DNS question the server, the audit command or a policy check asks goes
// through the Resolver interface, so a test can point all of them at a DNS
// server on loopback (New("127.0.0.1:port")) or replace them with a Mock.
//
// Errors keep the distinction mail needs: IsNotFound reports an
// authoritative "this name or record does not exist" (NXDOMAIN or an empty
// answer), which justifies a permanent 5xx; IsTemporary reports a timeout,
// SERVFAIL or unreachable server, which only ever justifies a 4xx.
//
// A null MX (RFC 7505: a single MX record whose host is ".") is returned as
// is, with Host ".", so callers can see that a domain declares it accepts no
// mail; IsNullMX tells them.
//
// SECURITY: answers come from the network and are not DNSSEC-validated here;
// callers must treat every name and address as untrusted input. With a
// server configured, every query goes to that server only (UDP, falling back
// to TCP), never to the system resolvers; names are queried as absolute
// names so the system's search list cannot add a suffix. The system hosts
// file is still consulted for LookupIP and LookupAddr, as the Go resolver
// always does.
package dnsresolve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Resolver answers the DNS questions kanmon asks. Implementations must be
// safe for concurrent use.
type Resolver interface {
	// LookupMX returns the MX records of domain, sorted by preference. A
	// null MX is returned as a single record with Host ".".
	LookupMX(ctx context.Context, domain string) ([]*net.MX, error)
	// LookupTXT returns the TXT records of name, each record's strings
	// joined into one string.
	LookupTXT(ctx context.Context, name string) ([]string, error)
	// LookupIP returns the IPv4 and IPv6 addresses of host.
	LookupIP(ctx context.Context, host string) ([]netip.Addr, error)
	// LookupAddr returns the PTR names of ip (reverse DNS).
	LookupAddr(ctx context.Context, ip netip.Addr) ([]string, error)
}

// New returns a Resolver. When server is non-empty ("127.0.0.1:5353",
// "[::1]:53", or a bare address meaning port 53) every query is sent to that
// server and nowhere else; otherwise the system resolver configuration is
// used.
func New(server string) Resolver {
	if server == "" {
		return &netResolver{r: &net.Resolver{PreferGo: true}}
	}
	if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(strings.Trim(server, "[]"), "53")
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &netResolver{
		server: server,
		r: &net.Resolver{
			PreferGo: true,
			// The Go resolver calls Dial with the system's name server
			// address; we ignore it and always dial the configured one.
			Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, server)
			},
		},
	}
}

// netResolver implements Resolver on a net.Resolver.
type netResolver struct {
	server string
	r      *net.Resolver
}

// String names the resolver for logs ("system" or the server address).
func (n *netResolver) String() string {
	if n.server == "" {
		return "system"
	}
	return n.server
}

func (n *netResolver) LookupMX(ctx context.Context, domain string) ([]*net.MX, error) {
	mx, err := n.r.LookupMX(ctx, absolute(domain))
	if err != nil {
		return nil, fmt.Errorf("dnsresolve: MX %s: %w", domain, err)
	}
	return mx, nil
}

func (n *netResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	txt, err := n.r.LookupTXT(ctx, absolute(name))
	if err != nil {
		return nil, fmt.Errorf("dnsresolve: TXT %s: %w", name, err)
	}
	return txt, nil
}

func (n *netResolver) LookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	ips, err := n.r.LookupNetIP(ctx, "ip", absolute(host))
	if err != nil {
		return nil, fmt.Errorf("dnsresolve: IP %s: %w", host, err)
	}
	for i, ip := range ips {
		ips[i] = ip.Unmap()
	}
	return ips, nil
}

func (n *netResolver) LookupAddr(ctx context.Context, ip netip.Addr) ([]string, error) {
	names, err := n.r.LookupAddr(ctx, ip.Unmap().String())
	if err != nil {
		return nil, fmt.Errorf("dnsresolve: PTR %s: %w", ip, err)
	}
	return names, nil
}

// absolute makes name fully qualified so no search domain is appended.
func absolute(name string) string {
	if name == "" || strings.HasSuffix(name, ".") {
		return name
	}
	return name + "."
}

// IsNotFound reports whether err says that the name or the asked record type
// does not exist (NXDOMAIN, or a successful answer with no such record).
func IsNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// IsTemporary reports whether err is a failure that may go away on retry:
// a timeout, SERVFAIL, an unreachable server or a cancelled context. Any
// error that is neither IsNotFound nor clearly permanent counts as
// temporary, so callers answer 4xx rather than 5xx when in doubt.
func IsTemporary(err error) bool {
	return err != nil && !IsNotFound(err)
}

// NotFoundError returns an error for which IsNotFound is true, for
// resolvers that build their own answers (Mock, tests).
func NotFoundError(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

// TemporaryError returns an error for which IsTemporary is true.
func TemporaryError(name string) error {
	return &net.DNSError{Err: "server misbehaving", Name: name, IsTemporary: true}
}

// IsNullMX reports whether mx is a null MX (RFC 7505): the domain declares
// that it accepts no mail.
func IsNullMX(mx []*net.MX) bool {
	return len(mx) == 1 && (mx[0].Host == "." || mx[0].Host == "")
}

// ReverseName returns the label sequence used for reverse and DNSBL lookups
// of ip: "4.3.2.1" for 1.2.3.4, the 32 nibbles in reverse for IPv6. It has
// no trailing dot and no zone.
func ReverseName(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is4() {
		b := ip.As4()
		return fmt.Sprintf("%d.%d.%d.%d", b[3], b[2], b[1], b[0])
	}
	b := ip.As16()
	const hexdigits = "0123456789abcdef"
	out := make([]byte, 0, 63)
	for i := len(b) - 1; i >= 0; i-- {
		if len(out) > 0 {
			out = append(out, '.')
		}
		out = append(out, hexdigits[b[i]&0x0f], '.', hexdigits[b[i]>>4])
	}
	return string(out)
}

// DNSBLName returns the name to look up to ask whether ip is listed in the
// DNS blocklist zone (e.g. "4.3.2.1.zen.example" for 1.2.3.4).
func DNSBLName(ip netip.Addr, zone string) string {
	return ReverseName(ip) + "." + strings.TrimSuffix(zone, ".")
}

// LookupDNSBL asks whether ip is listed in zone. It returns the listing
// answers (addresses in 127.0.0.0/8) and the zone's TXT explanation when
// there is one; listed is false with a nil error when the zone says "not
// listed". Answers outside 127.0.0.0/8 are treated as a broken or hijacked
// zone and reported as an error, never as a listing.
func LookupDNSBL(ctx context.Context, r Resolver, ip netip.Addr, zone string) (listed bool, answers []netip.Addr, reason string, err error) {
	name := DNSBLName(ip, zone)
	ips, err := r.LookupIP(ctx, name)
	if IsNotFound(err) {
		return false, nil, "", nil
	}
	if err != nil {
		return false, nil, "", fmt.Errorf("dnsresolve: DNSBL %s: %w", zone, err)
	}
	if err := checkListing(ips, ip, zone); err != nil {
		return false, ips, "", err
	}
	if txt, terr := r.LookupTXT(ctx, name); terr == nil {
		reason = strings.Join(txt, " ")
	}
	return len(ips) > 0, ips, reason, nil
}

// checkListing rejects a blocklist answer outside 127.0.0.0/8: a broken
// or hijacked zone, never a listing.
func checkListing(ips []netip.Addr, ip netip.Addr, zone string) error {
	loop := netip.MustParsePrefix("127.0.0.0/8")
	for _, a := range ips {
		if !a.Is4() || !loop.Contains(a) {
			return fmt.Errorf("dnsresolve: DNSBL %s answered %s for %s, outside 127.0.0.0/8: ignoring the zone", zone, a, ip)
		}
	}
	return nil
}
