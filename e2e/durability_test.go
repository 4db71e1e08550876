package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestSIGTERMDuringData: SIGTERM drains. An idle session is told 421, a
// session in the middle of DATA may finish its message and gets 250, the
// process then exits 0, and the acknowledged message is delivered after
// the restart.
func TestSIGTERMDuringData(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{})

	idle := dial(t, s.MX)
	idle.Ehlo("idle.remote.test")

	busy := dial(t, s.MX)
	busy.Ehlo("client.remote.test")
	busy.Expect("MAIL FROM:<x@remote.test>", 250, "2.1.0")
	busy.Expect("RCPT TO:<"+alice+">", 250, "2.1.5")
	busy.Expect("DATA", 354, "")
	msgID := newMessageID(t)
	msg := message("x@remote.test", alice, "in flight during SIGTERM", msgID, strings.Repeat("body line\n", 50))
	half := len(msg) / 2
	busy.Write(msg[:half])

	s.Signal(t, syscall.SIGTERM)
	s.WaitLog(t, "shutdown", func(l logLine) bool { return l.str("msg") == "shutdown" })

	// The idle session is closed with 421 4.3.2.
	idle.ExpectReply("idle session at shutdown", 421, "4.3.2")
	idle.ExpectClosed("idle session after 421")

	// New connections are no longer accepted.
	if nc, err := net.DialTimeout("tcp", s.MX, time.Second); err == nil {
		nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 512)
		n, _ := nc.Read(buf)
		nc.Close()
		if strings.HasPrefix(string(buf[:n]), "220") {
			t.Errorf("a new connection was greeted during the drain: %q", buf[:n])
		}
	}

	// The server waits for the client in DATA.
	time.Sleep(500 * time.Millisecond)
	if !s.Running() {
		t.Fatalf("kanmon exited while a client was in the middle of DATA\n%s", s.LogTail(20))
	}
	busy.Write(msg[half:] + "\r\n.\r\n")
	// The README promises that a client in the middle of DATA finishes:
	// the drain waits for it, so its message is acknowledged.
	r := busy.MustRead()
	acked := r.Code == 250
	checkReply(t, "end of DATA during shutdown (the drain lets a message in DATA finish)", r, 250, "2.0.0")
	if acked {
		busy.ExpectReply("after the message, during shutdown", 421, "4.3.2")
	}
	if code := s.WaitExit(t, 40*time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}

	s.Start(t)
	if acked {
		got := waitMaildir(t, s.Maildir(alice), msgID)
		if !strings.Contains(got, "body line\r\nbody line\r\n") {
			t.Errorf("delivered message is not whole:\n%s", got)
		}
		if n := strings.Count(got, "body line"); n != 50 {
			t.Errorf("delivered message has %d body lines, want 50", n)
		}
	}
}

