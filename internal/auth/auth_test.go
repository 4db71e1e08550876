package auth

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memStore is a Store whose hashes a test can change.
type memStore struct {
	mu sync.Mutex
	m  map[string]string
}

func (s *memStore) PasswordHash(a string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.m[a]
	return h, ok
}

func (s *memStore) set(a, h string) {
	s.mu.Lock()
	s.m[a] = h
	s.mu.Unlock()
}

const (
	testUser = "alice@example.org"
	testPass = "Alice-Secret-1"
)

var client = netip.MustParseAddr("192.0.2.10")

func newStore(t testing.TB) *memStore {
	return &memStore{m: map[string]string{testUser: mustHash(t, testPass)}}
}

func TestAuthenticateSuccess(t *testing.T) {
	t.Parallel()
	a := New(newStore(t), NewThrottle(DefaultThrottle))
	for _, name := range []string{testUser, "Alice@Example.ORG", "  alice@example.org "} {
		got, err := a.Authenticate(context.Background(), name, testPass, client)
		if err != nil || got != testUser {
			t.Errorf("Authenticate(%q) = %q, %v; want %q, nil", name, got, err, testUser)
		}
	}
}

// TestAuthenticateSameErrorForUnknownAndWrong: the answer does not tell
// whether an account exists.
func TestAuthenticateSameErrorForUnknownAndWrong(t *testing.T) {
	t.Parallel()
	a := New(newStore(t), nil)
	_, errWrong := a.Authenticate(context.Background(), testUser, "wrong password", client)
	_, errUnknown := a.Authenticate(context.Background(), "nobody@example.org", "wrong password", client)
	_, errUnknownRight := a.Authenticate(context.Background(), "nobody@example.org", testPass, client)
	for name, err := range map[string]error{"wrong password": errWrong, "unknown user": errUnknown, "unknown user, password of another": errUnknownRight} {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	if errWrong.Error() != errUnknown.Error() {
		t.Errorf("wrong password says %q, unknown user says %q: they must not differ", errWrong, errUnknown)
	}
}

// TestAuthenticateUnknownUserCostsHashWork: an unknown account is answered
// only after the same hash work as a known one, so timing does not reveal
// which accounts exist. The bound is loose: it catches an answer that
// skips the hash entirely.
func TestAuthenticateUnknownUserCostsHashWork(t *testing.T) {
	t.Parallel()
	a := New(newStore(t), nil)
	ctx := context.Background()
	measure := func(user string) time.Duration {
		best := time.Duration(1 << 62)
		for range 3 {
			start := time.Now()
			a.Authenticate(ctx, user, "wrong password", client)
			best = min(best, time.Since(start))
		}
		return best
	}
	known := measure(testUser)
	unknown := measure("nobody@example.org")
	if unknown < known/4 {
		t.Errorf("unknown account answered in %v, known account with a wrong password in %v: the difference reveals accounts", unknown, known)
	}
}

// TestAuthenticateCache: a second success skips argon2id (fast), a wrong
// password never hits the cache, a changed hash invalidates the cached
// verification, and FlushCache forgets it.
func TestAuthenticateCache(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	a := New(st, nil)
	ctx := context.Background()
	login := func(pw string) (time.Duration, error) {
		start := time.Now()
		_, err := a.Authenticate(ctx, testUser, pw, client)
		return time.Since(start), err
	}
	first, err := login(testPass)
	if err != nil {
		t.Fatal(err)
	}
	// The fastest of a few cached logins against the fastest of a few full
	// verifications: argon2id with 19 MiB takes milliseconds, the cache's
	// HMAC microseconds.
	uncached := time.Duration(1 << 62)
	for range 3 {
		start := time.Now()
		if !CheckPassword(st.m[testUser], testPass) {
			t.Fatal("reference verification failed")
		}
		uncached = min(uncached, time.Since(start))
	}
	cached := time.Duration(1 << 62)
	for range 3 {
		d, err := login(testPass)
		if err != nil {
			t.Fatalf("second login: %v", err)
		}
		cached = min(cached, d)
	}
	if cached > uncached/4 {
		t.Errorf("cached login took %v, a full verification %v (first login %v): the cache is not used", cached, uncached, first)
	}

	if _, err := login("wrong password"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("wrong password after a cached success: %v, want ErrInvalid", err)
	}

	// The operator changes the password: the old one must stop working at
	// once, cache or not.
	st.set(testUser, mustHash(t, "New-Secret-2"))
	if _, err := login(testPass); !errors.Is(err, ErrInvalid) {
		t.Fatalf("old password after a password change: %v, want ErrInvalid", err)
	}
	if _, err := login("New-Secret-2"); err != nil {
		t.Fatalf("new password: %v", err)
	}

	a.mu.Lock()
	n := len(a.cache)
	a.mu.Unlock()
	if n != 1 {
		t.Errorf("cache holds %d entries after logins of one account, want 1", n)
	}
	a.FlushCache()
	a.mu.Lock()
	n = len(a.cache)
	a.mu.Unlock()
	if n != 0 {
		t.Errorf("cache holds %d entries after FlushCache, want 0", n)
	}
	// After the flush a login verifies again (and still succeeds).
	if _, err := login("New-Secret-2"); err != nil {
		t.Fatalf("login after FlushCache: %v", err)
	}
}

// TestAuthenticateCacheExpires: a cached verification is used only for
// its lifetime.
func TestAuthenticateCacheExpires(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	a := New(st, nil)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	a.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	if _, err := a.Authenticate(context.Background(), testUser, testPass, client); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	e, ok := a.cache[testUser]
	a.mu.Unlock()
	if !ok {
		t.Fatal("no cache entry after a success")
	}
	if want := now.Add(a.cacheTT); !e.expires.Equal(want) {
		t.Errorf("cache entry expires %v, want %v", e.expires, want)
	}
	if a.cacheTT <= 0 || a.cacheTT > 15*time.Minute {
		t.Errorf("cache lifetime %v: want short and positive", a.cacheTT)
	}
}

// TestAuthenticateThrottled: after MaxFailures the right password is
// refused with ErrThrottled (a temporary error), not ErrInvalid, and the
// failures do not leak which part was wrong.
func TestAuthenticateThrottled(t *testing.T) {
	t.Parallel()
	th := NewThrottle(ThrottleConfig{Window: time.Minute, FreeFailures: 1, MaxFailures: 3, MaxDelay: time.Second})
	a := New(newStore(t), th)
	// A cancelled context ends the growing delay at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 3 {
		if _, err := a.Authenticate(ctx, testUser, "wrong", client); !errors.Is(err, ErrInvalid) {
			t.Fatalf("failure %d: %v, want ErrInvalid", i+1, err)
		}
	}
	if _, err := a.Authenticate(context.Background(), testUser, testPass, client); !errors.Is(err, ErrThrottled) {
		t.Fatalf("right password after 3 failures: %v, want ErrThrottled", err)
	}
	// Another client, another account: unaffected.
	other := netip.MustParseAddr("198.51.100.1")
	st := a.store.(*memStore)
	st.set("bob@example.org", mustHash(t, "Bob-Secret-3"))
	if _, err := a.Authenticate(context.Background(), "bob@example.org", "Bob-Secret-3", other); err != nil {
		t.Fatalf("another account from another address: %v", err)
	}
}

