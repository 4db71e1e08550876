package smtpd

import (
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"kanmon/internal/config"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func sendMessage(cl *client, from string, rcpts []string, body string) string {
	cl.t.Helper()
	cl.cmd("MAIL FROM:<"+from+">", "250 2.1.0")
	for _, r := range rcpts {
		cl.cmd("RCPT TO:<"+r+">", "250 2.1.5")
	}
	cl.cmd("DATA", "354")
	cl.raw(body + ".\r\n")
	return cl.expect("250 2.0.0")
}

// Law 1: "250" after DATA only once the message is on disk in the queue.
func TestLaw1AcceptedMeansDurable(t *testing.T) {
	ts := newTestServer(t, nil)
	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO client.remote.test", "250 ")
	reply := sendMessage(cl, "sender@remote.test", []string{"alice@example.org"},
		"Subject: law 1\r\nMessage-ID: <law1@remote.test>\r\n\r\nbody line\r\n..leading dot\r\n")
	id := strings.TrimSpace(reply[strings.LastIndex(reply, " "):])
	ids := queued(t, ts)
	if len(ids) != 1 || ids[0] != id {
		t.Fatalf("queue holds %v, reply named %q", ids, id)
	}
	env, body := readQueued(t, ts, id)
	if env.From != "sender@remote.test" || len(env.Recipients) != 1 || env.Recipients[0].Account != "alice@example.org" {
		t.Fatalf("envelope %+v", env)
	}
	if !strings.HasPrefix(body, "Received: from client.remote.test ([127.0.0.1])\r\n\tby mx.example.org with ESMTP id "+id) {
		t.Fatalf("body does not start with our Received line:\n%s", body)
	}
	if !strings.HasSuffix(body, "Subject: law 1\r\nMessage-ID: <law1@remote.test>\r\n\r\nbody line\r\n.leading dot\r\n") {
		t.Fatalf("message not stored exactly (dot stuffing undone):\n%q", body)
	}
	if !strings.Contains(ts.logs.String(), `"message_id":"<law1@remote.test>"`) {
		t.Fatalf("queued log line lacks message_id:\n%s", ts.logs.String())
	}
}

// failingFile fails writes like a full disk.
type failingFile struct{ n int }

func (f *failingFile) Write(p []byte) (int, error) {
	f.n += len(p)
	if f.n > 100 {
		return 0, syscall.ENOSPC
	}
	return len(p), nil
}
func (f *failingFile) Close() error { return nil }

// Law 1 and 5: a full disk gives 452 4.3.1 and nothing is acknowledged.
func TestDiskFullGivesTemporaryError(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.spool.SetCreateHook(func(string) (io.WriteCloser, error) { return &failingFile{}, nil })
	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO client.remote.test", "250 ")
	cl.cmd("MAIL FROM:<sender@remote.test>", "250 2.1.0")
	cl.cmd("RCPT TO:<alice@example.org>", "250 2.1.5")
	cl.cmd("DATA", "354")
	cl.raw("Subject: full\r\n\r\n" + strings.Repeat("x", 5000) + "\r\n.\r\n")
	cl.expect("452 4.3.1")
	if ids := queued(t, ts); len(ids) != 0 {
		t.Fatalf("queue holds %v after a failed write", ids)
	}
	// The session goes on; a create failure is also temporary.
	ts.spool.SetCreateHook(func(string) (io.WriteCloser, error) { return nil, syscall.ENOSPC })
	cl.cmd("MAIL FROM:<sender@remote.test>", "250 2.1.0")
	cl.cmd("RCPT TO:<alice@example.org>", "250 2.1.5")
	cl.cmd("DATA", "452 4.3.1")
}

func TestQueueFullGivesTemporaryError(t *testing.T) {
	ts := newTestServer(t, func(c *config.Config) { c.Queue.MaxMessages = 1 })
	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO client.remote.test", "250 ")
	sendMessage(cl, "a@remote.test", []string{"alice@example.org"}, "Subject: 1\r\n\r\nx\r\n")
	cl.cmd("MAIL FROM:<a@remote.test>", "452 4.3.1")
}

// Law 2: relay is granted by who the client is, never by what it says.
func TestLaw2Relay(t *testing.T) {
	ts := newTestServer(t, func(c *config.Config) { c.Limits.MaxErrors = 100 })
	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO mx.example.org", "250 ") // claims to be us: grants nothing
	cl.cmd("MAIL FROM:<someone@remote.test>", "250 2.1.0")
	for _, rcpt := range []string{
		"<victim@remote.test>",
		"<user%remote.test@example.org>",
		"<remote.test!user@example.org>",
		"<@example.org:user@remote.test>",
		`<"user@remote.test"@example.org>`,
		"<user@[192.0.2.1]>",
		"<user@[127.0.0.1]>",
		"<VICTIM@REMOTE.TEST>",
		"<user@example.org.remote.test>",
		"<user@sub.example.org>",
	} {
		cl.send("RCPT TO:" + rcpt)
		if r := cl.reply(); !strings.HasPrefix(r[len(r)-1], "5") {
			t.Errorf("RCPT TO:%s got %q, want a 5xx", rcpt, r)
		}
	}
}

func TestRelayDeniedReplyAndLog(t *testing.T) {
	ts := newTestServer(t, nil)
	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO client.remote.test", "250 ")
	cl.cmd("MAIL FROM:<someone@remote.test>", "250 2.1.0")
	r := cl.cmd("RCPT TO:<victim@other.test>", "554 5.7.1")
	// Law 4: the reply names the connection id, the log names the rule.
	if !strings.Contains(r, "[c") {
		t.Errorf("reply %q carries no connection id", r)
	}
	if !strings.Contains(ts.logs.String(), `"rule":"relay.denied"`) {
		t.Errorf("no decision log line with the rule:\n%s", ts.logs.String())
	}
}

func TestForgedLocalSenderRejected(t *testing.T) {
	ts := newTestServer(t, nil)
	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO client.remote.test", "250 ")
	cl.cmd("MAIL FROM:<alice@example.org>", "550 5.7.1")
}

func TestTrustedNetworkMayRelay(t *testing.T) {
	ts := newTestServer(t, func(c *config.Config) { c.TrustedNetworks = []string{"127.0.0.1/32"} })
	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO client.remote.test", "250 ")
	sendMessage(cl, "app@example.org", []string{"friend@remote.test"}, "Subject: trusted\r\n\r\nx\r\n")
}

func TestRelayDomainAccepted(t *testing.T) {
	ts := newTestServer(t, func(c *config.Config) { c.RelayDomains = []string{"partner.test"} })
	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO client.remote.test", "250 ")
	sendMessage(cl, "a@remote.test", []string{"someone@partner.test"}, "Subject: backup mx\r\n\r\nx\r\n")
}

// Law 3: an unknown local user is refused at RCPT, never bounced later.
func TestLaw3UnknownUserRejectedAtRcpt(t *testing.T) {
	ts := newTestServer(t, nil)
	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO client.remote.test", "250 ")
	cl.cmd("MAIL FROM:<a@remote.test>", "250 2.1.0")
	cl.cmd("RCPT TO:<nobody@example.org>", "550 5.1.1")
	cl.cmd("RCPT TO:<postmaster@example.org>", "250 2.1.5") // alias
	cl.cmd("DATA", "354")
	cl.raw("Subject: x\r\n\r\nx\r\n.\r\n")
	cl.expect("250 2.0.0")
	ids := queued(t, ts)
	env, _ := readQueued(t, ts, ids[0])
	if env.Recipients[0].Account != "alice@example.org" {
		t.Fatalf("alias resolved to %q", env.Recipients[0].Account)
	}
}

// Law 5: bounds.
func TestLaw5Bounds(t *testing.T) {
	ts := newTestServer(t, func(c *config.Config) {
		c.Limits.MaxMessageSize = 2048
		c.Limits.MaxRecipients = 2
		c.Limits.MaxLineLength = 600
	})
	cl := ts.dial(t, RoleMX)
	ehlo := cl.cmd("EHLO client.remote.test", "250 ")
	if !strings.Contains(ehlo, "SIZE 2048") {
		t.Errorf("EHLO does not advertise the size limit: %q", ehlo)
	}
	cl.cmd("MAIL FROM:<a@remote.test> SIZE=999999", "552 5.3.4")
	cl.cmd("MAIL FROM:<a@remote.test>", "250 2.1.0")
	cl.cmd("RCPT TO:<alice@example.org>", "250 2.1.5")
	cl.cmd("RCPT TO:<bob@example.org>", "250 2.1.5")
	cl.cmd("RCPT TO:<postmaster@example.org>", "452 4.5.3")
	cl.cmd("DATA", "354")
	cl.raw("Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("y", 70)+"\r\n", 100) + ".\r\n")
	cl.expect("552 5.3.4")
	if ids := queued(t, ts); len(ids) != 0 {
		t.Fatalf("oversize message queued: %v", ids)
	}
	cl.cmd("NOOP", "250 2.0.0") // still in step after the refused DATA

	cl2 := ts.dial(t, RoleMX)
	cl2.send(strings.Repeat("A", 100000))
	cl2.expect("500 5.5.2")
	cl2.closed()
}

func TestTooManyErrorsCloses(t *testing.T) {
	ts := newTestServer(t, func(c *config.Config) { c.Limits.MaxErrors = 3 })
	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO client.remote.test", "250 ")
	cl.cmd("MAIL FROM:<a@remote.test>", "250 2.1.0")
	cl.cmd("RCPT TO:<x1@example.org>", "550 5.1.1")
	cl.cmd("RCPT TO:<x2@example.org>", "550 5.1.1")
	cl.send("RCPT TO:<x3@example.org>")
	cl.expect("550 5.1.1")
	cl.expect("421 4.7.0")
	cl.closed()
}

func TestGarbageAndNUL(t *testing.T) {
	ts := newTestServer(t, nil)
	cl := ts.dial(t, RoleMX)
	cl.cmd("\x00\x01\x02garbage", "500 5.5.2")
	cl.cmd("HELO\x00x", "500 5.5.2")
	cl.cmd("FOOBAR", "500 5.5.2")
	cl.cmd("EHLO ok.remote.test", "250 ")
}

func TestHTTPVerbCloses(t *testing.T) {
	ts := newTestServer(t, nil)
	cl := ts.dial(t, RoleMX)
	cl.send("POST / HTTP/1.1")
	cl.closed()
}

// SMTP smuggling: "<LF>.<CRLF>" must not end the data, and a message with a
// bare LF is refused at the real end, with the smuggled command unexecuted.
func TestBareLFSmuggling(t *testing.T) {
	ts := newTestServer(t, nil)
	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO client.remote.test", "250 ")
	cl.cmd("MAIL FROM:<a@remote.test>", "250 2.1.0")
	cl.cmd("RCPT TO:<alice@example.org>", "250 2.1.5")
	cl.cmd("DATA", "354")
	cl.raw("Subject: smuggle\r\n\r\nhello\n.\r\nMAIL FROM:<admin@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nsmuggled\r\n.\r\n")
	cl.expect("554 5.5.2")
	cl.cmd("NOOP", "250 2.0.0")
	if ids := queued(t, ts); len(ids) != 0 {
		t.Fatalf("smuggled or bare-LF message queued: %v", ids)
	}
	// A bare CR is refused as well.
	cl.cmd("MAIL FROM:<a@remote.test>", "250 2.1.0")
	cl.cmd("RCPT TO:<alice@example.org>", "250 2.1.5")
	cl.cmd("DATA", "354")
	cl.raw("Subject: cr\r\n\r\nhello\r.\r\n.\r\n")
	cl.expect("554 5.5.2")
}

func TestPipelining(t *testing.T) {
	ts := newTestServer(t, nil)
	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO client.remote.test", "250 ")
	cl.raw("MAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<nobody@example.org>\r\nDATA\r\n")
	cl.expect("250 2.1.0")
	cl.expect("250 2.1.5")
	cl.expect("550 5.1.1")
	cl.expect("354")
	cl.raw("Subject: p\r\n\r\nx\r\n.\r\nQUIT\r\n")
	cl.expect("250 2.0.0")
	cl.expect("221 2.0.0")
}

// Law 7: VRFY and EXPN disclose nothing; no version; AUTH only over TLS
// and never on MX.
func TestLaw7Defaults(t *testing.T) {
	ts := newTestServer(t, nil)
	cl := ts.dial(t, RoleMX)
	ehlo := cl.cmd("EHLO client.remote.test", "250 ")
	if strings.Contains(ehlo, "AUTH") {
		t.Errorf("MX offers AUTH: %q", ehlo)
	}
	if !strings.Contains(ehlo, "STARTTLS") {
		t.Errorf("MX does not offer STARTTLS: %q", ehlo)
	}
	a := cl.cmd("VRFY alice", "252 2.5.0")
	b := cl.cmd("VRFY nobody", "252 2.5.0")
	if a != b {
		t.Errorf("VRFY answers differ: %q vs %q", a, b)
	}
	cl.cmd("EXPN staff", "502 5.5.1")
	cl.cmd("AUTH PLAIN "+plainAuth("alice@example.org", testPassword), "502 5.5.1")

	sub := ts.dial(t, RoleSubmission)
	ehlo = sub.cmd("EHLO client.remote.test", "250 ")
	if strings.Contains(ehlo, "AUTH") {
		t.Errorf("submission offers AUTH before TLS: %q", ehlo)
	}
	sub.cmd("AUTH PLAIN "+plainAuth("alice@example.org", testPassword), "538 5.7.11")
	sub.cmd("MAIL FROM:<alice@example.org>", "530 5.7.0")
}

func TestSubmissionAuthPlainAndLogin(t *testing.T) {
	ts := newTestServer(t, nil)
	cl := ts.dial(t, RoleSubmission)
	cl.cmd("EHLO client.remote.test", "250 ")
	cl.starttls()
	ehlo := cl.cmd("EHLO client.remote.test", "250 ")
	if !strings.Contains(ehlo, "AUTH PLAIN LOGIN") {
		t.Fatalf("no AUTH after STARTTLS: %q", ehlo)
	}
	cl.cmd("AUTH PLAIN "+plainAuth("alice@example.org", "wrong password"), "535 5.7.8")
	cl.cmd("AUTH PLAIN "+plainAuth("alice@example.org", testPassword), "235 2.7.0")
	cl.cmd("MAIL FROM:<bob@example.org>", "553 5.7.1") // not alice's address
	cl.cmd("MAIL FROM:<postmaster@example.org>", "250 2.1.0")
	cl.cmd("RCPT TO:<friend@remote.test>", "250 2.1.5")
	cl.cmd("DATA", "354")
	cl.raw("From: postmaster@example.org\r\nSubject: out\r\n\r\nx\r\n.\r\n")
	cl.expect("250 2.0.0")
	ids := queued(t, ts)
	env, body := readQueued(t, ts, ids[0])
	if env.Origin != "authenticated" || env.AuthUser != "alice@example.org" || env.Recipients[0].Account != "" {
		t.Errorf("envelope %+v", env)
	}
	if !strings.Contains(body, "with ESMTPSA id") || !strings.Contains(body, "(authenticated user alice@example.org)") {
		t.Errorf("Received line lacks ESMTPSA / user:\n%s", body)
	}
	if strings.Contains(ts.logs.String(), testPassword) || strings.Contains(ts.logs.String(), plainAuth("alice@example.org", testPassword)) {
		t.Fatal("password or AUTH payload in the logs")
	}

	sm := ts.dial(t, RoleSMTPS)
	sm.cmd("EHLO client.remote.test", "250 ")
	sm.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6")
	sm.cmd(b64("bob@example.org"), "334 UGFzc3dvcmQ6")
	sm.cmd(b64(testPassword), "235 2.7.0")
	sm.cmd("MAIL FROM:<bob@example.org>", "250 2.1.0")
}

func TestAuthThrottled(t *testing.T) {
	ts := newTestServer(t, func(c *config.Config) { c.Limits.MaxErrors = 100 })
	// The test server's throttle refuses after 10 failures (1 ms delays).
	cl := ts.dial(t, RoleSMTPS)
	cl.cmd("EHLO client.remote.test", "250 ")
	for i := 0; i < 10; i++ {
		cl.cmd("AUTH PLAIN "+plainAuth("alice@example.org", "guess"), "535 5.7.8")
	}
	// Even the right password is refused now: the throttle bites first.
	cl.cmd("AUTH PLAIN "+plainAuth("alice@example.org", testPassword), "454 4.7.0")
}

func TestStartTLSInjectionRefused(t *testing.T) {
	ts := newTestServer(t, nil)
	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO client.remote.test", "250 ")
	cl.raw("STARTTLS\r\nMAIL FROM:<injected@remote.test>\r\n")
	cl.expect("554 5.5.1")
	cl.closed()
}

func TestShutdownTellsIdleClients(t *testing.T) {
	ts := newTestServer(t, nil)
	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO client.remote.test", "250 ")
	go func() {
		time.Sleep(100 * time.Millisecond)
		ts.srv.Shutdown(t.Context())
	}()
	cl.expect("421 4.3.2")
}

// A client in the middle of DATA finishes its message during shutdown.
func TestShutdownLetsDataFinish(t *testing.T) {
	ts := newTestServer(t, nil)
	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO client.remote.test", "250 ")
	cl.cmd("MAIL FROM:<a@remote.test>", "250 2.1.0")
	cl.cmd("RCPT TO:<alice@example.org>", "250 2.1.5")
	cl.cmd("DATA", "354")
	cl.raw("Subject: drain\r\n\r\nfirst half\r\n")
	done := make(chan error, 1)
	go func() { done <- ts.srv.Shutdown(t.Context()) }()
	time.Sleep(200 * time.Millisecond)
	cl.raw("second half\r\n.\r\n")
	cl.expect("250 2.0.0")
	cl.expect("421 4.3.2")
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, t.Context().Err()) {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown did not finish")
	}
	if len(queued(t, ts)) != 1 {
		t.Fatal("message acknowledged during shutdown is not queued")
	}
}

func TestConnectionsPerIP(t *testing.T) {
	ts := newTestServer(t, func(c *config.Config) { c.Limits.MaxConnectionsPerIP = 2 })
	ts.dial(t, RoleMX)
	ts.dial(t, RoleMX)
	c, err := dialRaw(ts.addrs[RoleMX])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 200)
	n, _ := c.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "421 4.7.0") {
		t.Fatalf("third connection got %q", buf[:n])
	}
}

