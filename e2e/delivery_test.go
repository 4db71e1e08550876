package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSwaksToLocalUser: a peer sends with swaks to alice on the MX port;
// the message reaches her Maildir with its own headers and body intact,
// plus exactly one Received: line of ours and one Return-Path:.
func TestSwaksToLocalUser(t *testing.T) {
	t.Parallel()
	needTool(t, "swaks")
	s := startServer(t, options{})
	msgID := newMessageID(t)
	out, code := swaks(t, "--server", s.MX, "--from", "sender@remote.test", "--to", alice,
		"--header", "Subject: hello from swaks", "--header", "Message-Id: "+msgID,
		"--body", "first line of the body\nsecond line of the body")
	if code != 0 {
		t.Fatalf("swaks exit status %d:\n%s", code, out)
	}
	rs := swaksReplies(out)
	if !hasReply(rs, 250, "2.0.0") {
		t.Fatalf("no 250 2.0.0 after DATA:\n%s", out)
	}

	got := waitMaildir(t, s.Maildir(alice), msgID)
	for _, want := range []string{
		"Subject: hello from swaks\r\n",
		"Message-Id: " + msgID + "\r\n",
		"From: sender@remote.test\r\n",
		"\r\n\r\nfirst line of the body\r\nsecond line of the body\r\n",
		"Return-Path: <sender@remote.test>\r\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("delivered message lacks %q:\n%s", want, got)
		}
	}
	if !strings.HasPrefix(got, "Return-Path: <sender@remote.test>\r\n") {
		t.Errorf("Return-Path is not the first line:\n%s", got)
	}
	if n := strings.Count(got, "Return-Path:"); n != 1 {
		t.Errorf("%d Return-Path: lines, want exactly 1:\n%s", n, got)
	}
	rcv := regexp.MustCompile(`(?m)^Received: from client\.remote\.test \(\[127\.0\.0\.1\]\)\r\n\tby mx\.example\.org with ESMTP id q[0-9a-z]+`)
	if !rcv.MatchString(got) {
		t.Errorf("no Received: line of ours (from client.remote.test ([127.0.0.1]) by mx.example.org with ESMTP id ...):\n%s", got)
	}
	if n := strings.Count(got, "by "+hostname); n != 1 {
		t.Errorf("%d Received: lines by %s, want exactly 1:\n%s", n, hostname, got)
	}
	if n := len(regexp.MustCompile(`(?m)^Received:`).FindAllString(got, -1)); n != 1 {
		t.Errorf("%d Received: lines, want exactly 1:\n%s", n, got)
	}
	// The header block ends before the body, and our lines are in it.
	head, _, ok := strings.Cut(got, "\r\n\r\n")
	if !ok || !strings.Contains(head, "Received:") || !strings.Contains(head, "Subject:") {
		t.Errorf("header section malformed:\n%s", got)
	}
	if n := len(maildirFind(s.Maildir(alice), msgID)); n != 1 {
		t.Errorf("%d copies delivered, want 1", n)
	}
}

