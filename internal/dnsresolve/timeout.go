package dnsresolve

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// DefaultTimeout bounds one DNS question when the config gives none.
const DefaultTimeout = 5 * time.Second

// WithTimeout returns a Resolver that gives every question at most d
// (d <= 0: DefaultTimeout), whatever the caller's context allows: a DNS
// server that never answers costs one question's time, not the Go
// resolver's retries, and a question's time is bounded like every other
// input (law 5). The error of a question cut short IsTemporary.
func WithTimeout(r Resolver, d time.Duration) Resolver {
	if d <= 0 {
		d = DefaultTimeout
	}
	return &timeoutResolver{r: r, d: d}
}

type timeoutResolver struct {
	r Resolver
	d time.Duration
}

// String names the resolver for logs.
func (t *timeoutResolver) String() string { return fmt.Sprintf("%v (timeout %s)", t.r, t.d) }

func (t *timeoutResolver) LookupMX(ctx context.Context, domain string) ([]*net.MX, error) {
	ctx, cancel := context.WithTimeout(ctx, t.d)
	defer cancel()
	return t.r.LookupMX(ctx, domain)
}

func (t *timeoutResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, t.d)
	defer cancel()
	return t.r.LookupTXT(ctx, name)
}

func (t *timeoutResolver) LookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, t.d)
	defer cancel()
	return t.r.LookupIP(ctx, host)
}

func (t *timeoutResolver) LookupAddr(ctx context.Context, ip netip.Addr) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, t.d)
	defer cancel()
	return t.r.LookupAddr(ctx, ip)
}
