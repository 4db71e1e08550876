package dnsresolve

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// TTLResolver is implemented by resolvers that can say how long an
// address answer may be kept, so a cache (the DNS blocklist answers)
// follows the zone's own TTLs instead of a guess.
type TTLResolver interface {
	// LookupATTL returns the IPv4 addresses of name and how long the
	// answer may be kept: the smallest TTL of the answer's records, or
	// for "does not exist" the negative-caching time of RFC 2308 (the
	// smaller of the SOA record's TTL and its MINIMUM field). The TTL is
	// 0 when the answer did not say.
	LookupATTL(ctx context.Context, name string) ([]netip.Addr, time.Duration, error)
}

// LookupATTL asks r for the IPv4 addresses of name with their TTL when r
// can tell it (TTLResolver), otherwise through LookupIP with a TTL of 0.
func LookupATTL(ctx context.Context, r Resolver, name string) ([]netip.Addr, time.Duration, error) {
	if t, ok := r.(TTLResolver); ok {
		return t.LookupATTL(ctx, name)
	}
	ips, err := r.LookupIP(ctx, name)
	var v4 []netip.Addr
	for _, ip := range ips {
		if ip.Unmap().Is4() {
			v4 = append(v4, ip.Unmap())
		}
	}
	if err == nil && len(v4) == 0 {
		err = NotFoundError(name)
	}
	return v4, 0, err
}

// maxTTL bounds a TTL taken from an answer (a week: RFC 8767's cap).
const maxTTL = 7 * 24 * time.Hour

// LookupATTL implements TTLResolver with one A question to the
// configured server (UDP, TCP when the answer is truncated), or to the
// system's first name server from /etc/resolv.conf.
func (n *netResolver) LookupATTL(ctx context.Context, name string) ([]netip.Addr, time.Duration, error) {
	server := n.server
	if server == "" {
		server = systemServer()
	}
	if server == "" { // no resolv.conf: the Go resolver, without TTLs
		return LookupATTL(ctx, struct{ Resolver }{n}, name)
	}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.TypeA)
	resp, err := exchange(ctx, q, server)
	if err != nil {
		return nil, 0, fmt.Errorf("dnsresolve: A %s: %w", name, &net.DNSError{Err: err.Error(), Name: name, Server: server, IsTemporary: true, IsTimeout: ctx.Err() != nil})
	}
	switch resp.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, negativeTTL(resp), fmt.Errorf("dnsresolve: A %s: %w", name, NotFoundError(name))
	default:
		return nil, 0, fmt.Errorf("dnsresolve: A %s: %w", name,
			&net.DNSError{Err: "server answered " + dns.RcodeToString[resp.Rcode], Name: name, Server: server, IsTemporary: true})
	}
	var ips []netip.Addr
	ttl := maxTTL
	for _, rr := range resp.Answer {
		ttl = min(ttl, time.Duration(rr.Header().Ttl)*time.Second)
		if a, ok := rr.(*dns.A); ok {
			if ip, ok := netip.AddrFromSlice(a.A.To4()); ok {
				ips = append(ips, ip)
			}
		}
	}
	if len(ips) == 0 {
		return nil, negativeTTL(resp), fmt.Errorf("dnsresolve: A %s: %w", name, NotFoundError(name))
	}
	return ips, ttl, nil
}

// exchange sends q to server over UDP, and again over TCP when the
// answer was truncated.
func exchange(ctx context.Context, q *dns.Msg, server string) (*dns.Msg, error) {
	c := &dns.Client{Net: "udp", Timeout: DefaultTimeout}
	resp, _, err := c.ExchangeContext(ctx, q, server)
	if err == nil && resp.Truncated {
		c.Net = "tcp"
		resp, _, err = c.ExchangeContext(ctx, q, server)
	}
	if err == nil && resp.Id != q.Id {
		err = fmt.Errorf("answer id %d for question %d", resp.Id, q.Id)
	}
	return resp, err
}

// negativeTTL is RFC 2308's negative-caching time of a "does not exist"
// answer: the smaller of the authority SOA's TTL and MINIMUM; 0 without
// an SOA.
func negativeTTL(m *dns.Msg) time.Duration {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
		}
	}
	return 0
}

var (
	sysOnce   sync.Once
	sysServer string
)

// systemServer returns the first name server of /etc/resolv.conf, read
// once, or "" when there is none.
func systemServer() string {
	sysOnce.Do(func() {
		cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err == nil && len(cc.Servers) > 0 {
			sysServer = net.JoinHostPort(cc.Servers[0], cc.Port)
		}
	})
	return sysServer
}

// LookupATTL implements TTLResolver within the question's time bound.
func (t *timeoutResolver) LookupATTL(ctx context.Context, name string) ([]netip.Addr, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, t.d)
	defer cancel()
	return LookupATTL(ctx, t.r, name)
}

// LookupATTL implements TTLResolver: the IPv4 addresses of IP[name] with
// the TTL of TTL[name].
func (m *Mock) LookupATTL(ctx context.Context, name string) ([]netip.Addr, time.Duration, error) {
	ips, _, err := LookupATTL(ctx, struct{ Resolver }{m}, name)
	ttl, _ := find(m.TTL, normKey(name))
	return ips, ttl, err
}

// LookupDNSBLTTL is LookupDNSBL without the TXT explanation, and with
// how long the answer may be kept (0: unknown): one A question per list,
// for the inbound check that asks every list for every client.
func LookupDNSBLTTL(ctx context.Context, r Resolver, ip netip.Addr, zone string) (listed bool, answers []netip.Addr, ttl time.Duration, err error) {
	ips, ttl, err := LookupATTL(ctx, r, DNSBLName(ip, zone))
	if IsNotFound(err) {
		return false, nil, ttl, nil
	}
	if err != nil {
		return false, nil, 0, fmt.Errorf("dnsresolve: DNSBL %s: %w", zone, err)
	}
	if err := checkListing(ips, ip, zone); err != nil {
		return false, ips, 0, err
	}
	return len(ips) > 0, ips, ttl, nil
}