// A client that sends commands but never reads the replies must not hold
// its connection forever: writes time out like reads (law 5).
func TestClientNotReadingIsDisconnected(t *testing.T) {
	ts := newTestServer(t, func(c *config.Config) {
		c.Limits.CommandTimeout = config.Duration{Duration: time.Second}
		c.Limits.MaxCommands = 1 << 30
	})
	cl := ts.dial(t, RoleMX) // the greeting is read: the session is registered
	c := cl.c
	c.SetDeadline(time.Now().Add(30 * time.Second))
	const n = 200000
	go func() {
		c.Write([]byte(strings.Repeat("EHLO client.remote.test\r\n", n)))
	}()
	// Never read: the server's writes block, and must time out.
	deadline := time.Now().Add(15 * time.Second)
	for {
		if ts.srv.openConns() == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a client that does not read still holds its connection after 15 s (command_timeout 1s)")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A message being received counts against queue.max_messages, so
// concurrent sessions cannot overshoot the bound together.
func TestQueueBoundCountsMessagesInFlight(t *testing.T) {
	ts := newTestServer(t, func(c *config.Config) { c.Queue.MaxMessages = 1 })
	a := ts.dial(t, RoleMX)
	a.cmd("EHLO a.remote.test", "250 ")
	a.cmd("MAIL FROM:<a@remote.test>", "250 2.1.0")
	a.cmd("RCPT TO:<alice@example.org>", "250 2.1.5")
	a.cmd("DATA", "354")
	b := ts.dial(t, RoleMX)
	b.cmd("EHLO b.remote.test", "250 ")
	b.cmd("MAIL FROM:<b@remote.test>", "452 4.3.1")
	a.raw("Subject: first\r\n\r\nx\r\n.\r\n")
	a.expect("250 2.0.0")
	if n := len(queued(t, ts)); n != 1 {
		t.Fatalf("queue holds %d messages, bound is 1", n)
	}
}
