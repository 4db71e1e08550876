package smtpd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"kanmon/internal/config"
	"kanmon/internal/directory"
)

// Unicode case folding of local parts: with SMTPUTF8, "alİce" (U+0130)
// must not reach alice and U+212A KELVIN SIGN must not reach k.
func TestRcptLocalPartFoldsASCIIOnly(t *testing.T) {
	ts := newTestServer(t, nil)
	if err := ts.db.AddUser(context.Background(), "k@example.org", "x"); err != nil {
		t.Fatal(err)
	}
	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO client.remote.test", "250 ")
	cl.cmd("MAIL FROM:<a@remote.test> SMTPUTF8", "250 2.1.0")
	cl.cmd("RCPT TO:<al\u0130ce@example.org>", "550 5.1.1")
	cl.cmd("RCPT TO:<\u212A@example.org>", "550 5.1.1")
	cl.cmd("RCPT TO:<ALICE@example.org>", "250 2.1.5")
	cl.cmd("RCPT TO:<K@example.org>", "250 2.1.5")
}

// One message, a hundred copies: a repeated RCPT for the same mailbox,
// by the same address, its case variants or an alias of the account, is
// answered 250 but queued once.
func TestRcptDuplicateMailboxQueuedOnce(t *testing.T) {
	ts := newTestServer(t, nil)
	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO client.remote.test", "250 ")
	cl.cmd("MAIL FROM:<a@remote.test>", "250 2.1.0")
	for i := 0; i < 100; i++ {
		cl.cmd("RCPT TO:<alice@example.org>", "250 2.1.5")
	}
	cl.cmd("RCPT TO:<ALICE@example.org>", "250 2.1.5")
	cl.cmd("RCPT TO:<postmaster@example.org>", "250 2.1.5")
	cl.cmd("RCPT TO:<bob@example.org>", "250 2.1.5")
	cl.cmd("RCPT TO:<Bob@Example.org>", "250 2.1.5")
	cl.cmd("DATA", "354")
	cl.raw("Subject: dup\r\n\r\nhello\r\n.\r\n")
	reply := cl.expect("250 2.0.0")
	id := strings.TrimSpace(reply[strings.LastIndex(reply, " "):])
	env, _ := readQueued(t, ts, id)
	var accounts []string
	for _, r := range env.Recipients {
		accounts = append(accounts, r.Account)
	}
	if strings.Join(accounts, ",") != "alice@example.org,bob@example.org" {
		t.Fatalf("recipients %+v, want alice and bob once each", env.Recipients)
	}
	if n := strings.Count(ts.logs.String(), `"rule":"rcpt.duplicate"`); n != 102 {
		t.Fatalf("%d rcpt.duplicate decision lines, want 102", n)
	}
}

// writeMail puts a message of n octets into an account's Maildir.
func writeMail(t *testing.T, ts *testServer, account string, n int) {
	t.Helper()
	dir := directory.MailboxPath(ts.srv.cfg.MailRoot(), account)
	if err := os.MkdirAll(filepath.Join(dir, "new"), 0o700); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, "new", strconv.Itoa(n)+".test")
	if err := os.WriteFile(name, bytes.Repeat([]byte("x"), n), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Mailbox quota: a full mailbox is refused at RCPT with 452 4.2.2 (never
// accepted and bounced); SIZE= is taken into account; an account's own
// quota overrides the default; accepted mail counts at once.
func TestRcptMailboxQuota(t *testing.T) {
	ts := newTestServer(t, func(c *config.Config) { c.Limits.MailboxQuota = 2000 })
	ctx := context.Background()
	writeMail(t, ts, "alice@example.org", 1500)
	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO client.remote.test", "250 ")

	// Below quota: accepted; with a SIZE= that would pass it: refused.
	cl.cmd("MAIL FROM:<a@remote.test>", "250 2.1.0")
	cl.cmd("RCPT TO:<alice@example.org>", "250 2.1.5")
	cl.cmd("RSET", "250 2.0.0")
	cl.cmd("MAIL FROM:<a@remote.test> SIZE=1000", "250 2.1.0")
	got := cl.cmd("RCPT TO:<postmaster@example.org>", "452 4.2.2")
	if !strings.Contains(got, "mailbox full") {
		t.Fatalf("reply does not say the mailbox is full: %q", got)
	}
	cl.cmd("RSET", "250 2.0.0")

	// At quota (an account's own quota, equal to its usage): refused
	// whatever the size.
	if err := ts.db.SetQuota(ctx, "alice@example.org", 1500); err != nil {
		t.Fatal(err)
	}
	cl.cmd("MAIL FROM:<a@remote.test>", "250 2.1.0")
	cl.cmd("RCPT TO:<alice@example.org>", "452 4.2.2")
	cl.cmd("RSET", "250 2.0.0")

	// An account's own quota: 0 is none.
	if err := ts.db.SetQuota(ctx, "alice@example.org", 0); err != nil {
		t.Fatal(err)
	}
	cl.cmd("MAIL FROM:<a@remote.test> SIZE=100000", "250 2.1.0")
	cl.cmd("RCPT TO:<alice@example.org>", "250 2.1.5")
	cl.cmd("RSET", "250 2.0.0")

	// Accepted mail counts before it is delivered (well within the usage
	// cache's period, so no scan would have seen it).
	if err := ts.db.SetQuota(ctx, "bob@example.org", 1000); err != nil {
		t.Fatal(err)
	}
	sendMessage(cl, "a@remote.test", []string{"bob@example.org"}, "Subject: big\r\n\r\n"+strings.Repeat("y", 1200)+"\r\n")
	cl.cmd("MAIL FROM:<a@remote.test>", "250 2.1.0")
	cl.cmd("RCPT TO:<bob@example.org>", "452 4.2.2")
	if !strings.Contains(ts.logs.String(), `"rule":"rcpt.mailbox_full"`) {
		t.Fatalf("no rcpt.mailbox_full decision line")
	}
}
