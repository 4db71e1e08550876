package auth

import (
	"context"
	"errors"
	"net/netip"
	"sync"
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