// TestKill9AfterAccept: law 1. A crash right after "250" loses nothing:
// after a restart every acknowledged message reaches the Maildir.
func TestKill9AfterAccept(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{})
	c := dial(t, s.MX)
	c.Ehlo("client.remote.test")
	var ids []string
	for i := 0; i < 5; i++ {
		id := newMessageID(t)
		ids = append(ids, id)
		c.Expect("MAIL FROM:<x@remote.test>", 250, "2.1.0")
		c.Expect("RCPT TO:<"+alice+">", 250, "2.1.5")
		c.Expect("DATA", 354, "")
		c.Write(message("x@remote.test", alice, "crash test", id, "must survive kill -9\n") + "\r\n.\r\n")
		if i < 4 {
			c.ExpectReply("end of DATA", 250, "2.0.0")
		}
	}
	// Pipeline the last end of data and the kill as close as we can.
	c.ExpectReply("end of DATA", 250, "2.0.0")
	s.Kill(t)

	s.Start(t)
	for _, id := range ids {
		waitMaildir(t, s.Maildir(alice), id)
	}
	// The queue empties once everything is delivered.
	deadline := time.Now().Add(deliveryWait)
	for len(s.QueueIDs(t)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("queue still holds %v after delivery", s.QueueIDs(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rcptProbe opens a session and returns the reply to RCPT TO:<rcpt>.
func rcptProbe(t *testing.T, s *server, rcpt string) reply {
	t.Helper()
	c := dial(t, s.MX)
	defer c.Close()
	c.Ehlo("client.remote.test")
	c.Expect("MAIL FROM:<x@remote.test>", 250, "2.1.0")
	r := c.Cmd("RCPT TO:<" + rcpt + ">")
	c.Cmd("QUIT")
	return r
}

// TestReloadUsers: `kanmon user add` on a running server takes effect on
// SIGHUP, and without it within about two seconds.
func TestReloadUsers(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{})
	checkReply(t, "RCPT bob before he exists", rcptProbe(t, s, "bob@example.org"), 550, "5.1.1")

	s.AddUser(t, "bob@example.org")
	s.Signal(t, syscall.SIGHUP)
	s.WaitLog(t, "reload of the directory", func(l logLine) bool {
		return l.str("msg") == "reload" && l.str("what") == "directory"
	})
	checkReply(t, "RCPT bob after SIGHUP", rcptProbe(t, s, "bob@example.org"), 250, "2.1.5")
	msgID := newMessageID(t)
	sendMail(t, s.MX, "x@remote.test", []string{"bob@example.org"}, message("x@remote.test", "bob@example.org", "for bob", msgID, "hi bob\n"))
	waitMaildir(t, s.Maildir("bob@example.org"), msgID)
	if !s.Running() {
		t.Fatal("SIGHUP stopped the server")
	}

	// Without SIGHUP: the directory refreshes itself.
	checkReply(t, "RCPT carol before she exists", rcptProbe(t, s, "carol@example.org"), 550, "5.1.1")
	s.AddUser(t, "carol@example.org")
	start := time.Now()
	for {
		r := rcptProbe(t, s, "carol@example.org")
		if r.Code == 250 {
			checkReply(t, "RCPT carol", r, 250, "2.1.5")
			break
		}
		if time.Since(start) > 2500*time.Millisecond {
			t.Fatalf("carol still refused %s after kanmon user add without SIGHUP: %q", time.Since(start), r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("carol accepted %s after kanmon user add", time.Since(start).Round(time.Millisecond))

	// A password change revokes the old password without SIGHUP.
	authAs := func(pw string) reply {
		c := dialTLS(t, s.SMTPS)
		defer c.Close()
		c.Ehlo("client.remote.test")
		return c.Cmd("AUTH PLAIN " + plainPayload("carol@example.org", pw))
	}
	checkReply(t, "AUTH carol", authAs(alicePassword), 235, "2.7.0")
	const newPassword = "Carol-Changed-Passw0rd"
	mustKanmon(t, s.Dir, newPassword+"\n", "user", "passwd", "carol@example.org", "--config", s.Config, "--password-stdin")
	start = time.Now()
	for {
		r := authAs(alicePassword)
		if r.Code == 535 {
			checkReply(t, "AUTH carol with the old password", r, 535, "5.7.8")
			break
		}
		if time.Since(start) > 2500*time.Millisecond {
			t.Fatalf("carol's old password still works %s after kanmon user passwd: %q", time.Since(start), r)
		}
		time.Sleep(200 * time.Millisecond)
	}
	checkReply(t, "AUTH carol with the new password", authAs(newPassword), 235, "2.7.0")
}

// TestConcurrentSenders: many clients at once; every acknowledged message
// is delivered exactly once. The first deliveries to alice's fresh Maildir
// run concurrently, which is where the tmp/-before-new/ race of
// TestMaildirWithoutNew shows up: when it hits, one message is deferred
// for queue.retry_min (5 minutes) and this test fails.
func TestConcurrentSenders(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{set: map[string]string{"limits.max_connections_per_ip": "100"}})
	const n = 40
	ids := make([]string, n)
	for i := range ids {
		ids[i] = newMessageID(t)
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := trySendMail(s.MX, "x@remote.test", []string{alice}, message("x@remote.test", alice, "burst", ids[i], "message in a burst\n")); err != nil {
				t.Errorf("sender %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	defer func() {
		if t.Failed() {
			for _, l := range s.Logs(t) {
				if l.str("msg") == "delivery" && l.str("result") != "delivered" || l.str("level") == "ERROR" {
					t.Logf("log: %v", l)
				}
			}
		}
	}()
	for _, id := range ids {
		waitMaildir(t, s.Maildir(alice), id)
	}
	time.Sleep(200 * time.Millisecond)
	for _, id := range ids {
		if got := len(maildirFind(s.Maildir(alice), id)); got != 1 {
			t.Errorf("%s delivered %d times, want once", id, got)
		}
	}
}

// TestMaildirWithoutNew: a Maildir whose tmp/ exists but new/ does not (a
// crash between creating the two, or the first two deliveries to a fresh
// Maildir racing each other) must still receive mail. Deliver only creates
// the Maildir when tmp/ is missing, so such a mailbox refuses every
// delivery ("rename tmp/X new/X: no such file or directory") and the
// message waits for retries that can never succeed.
func TestMaildirWithoutNew(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{})
	root := filepath.Dir(s.Maildir(alice))
	if err := os.MkdirAll(filepath.Join(root, "tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	msgID := newMessageID(t)
	sendMail(t, s.MX, "x@remote.test", []string{alice}, message("x@remote.test", alice, "half-made maildir", msgID, "hello\n"))
	deadline := time.Now().Add(deliveryWait)
	for len(maildirFind(s.Maildir(alice), msgID)) == 0 {
		if time.Now().After(deadline) {
			for _, l := range s.Logs(t) {
				if l.str("msg") == "delivery" {
					t.Logf("log: %v", l)
				}
			}
			t.Fatalf("message acknowledged with 250 is not in %s after %s", s.Maildir(alice), deliveryWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
