package auth

import (
	"net/netip"
	"strings"
	"sync"
	"time"
)

// ThrottleConfig bounds password guessing.
type ThrottleConfig struct {
	// Window is how long a failure is remembered.
	Window time.Duration
	// FreeFailures is how many failures are answered without delay.
	FreeFailures int
	// MaxFailures is the count after which attempts are refused outright
	// (temporary error) until the window passes.
	MaxFailures int
	// MaxDelay caps the growing delay after each failure.
	MaxDelay time.Duration
}

// DefaultThrottle is the default guessing bound: 3 free failures, then a
// doubling delay up to 8s, refusal after 10 failures within 15 minutes.
var DefaultThrottle = ThrottleConfig{Window: 15 * time.Minute, FreeFailures: 3, MaxFailures: 10, MaxDelay: 8 * time.Second}

// maxThrottleEntries bounds the memory of a Throttle.
const maxThrottleEntries = 200000

// Throttle counts authentication failures per client address and per
// account. It is safe for concurrent use.
type Throttle struct {
	cfg ThrottleConfig
	now func() time.Time

	mu        sync.Mutex
	entries   map[string]*failures
	lastSweep time.Time
}

type failures struct {
	count int
	first time.Time
}

// NewThrottle returns a Throttle.
func NewThrottle(cfg ThrottleConfig) *Throttle {
	return &Throttle{cfg: cfg, now: time.Now, entries: map[string]*failures{}}
}

func ipKey(ip netip.Addr) string {
	if ip.Is6() && !ip.Is4In6() {
		// Throttle an IPv6 client by its /64: one host usually owns it.
		p, _ := ip.Prefix(64)
		return "ip:" + p.String()
	}
	return "ip:" + ip.Unmap().String()
}

func (t *Throttle) get(key string, now time.Time) *failures {
	f := t.entries[key]
	if f != nil && now.Sub(f.first) > t.cfg.Window {
		delete(t.entries, key)
		return nil
	}
	return f
}

// Check returns ErrThrottled when the client address has reached
// MaxFailures within the window, or when the account has and this address
// has failed too. A clean address still reaches a hammered account, so
// nobody can lock a user out by guessing at its password from elsewhere;
// a guesser spread over many addresses gets one try per address.
func (t *Throttle) Check(ip netip.Addr, user string) error {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	fip := t.get(ipKey(ip), now)
	if fip != nil && fip.count >= t.cfg.MaxFailures {
		return ErrThrottled
	}
	if fu := t.get("user:"+user, now); fu != nil && fu.count >= t.cfg.MaxFailures && fip != nil {
		return ErrThrottled
	}
	return nil
}

// Failure records a failure and returns how long to wait before answering.
func (t *Throttle) Failure(ip netip.Addr, user string) time.Duration {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	// Bound memory under a wide spray of addresses: once the table is
	// nine-tenths full, forget entries past half their window (at most
	// once a second, so the sweep stays cheap); if it is full anyway,
	// forget arbitrary entries down to nine-tenths.
	if len(t.entries) >= maxThrottleEntries*9/10 && now.Sub(t.lastSweep) > time.Second {
		t.lastSweep = now
		for k, f := range t.entries {
			if now.Sub(f.first) > t.cfg.Window/2 {
				delete(t.entries, k)
			}
		}
	}
	if len(t.entries) >= maxThrottleEntries {
		// Address entries go first: a spray of addresses must not wipe the
		// failure count of the account it is guessing.
		for _, prefix := range []string{"ip:", ""} {
			for k := range t.entries {
				if len(t.entries) < maxThrottleEntries*9/10 {
					break
				}
				if strings.HasPrefix(k, prefix) {
					delete(t.entries, k)
				}
			}
		}
	}
	worst := 0
	for _, k := range []string{ipKey(ip), "user:" + user} {
		f := t.get(k, now)
		if f == nil {
			f = &failures{first: now}
			t.entries[k] = f
		}
		f.count++
		if f.count > worst {
			worst = f.count
		}
	}
	if worst <= t.cfg.FreeFailures {
		return 0
	}
	d := time.Second << (worst - t.cfg.FreeFailures - 1)
	if d > t.cfg.MaxDelay || d <= 0 {
		d = t.cfg.MaxDelay
	}
	return d
}

// Success clears the client address's failures (a user who finally typed
// the right password is not punished further). The account's count stays,
// so a guesser spreading over addresses is still bounded.
func (t *Throttle) Success(ip netip.Addr, user string) {
	t.mu.Lock()
	delete(t.entries, ipKey(ip))
	t.mu.Unlock()
}
