package scheduler

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"kanmon/internal/testutil/postfix"
)

// startPostfixPeer runs a private Postfix (a real receiving MTA) that is
// the final destination of remote.test: it delivers bob@remote.test into
// its Maildir and rejects every other recipient at RCPT with 550 (user
// unknown in the virtual mailbox table). local_header_rewrite_clients is
// emptied so Postfix treats us as the remote client we are and does not
// add or rewrite headers. Without Postfix the test is skipped (failed
// when CI=true), by the helper.
func startPostfixPeer(t *testing.T) *postfix.Instance {
	t.Helper()
	return postfix.Start(t, postfix.Options{
		Hostname: "mx.remote.test",
		Domain:   "remote.test",
		Delivery: postfix.Maildir,
		MainCF: "virtual_mailbox_maps = inline:{ { bob@remote.test = inbox/ } }\n" +
			"smtpd_reject_unlisted_recipient = yes\n" +
			"unknown_virtual_mailbox_reject_code = 550\n" +
			"local_header_rewrite_clients =\n",
	})
}

// postfixMessages waits until inst's Maildir holds n messages.
func postfixMessages(t *testing.T, inst *postfix.Instance, n int) [][]byte {
	t.Helper()
	var msgs [][]byte
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		if msgs, err = inst.Messages(); err != nil {
			t.Fatal(err)
		}
		if len(msgs) >= n {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("Postfix delivered %d messages, want %d\n%s", len(msgs), n, inst.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kanmonMessage is a message as kanmon's SMTP engine queues it, with our
// Received header on top, and a body that exercises transparency: lines
// starting with dots, a lone dot in text, trailing white space, 8-bit
// text, a line starting with "From " and an empty last line.
func kanmonMessage(subject string) string {
	return "Received: from client.example.org ([192.0.2.7])\r\n" +
		"\tby mx.example.org with ESMTPSA id 01KANMONTEST0001\r\n" +
		"\t(authenticated user alice@example.org)\r\n" +
		"\tfor <bob@remote.test>;\r\n" +
		"\tMon, 02 Jan 2006 15:04:05 +0000\r\n" +
		"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\n" +
		"From: Alice <alice@example.org>\r\n" +
		"To: Bob <bob@remote.test>\r\n" +
		"Subject: " + subject + "\r\n" +
		"Message-Id: <" + subject + "@example.org>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: 8bit\r\n" +
		"X-Kanmon-Test: keep me\r\n" +
		"\r\n" +
		"first line of " + subject + "\r\n" +
		".a line starting with a dot\r\n" +
		"..two dots\r\n" +
		".\r\n" +
		"trailing white space   \t\r\n" +
		"From the beginning of a line\r\n" +
		"Grüße, 8-bit text ✓\r\n" +
		"\r\n"
}

// TestDeliverToPostfix: a real receiving MTA (a private Postfix, the
// final destination for remote.test) gets an authenticated user's message
// through a static route. The delivered file is Postfix's own trace
// headers (Return-Path with our envelope sender, Delivered-To, its
// Received naming our EHLO name) followed by our message exactly: every
// header, our Received first, and the body byte for byte (the Maildir
// stores LF line ends, so CRLF is compared as LF). Our queue empties and
// the log says delivered.
func TestDeliverToPostfix(t *testing.T) {
	inst := startPostfixPeer(t)
	e := newEnv(t, func(s *Scheduler) { rem(s).Routes["remote.test"] = inst.Addr })
	msg := kanmonMessage("to-postfix")
	id := e.submit(t, ownUser("bob@remote.test"), msg)
	waitFor(t, "queue to empty", e.queueEmpty)
	got := postfixMessages(t, inst, 1)
	if len(got) != 1 {
		t.Fatalf("Postfix delivered %d messages, want 1", len(got))
	}
	want := []byte(strings.ReplaceAll(msg, "\r\n", "\n"))
	if !bytes.HasSuffix(got[0], want) {
		t.Fatalf("delivered message does not end with ours byte for byte\ngot:\n%q\nwant suffix:\n%q", got[0], want)
	}
	trace := string(got[0][:len(got[0])-len(want)])
	for _, w := range []string{"Return-Path: <alice@example.org>\n", "Delivered-To: bob@remote.test\n", "Received: from mx.example.org"} {
		if !strings.Contains(trace, w) {
			t.Errorf("Postfix's trace headers lack %q:\n%s", w, trace)
		}
	}
	// Our Received header comes right after Postfix's own, untouched.
	if i := strings.Index(string(got[0]), "Received: from client.example.org ([192.0.2.7])\n\tby mx.example.org"); i != len(trace) {
		t.Errorf("our Received header is at offset %d, want %d (right after Postfix's trace)", i, len(trace))
	}
	if !e.logs.Has("delivery", func(l map[string]any) bool {
		return l["queue_id"] == id && l["rcpt"] == "bob@remote.test" && l["result"] == "delivered" &&
			l["mx"] == "127.0.0.1" && strings.HasPrefix(l["reply"].(string), "250 ")
	}) {
		t.Errorf("no delivery line with result delivered for bob@remote.test")
	}
	if n := len(e.maildir("alice@example.org")); n != 0 {
		t.Errorf("alice got %d messages (a DSN?)", n)
	}
}

// TestPostfixUnknownUserBounces: Postfix rejects an unknown recipient at
// RCPT with 550 5.1.1; our authenticated user gets an RFC 3464 DSN in her
// Maildir for that recipient, while the known recipient of the same
// message is delivered by Postfix; the queue empties.
func TestPostfixUnknownUserBounces(t *testing.T) {
	inst := startPostfixPeer(t)
	e := newEnv(t, func(s *Scheduler) { rem(s).Routes["remote.test"] = inst.Addr })
	id := e.submit(t, ownUser("nobody@remote.test", "bob@remote.test"), kanmonMessage("postfix-bounce"))
	waitFor(t, "queue to empty", e.queueEmpty)
	var dsn string
	waitFor(t, "the DSN in alice's Maildir", func() bool {
		if m := e.maildir("alice@example.org"); len(m) == 1 {
			dsn = m[0]
			return true
		}
		return false
	})
	for _, want := range []string{
		"Return-Path: <>\r\n", "multipart/report", "report-type=delivery-status", "message/delivery-status",
		"Final-Recipient: rfc822; nobody@remote.test", "Action: failed", "Status: 5.1.1",
		"Diagnostic-Code: smtp; 550 5.1.1", "User unknown", "text/rfc822-headers", "Subject: postfix-bounce",
		"X-Kanmon-Queue-ID: " + id,
	} {
		if !strings.Contains(dsn, want) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn)
		}
	}
	if strings.Contains(dsn, "Final-Recipient: rfc822; bob@") {
		t.Errorf("DSN reports the recipient that was delivered")
	}
	if !e.logs.Has("delivery", func(l map[string]any) bool {
		return l["queue_id"] == id && l["rcpt"] == "nobody@remote.test" && l["result"] == "failed" &&
			strings.HasPrefix(l["reply"].(string), "550 5.1.1")
	}) {
		t.Errorf("no failed delivery line with Postfix's 550 5.1.1 for nobody@remote.test")
	}
	if !e.logs.Has("queue", func(l map[string]any) bool { return l["queue_id"] == id && l["op"] == "bounced" }) {
		t.Errorf("no queue op=bounced line")
	}
	got := postfixMessages(t, inst, 1)
	if len(got) != 1 || !bytes.Contains(got[0], []byte("Delivered-To: bob@remote.test\n")) ||
		!bytes.Contains(got[0], []byte("first line of postfix-bounce")) {
		t.Errorf("Postfix delivered %d messages, want 1 for bob:\n%s", len(got), bytes.Join(got, []byte("\n----\n")))
	}
}
