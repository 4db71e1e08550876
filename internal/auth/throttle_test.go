package auth

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeClock is the throttle's injected clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var testThrottle = ThrottleConfig{Window: 10 * time.Minute, FreeFailures: 2, MaxFailures: 6, MaxDelay: 4 * time.Second}

func newTestThrottle(cfg ThrottleConfig) (*Throttle, *fakeClock) {
	clk := &fakeClock{t: time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)}
	th := NewThrottle(cfg)
	th.now = clk.now
	return th, clk
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// TestThrottleDelays: free failures cost nothing, then the delay doubles
// from one second up to MaxDelay.
func TestThrottleDelays(t *testing.T) {
	t.Parallel()
	th, _ := newTestThrottle(testThrottle)
	want := []time.Duration{0, 0, 1 * time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}
	for i, w := range want {
		if err := th.Check(ip("192.0.2.1"), "u@example.org"); err != nil {
			t.Fatalf("before failure %d: Check = %v", i+1, err)
		}
		if got := th.Failure(ip("192.0.2.1"), "u@example.org"); got != w {
			t.Errorf("failure %d: delay %v, want %v", i+1, got, w)
		}
	}
}

// TestThrottleDelayNeverOverflows: a huge count never wraps into a zero or
// negative delay.
func TestThrottleDelayNeverOverflows(t *testing.T) {
	t.Parallel()
	th, _ := newTestThrottle(ThrottleConfig{Window: time.Hour, FreeFailures: 0, MaxFailures: 1000, MaxDelay: 8 * time.Second})
	for i := range 200 {
		d := th.Failure(ip("192.0.2.1"), "u@example.org")
		if d <= 0 || d > 8*time.Second {
			t.Fatalf("failure %d: delay %v, want within (0, 8s]", i+1, d)
		}
	}
}

// TestThrottleRefusesAtMaxFailures: the MaxFailures-th failure makes the
// next Check refuse, for that address and for that account.
func TestThrottleRefusesAtMaxFailures(t *testing.T) {
	t.Parallel()
	th, _ := newTestThrottle(testThrottle)
	a := ip("192.0.2.1")
	for i := range testThrottle.MaxFailures {
		if err := th.Check(a, "u@example.org"); err != nil {
			t.Fatalf("Check after %d failures = %v, want nil", i, err)
		}
		th.Failure(a, "u@example.org")
	}
	if err := th.Check(a, "u@example.org"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("Check after MaxFailures = %v, want ErrThrottled", err)
	}
}

// TestThrottlePerAddress: one address guessing many accounts is stopped;
// other addresses are not.
func TestThrottlePerAddress(t *testing.T) {
	t.Parallel()
	th, _ := newTestThrottle(testThrottle)
	guesser := ip("192.0.2.1")
	for i := range testThrottle.MaxFailures {
		th.Failure(guesser, fmt.Sprintf("user%d@example.org", i))
	}
	if err := th.Check(guesser, "fresh@example.org"); !errors.Is(err, ErrThrottled) {
		t.Errorf("guessing address on a fresh account: %v, want ErrThrottled", err)
	}
	if err := th.Check(ip("192.0.2.2"), "fresh@example.org"); err != nil {
		t.Errorf("another address: %v, want nil", err)
	}
	if err := th.Check(ip("192.0.2.2"), "user0@example.org"); err != nil {
		t.Errorf("another address on an account tried once: %v, want nil", err)
	}
}

