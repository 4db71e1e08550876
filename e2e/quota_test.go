package e2e

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestOneCopyPerMailbox: a hundred RCPTs of the same user, and of aliases
// of the same account, put exactly one message in the Maildir.
func TestOneCopyPerMailbox(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{})
	mustKanmon(t, s.Dir, "", "alias", "add", "info@"+domain, alice, "--config", s.Config)
	mustKanmon(t, s.Dir, "", "alias", "add", "sales@"+domain, "info@"+domain, "--config", s.Config)
	time.Sleep(1500 * time.Millisecond) // the running server sees directory changes within a second
	for name, rcpts := range map[string][]string{
		"same user": repeat(alice, 100),
		"aliases":   append(repeat("info@"+domain, 50), append(repeat("sales@"+domain, 49), "ALICE@"+domain)...),
	} {
		marker := newMessageID(t)
		out, code := swaks(t, "--server", s.MX, "--from", "sender@remote.test", "--to", strings.Join(rcpts, ","),
			"--header", "Subject: "+marker, "--body", strings.Repeat("x", 64*1024))
		if code != 0 {
			t.Fatalf("%s: swaks exit %d:\n%.2000s", name, code, out)
		}
		if n := strings.Count(out, "250 2.1.5"); n != 100 {
			t.Fatalf("%s: %d RCPTs answered 250 2.1.5, want 100", name, n)
		}
		waitMaildir(t, s.Maildir(alice), marker)
		waitQueueEmpty(t, s)
		if got := maildirFind(s.Maildir(alice), marker); len(got) != 1 {
			t.Fatalf("%s: %d copies in the Maildir, want 1", name, len(got))
		}
	}
}

// TestMailboxQuota: a full mailbox is refused at RCPT with 452 4.2.2
// (swaks sees it; nothing is bounced later), the account's own quota is
// set with `kanmon user quota`, and SIZE= is taken into account.
func TestMailboxQuota(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{users: []string{"bob@" + domain}})
	mustKanmon(t, s.Dir, "", "user", "quota", alice, "8KiB", "--config", s.Config)
	time.Sleep(1500 * time.Millisecond)

	// Below the quota: accepted and delivered.
	first := newMessageID(t)
	out, code := swaks(t, "--server", s.MX, "--from", "sender@remote.test", "--to", alice,
		"--header", "Subject: "+first, "--body", strings.Repeat("x", 10*1024))
	if code != 0 {
		t.Fatalf("swaks exit %d:\n%s", code, out)
	}
	waitMaildir(t, s.Maildir(alice), first)

	// Now over it: 452 4.2.2 at RCPT, for the address and its alias.
	for _, rcpt := range []string{alice, "postmaster@" + domain} {
		out, _ = swaks(t, "--server", s.MX, "--from", "sender@remote.test", "--to", rcpt, "--body", "more")
		if !hasReply(swaksReplies(out), 452, "4.2.2") {
			t.Fatalf("RCPT %s to a full mailbox: no 452 4.2.2:\n%s", rcpt, out)
		}
	}
	s.WaitLog(t, "mailbox_full decision", func(l logLine) bool {
		return l.str("msg") == "decision" && l.str("rule") == "rcpt.mailbox_full"
	})

	// SIZE= that would pass the quota: refused; without it, bob takes mail.
	mustKanmon(t, s.Dir, "", "user", "quota", "bob@"+domain, "4KiB", "--config", s.Config)
	time.Sleep(1500 * time.Millisecond)
	c := dial(t, s.MX)
	c.Ehlo("client.remote.test")
	c.Expect("MAIL FROM:<sender@remote.test> SIZE=5000", 250, "2.1.0")
	c.Expect("RCPT TO:<bob@"+domain+">", 452, "4.2.2")
	c.Expect("RSET", 250, "2.0.0")
	c.Expect("MAIL FROM:<sender@remote.test> SIZE=1000", 250, "2.1.0")
	c.Expect("RCPT TO:<bob@"+domain+">", 250, "2.1.5")

	// Back to the default (1GiB): alice takes mail again.
	mustKanmon(t, s.Dir, "", "user", "quota", alice, "default", "--config", s.Config)
	time.Sleep(1500 * time.Millisecond)
	out, code = swaks(t, "--server", s.MX, "--from", "sender@remote.test", "--to", alice, "--body", "room again")
	if code != 0 {
		t.Fatalf("after user quota default: swaks exit %d:\n%s", code, out)
	}
	if ids := s.QueueIDs(t); len(ids) > 1 {
		t.Errorf("queue holds %v", ids)
	}
	if _, err := os.Stat(s.Maildir(alice)); err != nil {
		t.Fatal(err)
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// waitQueueEmpty waits until every queued message is delivered.
func waitQueueEmpty(t *testing.T, s *server) {
	t.Helper()
	deadline := time.Now().Add(deliveryWait)
	for len(s.QueueIDs(t)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("queue not empty after %s: %v\n%s", deliveryWait, s.QueueIDs(t), s.LogTail(20))
		}
		time.Sleep(25 * time.Millisecond)
	}
}