// writeCRLF writes a message file for curl --upload-file.
func writeCRLF(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// curlQueueIDs returns the queue ids in curl -v output ("< 250 2.0.0 OK queued as q...").
func curlQueueIDs(out string) []string {
	var ids []string
	for _, m := range queuedRE.FindAllStringSubmatch(out, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

// TestCurl sends with curl: plain SMTP to the MX port, implicit TLS with
// AUTH on smtps to a local and a remote recipient, and STARTTLS with AUTH
// on submission.
func TestCurl(t *testing.T) {
	t.Parallel()
	needTool(t, "curl")
	s := startServer(t, options{})

	t.Run("mx", func(t *testing.T) {
		msgID := newMessageID(t)
		f := writeCRLF(t, "msg.txt", message("x@remote.test", alice, "curl over plain SMTP", msgID, "hello from curl\n"))
		out, code := curl(t, "-v", "--url", "smtp://"+s.MX, "--mail-from", "x@remote.test", "--mail-rcpt", alice, "--upload-file", f)
		if code != 0 {
			t.Fatalf("curl exit status %d:\n%s", code, out)
		}
		if !strings.Contains(out, "< 250 2.0.0 OK queued as q") {
			t.Fatalf("no 250 2.0.0 at end of data:\n%s", out)
		}
		got := waitMaildir(t, s.Maildir(alice), msgID)
		if !strings.Contains(got, "hello from curl\r\n") || !strings.Contains(got, "with ESMTP id") {
			t.Errorf("delivered message:\n%s", got)
		}
	})

	t.Run("smtps", func(t *testing.T) {
		msgID := newMessageID(t)
		f := writeCRLF(t, "msg.txt", message(alice, "friend@remote.test, "+alice, "curl over smtps", msgID, "hello over implicit TLS\n"))
		out, code := curl(t, "-v", "--url", "smtps://"+s.SMTPS, "-k", "--user", alice+":"+alicePassword,
			"--mail-from", alice, "--mail-rcpt", alice, "--mail-rcpt", "friend@remote.test", "--upload-file", f)
		if code != 0 {
			t.Fatalf("curl exit status %d:\n%s", code, out)
		}
		ids := curlQueueIDs(out)
		if len(ids) != 1 {
			t.Fatalf("want one queue id in curl's transcript, got %v:\n%s", ids, out)
		}
		got := waitMaildir(t, s.Maildir(alice), msgID)
		if !strings.Contains(got, "with ESMTPSA id") {
			t.Errorf("local copy lacks 'with ESMTPSA':\n%s", got)
		}
		// The remote recipient keeps the message in the queue (remote
		// delivery comes later).
		q, err := os.ReadFile(s.QueueMsg(ids[0]))
		if err != nil {
			t.Fatalf("message for the remote recipient is not in the queue: %v", err)
		}
		if !strings.Contains(string(q), "friend@remote.test") || !strings.Contains(string(q), msgID) {
			t.Errorf("queue file %s lacks the remote recipient or the message:\n%s", ids[0], q)
		}
	})

	t.Run("submission-starttls", func(t *testing.T) {
		msgID := newMessageID(t)
		f := writeCRLF(t, "msg.txt", message(alice, "friend@remote.test", "curl over submission", msgID, "hello over STARTTLS\n"))
		out, code := curl(t, "-v", "--url", "smtp://"+s.Submission, "--ssl-reqd", "-k", "--user", alice+":"+alicePassword,
			"--mail-from", alice, "--mail-rcpt", "friend@remote.test", "--upload-file", f)
		if code != 0 {
			t.Fatalf("curl exit status %d:\n%s", code, out)
		}
		ids := curlQueueIDs(out)
		if len(ids) != 1 {
			t.Fatalf("want one queue id in curl's transcript, got %v:\n%s", ids, out)
		}
		q, err := os.ReadFile(s.QueueMsg(ids[0]))
		if err != nil {
			t.Fatalf("message is not in the queue: %v", err)
		}
		if !strings.Contains(string(q), "with ESMTPSA id "+ids[0]) || !strings.Contains(string(q), msgID) {
			t.Errorf("queue file lacks our ESMTPSA Received line or the message:\n%s", q)
		}
	})
}

// TestAliasAndDotStuffing: mail for an alias (any case) reaches the
// account, and dot-stuffed lines arrive unstuffed.
func TestAliasAndDotStuffing(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{})
	c := dial(t, s.MX)
	c.Ehlo("client.remote.test")
	c.Expect("MAIL FROM:<x@remote.test>", 250, "2.1.0")
	c.Expect("RCPT TO:<PostMaster@Example.ORG>", 250, "2.1.5")
	msgID := newMessageID(t)
	// On the wire: "..leading dot", "...", "..", "end".
	r := c.Data(message("x@remote.test", "postmaster@example.org", "dots", msgID, "") +
		"..leading dot\r\n...\r\n..\r\nend")
	checkReply(t, "end of DATA", r, 250, "2.0.0")
	c.Expect("QUIT", 221, "2.0.0")
	got := waitMaildir(t, s.Maildir(alice), msgID)
	if !strings.Contains(got, "\r\n\r\n.leading dot\r\n..\r\n.\r\nend\r\n") {
		t.Errorf("dot-stuffing not undone exactly once:\n%q", got)
	}
	if !strings.Contains(got, "Delivered-To: "+alice+"\r\n") {
		t.Errorf("no Delivered-To: %s:\n%s", alice, got)
	}
}

// TestPostmasterWithoutDomain: RFC 5321 section 4.5.1 says the special
// case "RCPT TO:<Postmaster>" (no domain) MUST be supported; it reaches
// the postmaster of the server's domain (here an alias of alice).
func TestPostmasterWithoutDomain(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{})
	c := dial(t, s.MX)
	c.Ehlo("client.remote.test")
	c.Expect("MAIL FROM:<x@remote.test>", 250, "2.1.0")
	c.Expect("RCPT TO:<Postmaster>", 250, "2.1.5")
	msgID := newMessageID(t)
	r := c.Data(message("x@remote.test", "Postmaster", "to the postmaster", msgID, "hello postmaster\n"))
	checkReply(t, "end of DATA", r, 250, "2.0.0")
	waitMaildir(t, s.Maildir(alice), msgID)
}

// TestMsmtp: a mail user agent's sendmail replacement submits through
// submission with STARTTLS and AUTH, and through smtps.
func TestMsmtp(t *testing.T) {
	t.Parallel()
	bin := needTool(t, "msmtp")
	s := startServer(t, options{})
	pwFile := writeCRLF(t, "pw", alicePassword+"\n")
	for _, tc := range []struct {
		name, addr string
		tls        []string
	}{
		{"submission", s.Submission, []string{"--tls=on", "--tls-starttls=on"}},
		{"smtps", s.SMTPS, []string{"--tls=on", "--tls-starttls=off"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, port, _ := strings.Cut(tc.addr, ":")
			msgID := newMessageID(t)
			args := append([]string{"--host=" + host, "--port=" + port, "--tls-certcheck=off", "--auth=plain",
				"--user=" + alice, "--passwordeval=cat " + pwFile, "--from=" + alice, "--timeout=20"}, tc.tls...)
			args = append(args, alice, "friend@remote.test")
			cmd := exec.Command(bin, args...)
			cmd.Stdin = strings.NewReader(strings.ReplaceAll(message(alice, "friend@remote.test", "msmtp "+tc.name, msgID, "sent with msmtp\n"), "\r\n", "\n"))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("msmtp: %v\n%s", err, out)
			}
			got := waitMaildir(t, s.Maildir(alice), msgID)
			if !strings.Contains(got, "with ESMTPSA id") || !strings.Contains(got, "sent with msmtp\r\n") {
				t.Errorf("delivered message:\n%s", got)
			}
		})
	}
}
