package popbefore

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

// TestWindow: refused before a login, allowed within the window, refused
// after it; a later login extends the window.
func TestWindow(t *testing.T) {
	c := newClock()
	r := NewWithClock(10*time.Minute, 0, c.Now)
	ip := netip.MustParseAddr("192.0.2.7")
	if r.Allowed(ip) {
		t.Fatal("allowed before any login")
	}
	r.Record(ip)
	if !r.Allowed(ip) {
		t.Fatal("not allowed right after a login")
	}
	if r.Allowed(netip.MustParseAddr("192.0.2.8")) {
		t.Error("a neighbour address is allowed")
	}
	c.advance(9*time.Minute + 59*time.Second)
	if !r.Allowed(ip) {
		t.Error("not allowed within the window")
	}
	r.Record(ip) // a new login at 9:59 extends to 19:59
	c.advance(5 * time.Minute)
	if !r.Allowed(ip) {
		t.Error("a second login did not extend the window")
	}
	c.advance(5 * time.Minute)
	if r.Allowed(ip) {
		t.Error("allowed after the window")
	}
	if r.Len() != 0 {
		t.Errorf("expired entry kept: %d", r.Len())
	}
}

// TestAddressForms: an IPv4 address and its IPv4-mapped IPv6 form are one
// client; an IPv6 address is matched exactly, not by prefix.
func TestAddressForms(t *testing.T) {
	r := NewWithClock(time.Minute, 0, newClock().Now)
	r.Record(netip.MustParseAddr("::ffff:198.51.100.1"))
	if !r.Allowed(netip.MustParseAddr("198.51.100.1")) {
		t.Error("IPv4-mapped login does not allow the IPv4 address")
	}
	r.Record(netip.MustParseAddr("2001:db8::1"))
	if !r.Allowed(netip.MustParseAddr("2001:db8::1")) || r.Allowed(netip.MustParseAddr("2001:db8::2")) {
		t.Error("IPv6 not matched exactly")
	}
	r.Record(netip.Addr{})
	if r.Allowed(netip.Addr{}) {
		t.Error("the zero address is allowed")
	}
}

// TestDisabled: a nil registry or a window of zero allows nothing.
func TestDisabled(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.1")
	var nilReg *Registry
	nilReg.Record(ip)
	if nilReg.Allowed(ip) || nilReg.Len() != 0 || nilReg.Window() != 0 {
		t.Error("nil registry allows")
	}
	r := New(0)
	r.Record(ip)
	if r.Allowed(ip) || r.Len() != 0 {
		t.Error("zero window allows")
	}
}

// TestBounded: memory stays within the bound; expired entries go first,
// then the oldest, and the newest login always counts.
func TestBounded(t *testing.T) {
	c := newClock()
	r := NewWithClock(time.Minute, 3, c.Now)
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}) }
	for i := range 3 {
		r.Record(addr(i))
		c.advance(time.Second)
	}
	r.Record(addr(3)) // full: the oldest (0) goes
	if r.Len() != 3 || r.Allowed(addr(0)) || !r.Allowed(addr(1)) || !r.Allowed(addr(3)) {
		t.Errorf("after overflow: len %d", r.Len())
	}
	c.advance(2 * time.Minute) // everything expired
	for i := 10; i < 1000; i++ {
		r.Record(addr(i))
		if r.Len() > 3 {
			t.Fatalf("registry grew to %d", r.Len())
		}
	}
	if !r.Allowed(addr(999)) {
		t.Error("newest login not allowed")
	}
}

func TestConcurrent(t *testing.T) {
	r := New(time.Minute)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				ip := netip.AddrFrom4([4]byte{10, byte(g), byte(i >> 8), byte(i)})
				r.Record(ip)
				if !r.Allowed(ip) {
					t.Error("not allowed")
					return
				}
			}
		}()
	}
	wg.Wait()
	if r.Len() != 8000 {
		t.Errorf("Len = %d", r.Len())
	}
}