// TestThrottlePerAccount: many addresses guessing one account are stopped
// together; other accounts are not.
func TestThrottlePerAccount(t *testing.T) {
	t.Parallel()
	th, _ := newTestThrottle(testThrottle)
	for i := range testThrottle.MaxFailures {
		th.Failure(ip(fmt.Sprintf("198.51.100.%d", i+1)), "victim@example.org")
	}
	// A clean address still reaches the account (no lock-out of the real
	// user by a guesser elsewhere) ...
	if err := th.Check(ip("203.0.113.9"), "victim@example.org"); err != nil {
		t.Errorf("clean address on the guessed account: %v, want nil", err)
	}
	// ... but an address that has failed is refused on it: a guesser
	// spread over addresses gets one try per address.
	if err := th.Check(ip("198.51.100.1"), "victim@example.org"); !errors.Is(err, ErrThrottled) {
		t.Errorf("guessing address on the guessed account: %v, want ErrThrottled", err)
	}
	if err := th.Check(ip("203.0.113.9"), "other@example.org"); err != nil {
		t.Errorf("new address, other account: %v, want nil", err)
	}
	// The delay of a spread-out guesser grows with the account's count.
	if d := th.Failure(ip("203.0.113.10"), "victim@example.org"); d != testThrottle.MaxDelay {
		t.Errorf("7th failure on the account from a new address: delay %v, want %v", d, testThrottle.MaxDelay)
	}
}

// TestThrottleWindowExpiry: failures are forgotten once the window has
// passed since the first one.
func TestThrottleWindowExpiry(t *testing.T) {
	t.Parallel()
	th, clk := newTestThrottle(testThrottle)
	a := ip("192.0.2.1")
	for range testThrottle.MaxFailures {
		th.Failure(a, "u@example.org")
	}
	clk.advance(testThrottle.Window - time.Second)
	if err := th.Check(a, "u@example.org"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("just inside the window: %v, want ErrThrottled", err)
	}
	clk.advance(2 * time.Second)
	if err := th.Check(a, "u@example.org"); err != nil {
		t.Fatalf("after the window: %v, want nil", err)
	}
	// The count starts again from zero: free failures are free again.
	if d := th.Failure(a, "u@example.org"); d != 0 {
		t.Errorf("first failure of a new window: delay %v, want 0", d)
	}
}

// TestThrottleSuccessClearsAddressNotAccount: a user who finally types the
// right password is not punished further, but the account's count stays,
// so a guesser spreading over addresses stays bounded.
func TestThrottleSuccessClearsAddressNotAccount(t *testing.T) {
	t.Parallel()
	th, _ := newTestThrottle(testThrottle)
	home := ip("192.0.2.1")
	for range 4 {
		th.Failure(home, "u@example.org")
	}
	th.Success(home, "u@example.org")
	// The address is clear: a failure on another account from it is free.
	if d := th.Failure(home, "other@example.org"); d != 0 {
		t.Errorf("failure from the address after a success: delay %v, want 0 (address cleared)", d)
	}
	// The account is not: its 5th failure (from elsewhere) is delayed.
	if d := th.Failure(ip("198.51.100.1"), "u@example.org"); d != 4*time.Second {
		t.Errorf("5th failure on the account after a success elsewhere: delay %v, want 4s (account count kept)", d)
	}
	for range 5 {
		th.Failure(ip("198.51.100.2"), "u@example.org")
	}
	if err := th.Check(ip("198.51.100.1"), "u@example.org"); !errors.Is(err, ErrThrottled) {
		t.Errorf("account with 10 failures (one success between), asked by a guessing address: %v, want ErrThrottled", err)
	}
}

// TestThrottleIPv6Prefix: IPv6 clients are counted by /64; IPv4 and
// IPv4-mapped IPv6 forms of one address are one client.
func TestThrottleIPv6Prefix(t *testing.T) {
	t.Parallel()
	th, _ := newTestThrottle(testThrottle)
	for i := range testThrottle.MaxFailures {
		th.Failure(ip(fmt.Sprintf("2001:db8:1:2::%x", i+1)), fmt.Sprintf("u%d@example.org", i))
	}
	if err := th.Check(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), "fresh@example.org"); !errors.Is(err, ErrThrottled) {
		t.Errorf("another host of the same /64: %v, want ErrThrottled", err)
	}
	if err := th.Check(ip("2001:db8:1:3::1"), "fresh@example.org"); err != nil {
		t.Errorf("the next /64: %v, want nil", err)
	}

	for i := range testThrottle.MaxFailures {
		th.Failure(ip("::ffff:192.0.2.7"), fmt.Sprintf("v%d@example.org", i))
	}
	if err := th.Check(ip("192.0.2.7"), "fresh@example.org"); !errors.Is(err, ErrThrottled) {
		t.Errorf("IPv4 form of a mapped address that failed: %v, want ErrThrottled", err)
	}
	if err := th.Check(ip("192.0.2.8"), "fresh@example.org"); err != nil {
		t.Errorf("neighbouring IPv4 address: %v, want nil (IPv4 is per address)", err)
	}
}

