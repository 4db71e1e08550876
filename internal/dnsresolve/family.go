package dnsresolve

import (
	"context"
	"fmt"
	"net/netip"
)

// FamilyResolver is implemented by resolvers that can ask for the
// addresses of one family only ("ip4": A, "ip6": AAAA), so confirming a
// reverse name (FCrDNS) costs one question instead of two.
type FamilyResolver interface {
	LookupIPFamily(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// LookupIPOfFamily returns the addresses of host in the family of ip
// (A records for an IPv4 address, AAAA for IPv6): what a check that
// compares host's addresses with ip needs. A resolver that is not a
// FamilyResolver is asked LookupIP and its answer filtered.
func LookupIPOfFamily(ctx context.Context, r Resolver, host string, ip netip.Addr) ([]netip.Addr, error) {
	network := "ip6"
	if ip.Unmap().Is4() {
		network = "ip4"
	}
	if f, ok := r.(FamilyResolver); ok {
		return f.LookupIPFamily(ctx, network, host)
	}
	ips, err := r.LookupIP(ctx, host)
	var out []netip.Addr
	for _, a := range ips {
		if a.Unmap().Is4() == (network == "ip4") {
			out = append(out, a.Unmap())
		}
	}
	if err == nil && len(out) == 0 {
		err = NotFoundError(host)
	}
	return out, err
}

// LookupIPFamily implements FamilyResolver; like LookupIP it consults
// the hosts file first.
func (n *netResolver) LookupIPFamily(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	ips, err := n.r.LookupNetIP(ctx, network, absolute(host))
	if err != nil {
		return nil, fmt.Errorf("dnsresolve: %s %s: %w", network, host, err)
	}
	for i, ip := range ips {
		ips[i] = ip.Unmap()
	}
	return ips, nil
}

// LookupIPFamily implements FamilyResolver within the question's time
// bound.
func (t *timeoutResolver) LookupIPFamily(ctx context.Context, network, host string) ([]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, t.d)
	defer cancel()
	ip := netip.IPv6Unspecified()
	if network == "ip4" {
		ip = netip.IPv4Unspecified()
	}
	return LookupIPOfFamily(ctx, t.r, host, ip)
}
