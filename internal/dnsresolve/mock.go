package dnsresolve

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Mock is a Resolver answering from maps, for unit tests. Keys are names
// (case-insensitive, with or without the trailing dot); PTR is keyed by the
// address's string form. A name missing from the map it is asked in gives
// a not-found error; a name in Fail gives that error for every question.
// The zero Mock answers "not found" to everything. Mock records every
// question in Queries.
type Mock struct {
	// MX maps a domain to its MX records (a null MX is {{Host: "."}}).
	MX map[string][]*net.MX
	// TXT maps a name to its TXT records.
	TXT map[string][]string
	// IP maps a host name to its addresses.
	IP map[string][]netip.Addr
	// PTR maps an address ("192.0.2.1") to its reverse names.
	PTR map[string][]string
	// Fail maps a name to the error every question about it returns.
	Fail map[string]error
	// TTL maps a name to the TTL LookupATTL reports for it (0 when
	// missing).
	TTL map[string]time.Duration

	mu      sync.Mutex
	queries []string
}

// Queries returns the questions asked so far, as "TYPE name".
func (m *Mock) Queries() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.queries...)
}

func (m *Mock) ask(ctx context.Context, typ, name string) (string, error) {
	key := normKey(name)
	m.mu.Lock()
	m.queries = append(m.queries, typ+" "+key)
	m.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return key, err
	}
	for k, err := range m.Fail {
		if strings.EqualFold(strings.TrimSuffix(k, "."), key) {
			return key, err
		}
	}
	return key, nil
}

// normKey is the form of a name the maps are searched by.
func normKey(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

func find[V any](m map[string]V, key string) (V, bool) {
	for k, v := range m {
		if strings.EqualFold(strings.TrimSuffix(k, "."), key) {
			return v, true
		}
	}
	var zero V
	return zero, false
}

// LookupMX implements Resolver.
func (m *Mock) LookupMX(ctx context.Context, domain string) ([]*net.MX, error) {
	key, err := m.ask(ctx, "MX", domain)
	if err != nil {
		return nil, err
	}
	mx, ok := find(m.MX, key)
	if !ok || len(mx) == 0 {
		return nil, NotFoundError(domain)
	}
	out := make([]*net.MX, len(mx))
	for i, r := range mx {
		c := *r
		out[i] = &c
	}
	return out, nil
}

// LookupTXT implements Resolver.
func (m *Mock) LookupTXT(ctx context.Context, name string) ([]string, error) {
	key, err := m.ask(ctx, "TXT", name)
	if err != nil {
		return nil, err
	}
	txt, ok := find(m.TXT, key)
	if !ok || len(txt) == 0 {
		return nil, NotFoundError(name)
	}
	return append([]string(nil), txt...), nil
}

// LookupIP implements Resolver.
func (m *Mock) LookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	key, err := m.ask(ctx, "IP", host)
	if err != nil {
		return nil, err
	}
	ips, ok := find(m.IP, key)
	if !ok || len(ips) == 0 {
		return nil, NotFoundError(host)
	}
	return append([]netip.Addr(nil), ips...), nil
}

// LookupAddr implements Resolver.
func (m *Mock) LookupAddr(ctx context.Context, ip netip.Addr) ([]string, error) {
	key, err := m.ask(ctx, "PTR", ip.Unmap().String())
	if err != nil {
		return nil, err
	}
	names, ok := find(m.PTR, key)
	if !ok || len(names) == 0 {
		return nil, NotFoundError(ip.String())
	}
	return append([]string(nil), names...), nil
}