// TestThrottleMemoryBoundedOverTime: a long spray of addresses over
// several windows never grows the table past its bound, and the throttle
// still stops a guesser who starts after the spray.
func TestThrottleMemoryBoundedOverTime(t *testing.T) {
	t.Parallel()
	th, clk := newTestThrottle(testThrottle)
	const bound = 200000
	peak := 0
	const total = bound + bound/4
	for i := 0; i < total; i += 1000 {
		spray(th, i, 1000)
		clk.advance(testThrottle.Window / (total / 1000)) // the spray lasts one window
		th.mu.Lock()
		peak = max(peak, len(th.entries))
		th.mu.Unlock()
	}
	if peak > bound+2 {
		t.Errorf("a spray of %d failures over one window grew the table to %d entries, over its bound of %d", total, peak, bound)
	}
	a := ip("198.51.100.77")
	for range testThrottle.MaxFailures {
		th.Failure(a, "fresh@example.org")
	}
	if err := th.Check(a, "fresh@example.org"); !errors.Is(err, ErrThrottled) {
		t.Errorf("a guesser after the spray: %v, want ErrThrottled", err)
	}
}

// TestThrottleMemoryBoundedUnderBurst: law 5 (every input is bounded). A
// burst of failures from distinct addresses (IPv6 /64s are cheap) must
// not grow the table past its bound of about 200000 entries.
func TestThrottleMemoryBoundedUnderBurst(t *testing.T) {
	t.Parallel()
	th, _ := newTestThrottle(testThrottle)
	const bound = 200000
	start := time.Now()
	spray(th, 0, bound+100)
	th.mu.Lock()
	n := len(th.entries)
	th.mu.Unlock()
	if n > bound+2 {
		t.Errorf("after %d failures from distinct /64s at one instant, the table holds %d entries, over its bound of %d: "+
			"entries younger than window/2 are never evicted, so a fast spray grows memory without limit, "+
			"and every failure past the bound scans the whole table under the lock (took %v)",
			bound+100, n, bound, time.Since(start))
	}
}

// spray records failures from n distinct IPv6 /64s, one account.
func spray(th *Throttle, from, n int) {
	for i := from; i < from+n; i++ {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i), 15: 1})
		th.Failure(a, "sprayed@example.org")
	}
}

// TestThrottleConcurrent: safe for concurrent use (run with -race); every
// failure is counted: 800 concurrent failures leave the account one short
// of a limit of 801, and one more reaches it.
func TestThrottleConcurrent(t *testing.T) {
	t.Parallel()
	th, _ := newTestThrottle(ThrottleConfig{Window: time.Hour, FreeFailures: 1000, MaxFailures: 801, MaxDelay: time.Second})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				a := ip(fmt.Sprintf("198.51.%d.%d", g, i+1))
				th.Check(a, "shared@example.org")
				th.Failure(a, "shared@example.org")
				th.Success(ip(fmt.Sprintf("203.0.113.%d", g+1)), "x@example.org")
			}
		}()
	}
	wg.Wait()
	if err := th.Check(ip("192.0.2.99"), "shared@example.org"); err != nil {
		t.Fatalf("after 800 failures (limit 801): %v, want nil: a failure was counted twice", err)
	}
	th.Failure(ip("192.0.2.99"), "shared@example.org")
	if err := th.Check(ip("192.0.2.99"), "shared@example.org"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("after 801 failures (limit 801): %v, want ErrThrottled: a concurrent failure was lost", err)
	}
}
