package inbound

import (
	"net/netip"
	"sync"
	"time"

	"kanmon/internal/config"
)

// maxRemembered bounds the early-talker memory (clients).
const maxRemembered = 100000

// GreetDelay returns how long to wait before greeting ip: 0 for a
// client that waited the full delay within greet_remember (postscreen's
// approach: a real server pays the wait once a day). The memory is kept
// in this process only; a restart forgets it.
func (s *Screen) GreetDelay(ip netip.Addr) time.Duration {
	if s.cfg.GreetDelay.Duration <= 0 || s.cfg.EarlyTalker == config.ActionOff || s.remember.has(ip) {
		return 0
	}
	return s.cfg.GreetDelay.Duration
}

// Waited records that ip waited for the greeting.
func (s *Screen) Waited(ip netip.Addr) { s.remember.add(ip) }

// EarlyTalker is the finding about a client that talked before the
// greeting (rule client.early_talker; default reject, 554 5.5.1): zombie
// bots do not wait for the server. For "log" the caller logs it with
// Note and greets the client anyway.
func (s *Screen) EarlyTalker(c *Conn) Result {
	return judge(s.cfg.EarlyTalker, "client.early_talker", 554, 421, "5.1",
		"protocol error: "+c.IP.String()+" talked before the greeting")
}

// Note logs a finding that the caller does not enforce itself, and
// counts it.
func (s *Screen) Note(c *Conn, r Result) { s.note(c, r, "") }

// Count counts a finding the caller enforces (and logs as its decision).
func (s *Screen) Count(r Result) { s.count(r) }

// memory remembers client addresses (IPv4, or the IPv6 /64) for ttl,
// bounded in entries.
type memory struct {
	ttl time.Duration
	max int
	mu  sync.Mutex
	m   map[netip.Prefix]time.Time
}

func newMemory(ttl time.Duration, max int) *memory {
	return &memory{ttl: ttl, max: max, m: map[netip.Prefix]time.Time{}}
}

func clientKey(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(64)
	return p
}

func (m *memory) has(ip netip.Addr) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.m[clientKey(ip)]
	return ok && time.Now().Before(t)
}

func (m *memory) add(ip netip.Addr) {
	if m.ttl <= 0 {
		return
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.m) >= m.max {
		for k, t := range m.m {
			if now.After(t) {
				delete(m.m, k)
			}
		}
		if len(m.m) >= m.max {
			return // full of live entries: this client waits again next time
		}
	}
	m.m[clientKey(ip)] = now.Add(m.ttl)
}