// TestAuthenticateDelaysFailures: a failure past the free allowance is
// answered after the throttle's delay.
func TestAuthenticateDelaysFailures(t *testing.T) {
	t.Parallel()
	th := NewThrottle(ThrottleConfig{Window: time.Minute, FreeFailures: 0, MaxFailures: 10, MaxDelay: 300 * time.Millisecond})
	a := New(newStore(t), th)
	start := time.Now()
	if _, err := a.Authenticate(context.Background(), testUser, "wrong", client); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("failure answered after %v, want at least the 300ms delay", d)
	}
}

// countingChecks replaces a's password check with one that counts calls
// and takes a while, so racing attempts overlap inside the check. It
// answers "wrong" without argon2id: every racing test password is wrong,
// and the real hash would only slow the test down.
func countingChecks(a *Authenticator) *atomic.Int64 {
	var n atomic.Int64
	a.check = func(hash, password string) bool {
		n.Add(1)
		time.Sleep(20 * time.Millisecond)
		return false
	}
	return &n
}

// race runs n logins at once (user(i), wrong password, from(i)) and
// returns how many were answered "wrong password" and "throttled".
func race(t *testing.T, a *Authenticator, n int, user func(int) string, from func(int) netip.Addr) (invalid, throttled int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := make(chan struct{})
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := a.Authenticate(ctx, user(i), "wrong password", from(i))
			errs <- err
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		switch {
		case errors.Is(err, ErrInvalid):
			invalid++
		case errors.Is(err, ErrThrottled):
			throttled++
		default:
			t.Errorf("racing login: %v, want ErrInvalid or ErrThrottled", err)
		}
	}
	return invalid, throttled
}

