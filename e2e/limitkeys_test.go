package e2e

import (
	"strings"
	"testing"
	"time"
)

// One test per [limits] and [queue] bound of the README's table that no
// other end-to-end test sets: each sets the key small in kanmon.toml and
// sees the documented reply from the real binary, then sees the server
// keep serving.

// TestLimitMaxLineLength: a command line over limits.max_line_length gets
// 500 5.5.2 and the connection is closed; a line just under it is fine.
func TestLimitMaxLineLength(t *testing.T) {
	t.Parallel()
	// 512 is the smallest allowed value (RFC 5321's own limit).
	s := startServer(t, options{set: map[string]string{"limits.max_line_length": "512"}})
	c := dial(t, s.MX)
	c.Ehlo("client.remote.test")
	c.Expect("NOOP "+strings.Repeat("x", 500), 250, "2.0.0") // 507 octets with CRLF
	c.Write("NOOP " + strings.Repeat("x", 600) + "\r\n")
	r := c.ExpectReply("a 607-octet command line (limit 512)", 500, "5.5.2")
	if !strings.Contains(r.Text(), "line too long") {
		t.Errorf("reply %q does not say the line was too long", r)
	}
	c.ExpectClosed("after a too long command line")
	stillServes(t, s)
}

// TestLimitMaxDataLineLength: a message line over
// limits.max_data_line_length is refused at the end of DATA with 500
// 5.5.2, nothing is queued, and the session goes on.
func TestLimitMaxDataLineLength(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{set: map[string]string{"limits.max_data_line_length": "1000"}})
	c := dial(t, s.MX)
	c.Ehlo("client.remote.test")
	c.Expect("MAIL FROM:<x@remote.test>", 250, "2.1.0")
	c.Expect("RCPT TO:<"+alice+">", 250, "2.1.5")
	c.Expect("DATA", 354, "")
	msgID := newMessageID(t)
	c.Write(message("x@remote.test", alice, "long line", msgID, strings.Repeat("y", 2000)+"\n") + "\r\n.\r\n")
	r := c.ExpectReply("end of DATA with a 2000-octet line (limit 1000)", 500, "5.5.2")
	if !strings.Contains(r.Text(), "1000 octets") {
		t.Errorf("reply %q does not name the limit", r)
	}
	c.Expect("NOOP", 250, "2.0.0")
	if ids := s.QueueIDs(t); len(ids) != 0 {
		t.Errorf("queue holds %v after a refused message", ids)
	}
	// A message whose lines fit is accepted.
	ok := newMessageID(t)
	sendMail(t, s.MX, "x@remote.test", []string{alice}, message("x@remote.test", alice, "fits", ok, strings.Repeat("z", 900)+"\n"))
	waitMaildir(t, s.Maildir(alice), ok)
	if len(maildirFind(s.Maildir(alice), msgID)) != 0 {
		t.Errorf("the refused message was delivered")
	}
}

// TestLimitMaxErrors: after limits.max_errors refused commands the server
// answers 421 4.7.0 and closes.
func TestLimitMaxErrors(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{set: map[string]string{"limits.max_errors": "2"}})
	c := dial(t, s.MX)
	c.Ehlo("client.remote.test")
	c.Expect("BOGUS1", 500, "5.5.2")
	c.Write("BOGUS2\r\n")
	c.ExpectReply("2nd refused command", 500, "5.5.2")
	r := c.ExpectReply("after 2 errors (max_errors 2)", 421, "4.7.0")
	if !strings.Contains(r.Text(), "too many errors") || r.ConnID() == "" {
		t.Errorf("reply %q: want the reason and the connection id", r)
	}
	c.ExpectClosed("after max_errors")
	s.WaitLog(t, "limit.errors decision", func(l logLine) bool {
		return l.str("msg") == "decision" && l.str("rule") == "limit.errors" && l.str("conn") == r.ConnID()
	})
	stillServes(t, s)
}

// TestLimitMailboxQuotaKey: limits.mailbox_quota (the default of every
// account) refuses RCPT with 452 4.2.2 once the Maildir holds more.
func TestLimitMailboxQuotaKey(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{set: map[string]string{"limits.mailbox_quota": `"4KiB"`}})
	big := newMessageID(t)
	sendMail(t, s.MX, "x@remote.test", []string{alice}, message("x@remote.test", alice, "fills", big, strings.Repeat("fill the mailbox\n", 400)))
	waitMaildir(t, s.Maildir(alice), big)
	c := dial(t, s.MX)
	c.Ehlo("client.remote.test")
	c.Expect("MAIL FROM:<x@remote.test>", 250, "2.1.0")
	c.Expect("RCPT TO:<"+alice+">", 452, "4.2.2")
	c.Expect("QUIT", 221, "2.0.0")
}

