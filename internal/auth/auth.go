package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"time"

	"kanmon/internal/address"
)

// ErrInvalid means the user name or password is wrong. It does not say
// which.
var ErrInvalid = errors.New("auth: invalid credentials")

// ErrThrottled means too many recent failures from this client address or
// for this account: the caller should answer with a temporary error.
var ErrThrottled = errors.New("auth: too many failed attempts, try again later")

// Store gives the password hash of an account.
type Store interface {
	PasswordHash(address string) (hash string, ok bool)
}

// Authenticator checks credentials against a Store, with throttling and a
// verification cache.
type Authenticator struct {
	store    Store
	throttle *Throttle
	// hashing bounds concurrent argon2id checks: each takes 19 MiB, so a
	// burst of logins must queue rather than exhaust memory.
	hashing chan struct{}

	// check verifies a password against a hash: CheckPassword, replaced
	// only by tests that count how many passwords were really checked.
	check func(hash, password string) bool

	key     [32]byte
	mu      sync.Mutex
	cache   map[string]cacheEntry
	now     func() time.Time
	cacheTT time.Duration
}

type cacheEntry struct {
	mac     [32]byte
	expires time.Time
}

// New returns an Authenticator. throttle may be shared with other
// protocols; nil disables throttling (tests only).
func New(store Store, throttle *Throttle) *Authenticator {
	a := &Authenticator{store: store, throttle: throttle, cache: map[string]cacheEntry{}, now: time.Now, cacheTT: 5 * time.Minute,
		hashing: make(chan struct{}, 2*runtime.GOMAXPROCS(0)), check: CheckPassword}
	if _, err := rand.Read(a.key[:]); err != nil {
		panic("auth: no randomness: " + err.Error())
	}
	return a
}

// Throttle returns the failure throttle (shared with POP3).
func (a *Authenticator) Throttle() *Throttle { return a.throttle }

// FlushCache forgets cached verifications (after a reload).
func (a *Authenticator) FlushCache() {
	a.mu.Lock()
	a.cache = map[string]cacheEntry{}
	a.mu.Unlock()
}

func (a *Authenticator) mac(user, hash, password string) [32]byte {
	m := hmac.New(sha256.New, a.key[:])
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write([]byte(hash))
	m.Write([]byte{0})
	m.Write([]byte(password))
	var out [32]byte
	copy(out[:], m.Sum(nil))
	return out
}

// acquire waits for a hashing slot; false when ctx ends first.
func (a *Authenticator) acquire(ctx context.Context) bool {
	select {
	case a.hashing <- struct{}{}:
		return true
	default:
	}
	select {
	case a.hashing <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// Authenticate checks username/password for a client at remote and returns
// the canonical account address. Every attempt that needs the password
// hash is counted by the throttle before the hash is checked, so logins
// that arrive together cannot all pass the throttle; failures count for
// both the client address and the account, and each failure past the
// allowance is answered more slowly. A name longer than any address
// (MaxUserLength) is refused without a hash check; it counts against the
// client address only, so it never becomes a table entry of its own.
func (a *Authenticator) Authenticate(ctx context.Context, username, password string, remote netip.Addr) (string, error) {
	user := address.LowerASCII(strings.TrimSpace(username))
	if len(user) > MaxUserLength {
		if a.throttle != nil {
			if err := a.throttle.Check(remote, ""); err != nil {
				return "", err
			}
		}
		return "", a.fail(ctx, remote, "", true)
	}
	if a.throttle != nil {
		if err := a.throttle.Check(remote, user); err != nil {
			return "", err
		}
	}
	hash, ok := a.store.PasswordHash(user)
	var mac [32]byte
	if ok {
		// A cached verification costs no hash work, so it needs no
		// reservation: the throttle has just been checked.
		mac = a.mac(user, hash, password)
		a.mu.Lock()
		e, hit := a.cache[user]
		a.mu.Unlock()
		if hit && a.now().Before(e.expires) && hmac.Equal(e.mac[:], mac[:]) {
			return user, nil
		}
	} else {
		hash = dummyHash
	}
	if a.throttle != nil {
		if err := a.throttle.Reserve(remote, user); err != nil {
			return "", err
		}
	}
	if !a.acquire(ctx) {
		return "", a.fail(ctx, remote, user, false)
	}
	good := a.check(hash, password)
	<-a.hashing
	if !ok || !good {
		return "", a.fail(ctx, remote, user, true)
	}
	a.mu.Lock()
	if len(a.cache) > 100000 {
		a.cache = map[string]cacheEntry{}
	}
	a.cache[user] = cacheEntry{mac: mac, expires: a.now().Add(a.cacheTT)}
	a.mu.Unlock()
	if a.throttle != nil {
		a.throttle.Success(remote, user)
	}
	return user, nil
}

// fail settles a failed attempt with the throttle and waits its delay.
// checked is false when ctx ended before the hash was checked: the
// attempt still counts (it was reserved), and the client hears that it
// is throttled rather than that its password was wrong.
func (a *Authenticator) fail(ctx context.Context, remote netip.Addr, user string, checked bool) error {
	if a.throttle == nil {
		if !checked {
			return ErrThrottled
		}
		return ErrInvalid
	}
	delay := a.throttle.Failure(remote, user)
	if !checked {
		return ErrThrottled
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	return ErrInvalid
}
