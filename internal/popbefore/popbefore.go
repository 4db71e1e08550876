// Package popbefore remembers which client addresses recently logged in
// over POP3, for legacy POP-before-SMTP relaying: for a configured window
// after a successful POP3 login, the SMTP server lets that address relay
// as if it had authenticated.
//
// It exists only for old mail clients that cannot do SMTP AUTH. SMTP AUTH
// is better in every way: POP-before-SMTP authorises an address, not a
// person, so everyone behind the same NAT, carrier-grade NAT or shared
// proxy as a user who just fetched mail may relay through the server for
// the whole window, and the messages carry no per-message identity (the
// server cannot bind a sender address to an account, and the logs can only
// name an address). It is off unless configured with a window.
//
// SECURITY: the registry trusts only addresses the POP3 server recorded
// after a successful login; nothing a client says adds an entry. IPv4 and
// IPv4-mapped IPv6 forms of one address are the same entry; an IPv6
// address is matched exactly (not by prefix), so the grant is as narrow as
// possible. Memory is bounded by MaxEntries: when full, expired entries go
// first, then the one closest to expiring.
package popbefore

import (
	"net/netip"
	"sync"
	"time"
)

// DefaultMaxEntries bounds the registry when New is used.
const DefaultMaxEntries = 100000

// Registry maps client addresses to the end of their relay window. It is
// safe for concurrent use. A nil *Registry allows nothing.
type Registry struct {
	window time.Duration
	max    int
	now    func() time.Time

	mu      sync.Mutex
	expires map[netip.Addr]time.Time
}

// New returns a registry granting window after each login, holding at most
// DefaultMaxEntries addresses. A window of zero or less allows nothing.
func New(window time.Duration) *Registry {
	return NewWithClock(window, DefaultMaxEntries, time.Now)
}

// NewWithClock is New with an explicit entry bound (DefaultMaxEntries when
// maxEntries <= 0) and clock, for tests.
func NewWithClock(window time.Duration, maxEntries int, now func() time.Time) *Registry {
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	if now == nil {
		now = time.Now
	}
	return &Registry{window: window, max: maxEntries, now: now, expires: map[netip.Addr]time.Time{}}
}

// Window returns the relay window granted by a login.
func (r *Registry) Window() time.Duration {
	if r == nil {
		return 0
	}
	return r.window
}

// Record grants ip relay for the window from now (a later login extends
// it). An invalid address is ignored.
func (r *Registry) Record(ip netip.Addr) {
	if r == nil || r.window <= 0 || !ip.IsValid() {
		return
	}
	ip = ip.Unmap().WithZone("")
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.expires[ip]; !ok && len(r.expires) >= r.max {
		r.evictLocked(now)
	}
	r.expires[ip] = now.Add(r.window)
}

// evictLocked drops expired entries and, if that frees nothing, the entry
// that would expire first. Entries are added only after a successful
// login, so reaching the bound at all takes many real accounts; the linear
// scan is acceptable there.
func (r *Registry) evictLocked(now time.Time) {
	var oldest netip.Addr
	var oldestT time.Time
	for ip, t := range r.expires {
		if !now.Before(t) {
			delete(r.expires, ip)
			continue
		}
		if !oldest.IsValid() || t.Before(oldestT) {
			oldest, oldestT = ip, t
		}
	}
	if len(r.expires) >= r.max && oldest.IsValid() {
		delete(r.expires, oldest)
	}
}

// Allowed reports whether ip logged in over POP3 within the window.
func (r *Registry) Allowed(ip netip.Addr) bool {
	if r == nil || r.window <= 0 || !ip.IsValid() {
		return false
	}
	ip = ip.Unmap().WithZone("")
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.expires[ip]
	if !ok {
		return false
	}
	if !now.Before(t) {
		delete(r.expires, ip)
		return false
	}
	return true
}

// Len returns the number of addresses held (expired ones included until
// they are looked up or evicted).
func (r *Registry) Len() int {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.expires)
}