// TestLimitMaxConnectionsByListener: a pool of its own for mx (2) refuses
// the third MX connection with 421 4.7.0 while the submission listener,
// on the global max_connections, still greets.
func TestLimitMaxConnectionsByListener(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{set: map[string]string{
		"limits.max_connections_by_listener": "{ mx = 2 }",
		"limits.max_connections":             "3",
	}})
	s.waitNoSessions(t)
	dial(t, s.MX)
	dial(t, s.MX)
	c := dialNoGreeting(t, s.MX)
	c.ExpectReply("3rd MX connection (mx pool 2)", 421, "4.7.0")
	c.ExpectClosed("after 421 at connect")
	for i := range 3 {
		sub := dialNoGreeting(t, s.Submission)
		sub.ExpectReply("submission connection "+string(rune('1'+i))+" (pool 3)", 220, "")
	}
	s.WaitLog(t, "connect.refused on mx", func(l logLine) bool {
		return l.str("msg") == "connect.refused" && l.str("listener") == "mx"
	})
}

// TestLimitStressThresholdAndMaxErrors: with an MX pool of 4 and
// stress_threshold 50, two connections put the listener in stress mode
// (one listener.stress line); a session then closes after
// stress_max_errors (1) refused commands instead of max_errors (5).
func TestLimitStressThresholdAndMaxErrors(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{set: map[string]string{
		"limits.max_connections":        "4",
		"limits.stress_threshold":       "50",
		"limits.stress_max_errors":      "1",
		"limits.max_errors":             "5",
		"limits.max_connections_per_ip": "4",
	}})
	s.waitNoSessions(t)
	calm := dial(t, s.MX) // 1 of 4: not stressed
	calm.Ehlo("client.remote.test")
	calm.Expect("BOGUS", 500, "5.5.2")
	calm.Expect("NOOP", 250, "2.0.0")

	busy := dial(t, s.MX) // 2 of 4 = 50 %: stressed
	s.WaitLog(t, "listener.stress on", func(l logLine) bool {
		return l.str("msg") == "listener.stress" && l.str("listener") == "mx" && l["on"] == true
	})
	busy.Ehlo("client.remote.test")
	busy.Write("BOGUS\r\n")
	busy.ExpectReply("refused command under stress", 500, "5.5.2")
	busy.ExpectReply("after 1 error under stress (stress_max_errors 1)", 421, "4.7.0")
	busy.ExpectClosed("after stress_max_errors")
}

// TestLimitAuthFailureWindow: failed logins count within
// limits.auth_failure_window; once it has passed, the right password
// works again from the same address.
func TestLimitAuthFailureWindow(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{set: map[string]string{
		"limits.auth_max_failures":   "2",
		"limits.auth_failure_window": `"2s"`,
	}})
	c := dialTLS(t, s.SMTPS)
	c.Ehlo("client.remote.test")
	c.Expect("AUTH PLAIN "+plainPayload(alice, "wrong-1"), 535, "5.7.8")
	c.Expect("AUTH PLAIN "+plainPayload(alice, "wrong-2"), 535, "5.7.8")
	c.Expect("AUTH PLAIN "+plainPayload(alice, alicePassword), 454, "4.7.0")
	c.Close()
	// Past the window (2s) the count is gone. Bounded: 10 tries, 10s.
	time.Sleep(2 * time.Second)
	var last reply
	for range 10 {
		d := dialTLS(t, s.SMTPS)
		d.Ehlo("client.remote.test")
		last = d.Cmd("AUTH PLAIN " + plainPayload(alice, alicePassword))
		d.Close()
		if last.Code == 235 {
			return
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("right password still refused long after auth_failure_window (2s): %q", last)
}

// TestLimitQueueMaxSize: a message that would take the queue past
// queue.max_size is refused with 452 4.3.1 (temporary) at the end of DATA;
// nothing is queued and the server goes on.
func TestLimitQueueMaxSize(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{set: map[string]string{"queue.max_size": `"1MiB"`}})
	c := dial(t, s.MX)
	c.Ehlo("client.remote.test")
	c.Expect("MAIL FROM:<x@remote.test>", 250, "2.1.0")
	c.Expect("RCPT TO:<"+alice+">", 250, "2.1.5")
	c.Expect("DATA", 354, "")
	c.Write(message("x@remote.test", alice, "too big for the queue", newMessageID(t), strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n", 20000)) + "\r\n.\r\n")
	c.ExpectReply("end of DATA, 1.3 MB into a 1 MiB queue", 452, "4.3.1")
	c.Expect("QUIT", 221, "2.0.0")
	if ids := s.QueueIDs(t); len(ids) != 0 {
		t.Errorf("queue holds %v", ids)
	}
	stillServes(t, s)
}

// TestLimitQueueMinFreeSpace: when the disk has less free space than
// queue.min_free_space, new mail is refused at MAIL with 452 4.3.1.
func TestLimitQueueMinFreeSpace(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{set: map[string]string{"queue.min_free_space": `"100000000GiB"`}})
	c := dial(t, s.MX)
	c.Ehlo("client.remote.test")
	r := c.Expect("MAIL FROM:<x@remote.test>", 452, "4.3.1")
	if r.ConnID() == "" {
		t.Errorf("reply %q carries no connection id", r)
	}
	c.Expect("QUIT", 221, "2.0.0")
}