// TestThrottleRaceBoundsHashChecks: the throttle counts an attempt before
// its password is checked, so logins arriving together cannot all pass
// it. From one address, 40 racing logins (on one account, and on 40
// accounts) get at most MaxFailures passwords checked; against an account
// already at its limit, a fresh address gets one check, not one per
// racing connection.
func TestThrottleRaceBoundsHashChecks(t *testing.T) {
	t.Parallel()
	cfg := ThrottleConfig{Window: time.Hour, FreeFailures: 1000, MaxFailures: 10, MaxDelay: time.Millisecond}
	one := func(int) netip.Addr { return client }

	t.Run("one address one account", func(t *testing.T) {
		a := New(newStore(t), NewThrottle(cfg))
		checks := countingChecks(a)
		invalid, throttled := race(t, a, 40, func(int) string { return testUser }, one)
		if n := checks.Load(); n > int64(cfg.MaxFailures) || invalid > cfg.MaxFailures {
			t.Errorf("40 racing logins from one address: %d passwords checked, %d answered wrong password (%d throttled); want at most %d",
				n, invalid, throttled, cfg.MaxFailures)
		}
	})
	t.Run("one address many accounts", func(t *testing.T) {
		a := New(newStore(t), NewThrottle(cfg))
		checks := countingChecks(a)
		race(t, a, 40, func(i int) string { return fmt.Sprintf("user%d@example.org", i) }, one)
		if n := checks.Load(); n > int64(cfg.MaxFailures) {
			t.Errorf("40 racing logins on 40 accounts from one address: %d passwords checked, want at most %d", n, cfg.MaxFailures)
		}
	})
	t.Run("fresh address on a guessed account", func(t *testing.T) {
		th := NewThrottle(cfg)
		a := New(newStore(t), th)
		for i := range cfg.MaxFailures {
			th.Failure(netip.MustParseAddr(fmt.Sprintf("198.51.100.%d", i+1)), testUser)
		}
		checks := countingChecks(a)
		fresh := netip.MustParseAddr("203.0.113.50")
		race(t, a, 40, func(int) string { return testUser }, func(int) netip.Addr { return fresh })
		if n := checks.Load(); n > 1 {
			t.Errorf("40 racing logins from a fresh address on an account at its limit: %d passwords checked, want at most 1", n)
		}
	})
	t.Run("right password still works", func(t *testing.T) {
		a := New(newStore(t), NewThrottle(cfg))
		if _, err := a.Authenticate(context.Background(), testUser, testPass, client); err != nil {
			t.Fatalf("login after the race fix: %v", err)
		}
		// The success settled its reservation: nothing is left pending.
		th := a.Throttle()
		th.mu.Lock()
		defer th.mu.Unlock()
		for k, f := range th.entries {
			if f.pending != 0 {
				t.Errorf("entry %s has %d attempts pending after a settled login", k, f.pending)
			}
		}
	})
}

// TestThrottleLongUserNameBounded: a client-chosen account name far longer
// than any address never becomes a table key as it is, is refused without
// a hash check, and still counts against the client address.
func TestThrottleLongUserNameBounded(t *testing.T) {
	t.Parallel()
	th := NewThrottle(ThrottleConfig{Window: time.Hour, FreeFailures: 1000, MaxFailures: 3, MaxDelay: time.Millisecond})
	a := New(newStore(t), th)
	checks := countingChecks(a)
	long := strings.Repeat("x", 1500) + "@example.org"
	for i := range 3 {
		if _, err := a.Authenticate(context.Background(), long, "wrong", client); !errors.Is(err, ErrInvalid) {
			t.Fatalf("attempt %d with a 1.5 KB name: %v, want ErrInvalid", i+1, err)
		}
	}
	if _, err := a.Authenticate(context.Background(), long, "wrong", client); !errors.Is(err, ErrThrottled) {
		t.Errorf("4th attempt with a long name (limit 3): %v, want ErrThrottled", err)
	}
	if n := checks.Load(); n != 0 {
		t.Errorf("%d password hashes checked for a name no account can have, want 0", n)
	}
	// The throttle itself never keys on more than MaxUserLength bytes of
	// a name, whoever calls it.
	th.Failure(netip.MustParseAddr("192.0.2.200"), long)
	th.mu.Lock()
	defer th.mu.Unlock()
	for k := range th.entries {
		if len(k) > MaxUserLength+len("user:") {
			t.Errorf("throttle key of %d bytes: %.40q...", len(k), k)
		}
	}
}
