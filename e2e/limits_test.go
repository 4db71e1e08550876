package e2e

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// dialFrom connects to a from another loopback source address (e.g.
// 127.0.0.2; the server still listens on 127.0.0.1 only) and reads the
// greeting, which must be 220. Without loopback aliases the test is
// skipped, or fails under CI=true.
func dialFrom(t *testing.T, src, a string) *client {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	nc, err := d.Dial("tcp", a)
	if err != nil {
		skipOrFail(t, "cannot connect from %s (loopback aliases unavailable here): %v", src, err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &client{t: t, conn: nc, r: bufio.NewReader(nc)}
	c.Greeting = c.ExpectReply("greeting", 220, "")
	return c
}

// TestTimeouts: law 5 for time. Idle and slow clients are cut off at the
// configured bounds, and a session has a bounded number of commands.
func TestTimeouts(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{set: map[string]string{
		"limits.command_timeout": `"1s"`,
		"limits.data_timeout":    `"1s"`,
		"limits.max_commands":    "10",
	}})

	t.Run("idle", func(t *testing.T) {
		c := dial(t, s.MX)
		start := time.Now()
		c.ExpectReply("idle client", 421, "4.4.2")
		c.ExpectClosed("after the idle timeout")
		if d := time.Since(start); d < 900*time.Millisecond || d > 4*time.Second {
			t.Errorf("idle client cut off after %s, want about 1s", d)
		}
	})

	t.Run("slow command drip", func(t *testing.T) {
		c := dial(t, s.MX)
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
				if _, err := c.conn.Write([]byte{"NOOP"[i%4]}); err != nil {
					return
				}
			}
		}()
		start := time.Now()
		c.ExpectReply("a command dripped a byte at a time", 421, "4.4.2")
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("a dripping client held the session for %s, want about 1s", d)
		}
	})

	t.Run("stalled DATA", func(t *testing.T) {
		c := dial(t, s.MX)
		c.Ehlo("client.remote.test")
		c.Expect("MAIL FROM:<x@remote.test>", 250, "2.1.0")
		c.Expect("RCPT TO:<"+alice+">", 250, "2.1.5")
		c.Expect("DATA", 354, "")
		msgID := newMessageID(t)
		c.Write(message("x@remote.test", alice, "stalled", msgID, "half a message\n"))
		start := time.Now()
		c.conn.SetReadDeadline(time.Now().Add(6 * time.Second))
		line, err := c.r.ReadString('\n')
		if err == nil && strings.HasPrefix(line, "250") {
			t.Fatalf("a message that never ended was acknowledged: %q", line)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("stalled DATA held the session for %s (read %q, %v)", d, line, err)
		}
		assertNotDelivered(t, s, msgID)
	})

	t.Run("max commands", func(t *testing.T) {
		c := dial(t, s.MX)
		for i := 0; i < 9; i++ {
			c.Expect("NOOP", 250, "2.0.0")
		}
		c.Expect("NOOP", 250, "2.0.0")
		c.ExpectReply("after the 10th command", 421, "4.7.0")
		c.ExpectClosed("after max_commands")
	})
	stillServes(t, s)
}

// TestAuthThrottle: password guessing is bounded per client address and
// per account (limits.auth_max_failures), with a temporary error.
func TestAuthThrottle(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{
		set:   map[string]string{"limits.auth_max_failures": "2"},
		users: []string{"bob@example.org"},
	})
	c := dialTLS(t, s.SMTPS)
	c.Ehlo("client.remote.test")
	c.Expect("AUTH PLAIN "+plainPayload(alice, "guess-number-1"), 535, "5.7.8")
	c.Expect("AUTH PLAIN "+plainPayload(alice, "guess-number-2"), 535, "5.7.8")
	// Even the right password is refused for now, temporarily.
	c.Expect("AUTH PLAIN "+plainPayload(alice, alicePassword), 454, "4.7.0")
	c.Expect("MAIL FROM:<"+alice+">", 530, "5.7.0")

	// From a clean address the owner still gets in: a guesser elsewhere
	// cannot lock the account out...
	c3 := dialFrom(t, "127.0.0.3", s.Submission)
	c3.Ehlo("client.remote.test")
	c3.StartTLS()
	c3.Ehlo("client.remote.test")
	c3.Expect("AUTH PLAIN "+plainPayload(alice, alicePassword), 235, "2.7.0")
	// ... but an address that guesses at the hammered account is refused
	// after its first failure, even with the right password.
	c2 := dialFrom(t, "127.0.0.2", s.Submission)
	c2.Ehlo("client.remote.test")
	c2.StartTLS()
	c2.Ehlo("client.remote.test")
	c2.Expect("AUTH PLAIN "+plainPayload(alice, "guess-number-3"), 535, "5.7.8")
	c2.Expect("AUTH PLAIN "+plainPayload(alice, alicePassword), 454, "4.7.0")
	// ... while another account from that address is not.
	c2.Expect("AUTH PLAIN "+plainPayload("bob@example.org", alicePassword), 235, "2.7.0")
	s.WaitLog(t, "auth.throttled decision", func(l logLine) bool {
		return l.str("msg") == "decision" && l.str("rule") == "auth.throttled"
	})
}

// TestQueueFull: a full queue answers 452 4.3.1 (temporary): nothing is
// dropped, and the server keeps serving.
func TestQueueFull(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{set: map[string]string{
		"trusted_networks":   `["127.0.0.1/32"]`,
		"queue.max_messages": "1",
	}})
	// A message for a remote recipient stays in the queue (remote
	// delivery is a later feature), filling it.
	id := sendMail(t, s.MX, "x@remote.test", []string{"friend@remote.test"}, message("x@remote.test", "friend@remote.test", "fills the queue", newMessageID(t), "x\n"))
	c := dial(t, s.MX)
	c.Ehlo("client.remote.test")
	c.Expect("MAIL FROM:<x@remote.test>", 452, "4.3.1")
	c.Expect("NOOP", 250, "2.0.0")
	c.Expect("QUIT", 221, "2.0.0")
	if ids := s.QueueIDs(t); len(ids) != 1 || ids[0] != id {
		t.Errorf("queue holds %v, want [%s]", ids, id)
	}
}

// TestSourceAddress: trusted_networks and the per-address connection
// limit apply to the exact client address.
func TestSourceAddress(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{set: map[string]string{
		"trusted_networks":              `["127.0.0.2/32"]`,
		"limits.max_connections_per_ip": "2",
	}})
	s.waitNoSessions(t) // the readiness probe from 127.0.0.1 is gone
	trusted := dialFrom(t, "127.0.0.2", s.MX)
	trusted.Ehlo("client.remote.test")
	trusted.Expect("MAIL FROM:<x@remote.test>", 250, "2.1.0")
	trusted.Expect("RCPT TO:<friend@remote.test>", 250, "2.1.5")

	c := dial(t, s.MX)
	c.Ehlo("client.remote.test")
	c.Expect("MAIL FROM:<x@remote.test>", 250, "2.1.0")
	c.Expect("RCPT TO:<friend@remote.test>", 554, "5.7.1")

	// 127.0.0.1 now has two connections (c and a new one): the third is
	// refused, while 127.0.0.2 (one connection so far) is still admitted.
	dial(t, s.MX)
	refused := dialNoGreeting(t, s.MX)
	refused.ExpectReply("3rd connection from 127.0.0.1", 421, "4.7.0")
	other := dialFrom(t, "127.0.0.2", s.MX)
	other.Expect("NOOP", 250, "2.0.0")
}
