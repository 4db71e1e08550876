package auth

import (
	"crypto/sha256"
	"encoding/hex"
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

// MaxUserLength is the longest account name the throttle keys on as it
// is: the longest address RFC 5321 allows (254 octets). A longer name
// cannot be an account; the throttle keys it on its hash, so one entry
// never holds more than a few dozen bytes of client-chosen text.
const MaxUserLength = 254

// Throttle counts authentication failures per client address and per
// account. It is safe for concurrent use.
//
// An attempt is counted before its password is checked (Reserve) and
// settled after (Failure or Success), so attempts that arrive together
// cannot all pass a check that only sees failures already recorded.
type Throttle struct {
	cfg ThrottleConfig
	now func() time.Time

	mu        sync.Mutex
	entries   map[string]*failures
	lastSweep time.Time
}

type failures struct {
	count   int // failures within the window
	pending int // attempts reserved and not yet settled
	first   time.Time
}

// used is what counts against MaxFailures: failures plus attempts in flight.
func (f *failures) used() int { return f.count + f.pending }

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

// userKey is the table key of an account name, bounded in length.
func userKey(user string) string {
	if len(user) > MaxUserLength {
		sum := sha256.Sum256([]byte(user))
		return "user#" + hex.EncodeToString(sum[:])
	}
	return "user:" + user
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
// a guesser spread over many addresses gets one try per address. Attempts
// reserved and not yet settled count as failures.
func (t *Throttle) Check(ip netip.Addr, user string) error {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.checkLocked(ip, user, now)
}

func (t *Throttle) checkLocked(ip netip.Addr, user string, now time.Time) error {
	fip := t.get(ipKey(ip), now)
	if fip != nil && fip.used() >= t.cfg.MaxFailures {
		return ErrThrottled
	}
	if user == "" {
		return nil
	}
	if fu := t.get(userKey(user), now); fu != nil && fu.used() >= t.cfg.MaxFailures && fip != nil {
		return ErrThrottled
	}
	return nil
}

// Reserve is Check that also counts the attempt, atomically, for the
// address and the account (user "" counts the address only): call it
// before the password hash is checked, then settle the attempt with
// exactly one Failure or Success. However many attempts race, no more
// than MaxFailures per address get past Reserve within the window.
func (t *Throttle) Reserve(ip netip.Addr, user string) error {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.checkLocked(ip, user, now); err != nil {
		return err
	}
	t.boundLocked(now)
	for _, k := range t.keys(ip, user) {
		f := t.get(k, now)
		if f == nil {
			f = &failures{first: now}
			t.entries[k] = f
		}
		f.pending++
	}
	return nil
}

// keys are the table keys an attempt counts against.
func (t *Throttle) keys(ip netip.Addr, user string) []string {
	if user == "" {
		return []string{ipKey(ip)}
	}
	return []string{ipKey(ip), userKey(user)}
}

// Failure records a failure (settling a reservation, if any) and returns
// how long to wait before answering.
func (t *Throttle) Failure(ip netip.Addr, user string) time.Duration {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.boundLocked(now)
	worst := 0
	for _, k := range t.keys(ip, user) {
		f := t.get(k, now)
		if f == nil {
			f = &failures{first: now}
			t.entries[k] = f
		}
		if f.pending > 0 {
			f.pending--
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

// boundLocked keeps the table within maxThrottleEntries before an entry
// is added.
func (t *Throttle) boundLocked(now time.Time) {
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
}

// Success settles a reservation and clears the client address's failures
// (a user who finally typed the right password is not punished further).
// The account's failure count stays, so a guesser spreading over
// addresses is still bounded; other attempts of the address still in
// flight stay counted.
func (t *Throttle) Success(ip netip.Addr, user string) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if f := t.get(ipKey(ip), now); f != nil {
		f.count = 0
		if f.pending > 0 {
			f.pending--
		}
		if f.pending == 0 {
			delete(t.entries, ipKey(ip))
		}
	}
	if user == "" {
		return
	}
	if f := t.get(userKey(user), now); f != nil && f.pending > 0 {
		f.pending--
		if f.used() == 0 {
			delete(t.entries, userKey(user))
		}
	}
}
