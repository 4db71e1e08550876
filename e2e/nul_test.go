package e2e

import (
	"bytes"
	"encoding/base64"
	"os/user"
	"strings"
	"testing"
	"time"

	"kanmon/internal/testutil/postfix"
)

// nulProbes are the NUL smuggling sequences of smtpsmug and SEC Consult's
// scanner, NUL inside a line and NUL in a header. Each message goes on
// with a smuggled transaction before the real end of data.
var nulProbes = map[string]string{
	"crlf-nul-dot":  "Subject: probe\r\n\r\nhello\r\n\x00.\r\n",
	"lf-nul-dot":    "Subject: probe\r\n\r\nhello\n\x00.\r\n",
	"nul-dot-start": "\x00.\r\nSubject: probe\r\n\r\nhello\r\n",
	"nul-in-line":   "Subject: probe\r\n\r\nhel\x00lo\r\n",
	"nul-in-header": "Subject: pro\x00be\r\n\r\nhello\r\n",
}

const smuggledTx = "MAIL FROM:<" + alice + ">\r\nRCPT TO:<victim@remote.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n"

// TestNULSmugglingRefusedAndNeverRelayed: a message with a NUL is refused
// with 554 5.6.0 on MX, submission, SMTPS and the sendmail socket; the
// next hop (Postfix's smtp-sink, routed on loopback) receives nothing of
// it, while a clean message still flows.
func TestNULSmugglingRefusedAndNeverRelayed(t *testing.T) {
	t.Parallel()
	sink := postfix.StartSink(t, "")
	s := sendmailAndRouteServer(t, sink.Addr)
	auth := "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+alice+"\x00"+alicePassword))
	for name, probe := range nulProbes {
		// MX: to a local recipient.
		c := dial(t, s.MX)
		c.Ehlo("client.remote.test")
		c.Expect("MAIL FROM:<probe@remote.test>", 250, "2.1.0")
		c.Expect("RCPT TO:<"+alice+">", 250, "2.1.5")
		checkReply(t, "mx "+name, c.Data(probe+smuggledTx), 554, "5.6.0")
		c.Expect("NOOP", 250, "2.0.0")
		// Submission (STARTTLS + AUTH) and SMTPS: to the relay route.
		sub := dial(t, s.Submission)
		sub.Ehlo("client.remote.test")
		sub.StartTLS()
		ssl := dialTLS(t, s.SMTPS)
		for _, cl := range []*client{sub, ssl} {
			cl.Ehlo("client.remote.test")
			cl.Expect(auth, 235, "2.7.0")
			cl.Expect("MAIL FROM:<"+alice+">", 250, "2.1.0")
			cl.Expect("RCPT TO:<friend@remote.test>", 250, "2.1.5")
			checkReply(t, "relay "+name, cl.Data(probe+smuggledTx), 554, "5.6.0")
		}
		// The sendmail socket: the calling program gets a data error.
		out, code := runSendmail(t, kanmonBin, strings.ReplaceAll(probe, "\r\n", "\n"), "sendmail", "-i", "-C", s.Config, "friend@remote.test")
		if code != 65 || !strings.Contains(out, "554 5.6.0") {
			t.Errorf("sendmail %s: exit %d, want 65 (EX_DATAERR) with the 554 5.6.0 reply:\n%s", name, code, out)
		}
	}
	if ids := s.QueueIDs(t); len(ids) != 0 {
		t.Fatalf("queue holds %v after NUL probes", ids)
	}
	// A clean message still flows to the same peer.
	msgID := newMessageID(t)
	out, code := swaks(t, "--server", s.Submission, "-tls", "--auth", "PLAIN", "--auth-user", alice, "--auth-password", alicePassword,
		"--from", alice, "--to", "friend@remote.test", "--header", "Message-Id: "+msgID, "--header", "Subject: clean")
	if code != 0 {
		t.Fatalf("swaks exit %d:\n%s", code, out)
	}
	deadline := time.Now().Add(deliveryWait)
	for {
		msgs, _ := sink.Messages()
		// The sink writes its copy while we read: a copy without the
		// Message-Id yet may still be growing, so only a second message
		// or the deadline fails the test.
		if len(msgs) > 1 || len(msgs) == 1 && bytes.Contains(msgs[0], []byte(msgID)) {
			if len(msgs) != 1 {
				t.Fatalf("peer received %d messages, want only the clean one", len(msgs))
			}
			for _, m := range msgs {
				if bytes.IndexByte(m, 0) >= 0 || bytes.Contains(m, []byte("smuggled")) {
					t.Fatalf("peer received a NUL or the smuggled text:\n%q", m)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtp-sink never got the clean message\n%s", s.LogTail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := strings.Count(s.LogRaw(t), `"rule":"data.nul"`); n != 4*len(nulProbes) {
		t.Errorf("%d data.nul decision lines, want %d", n, 4*len(nulProbes))
	}
}

// sendmailAndRouteServer starts kanmon with the local socket on (the Unix
// user running the test mapped to alice) and remote.test routed to route.
func sendmailAndRouteServer(t *testing.T, route string) *server {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatalf("no current user: %v", err)
	}
	return startServer(t, options{set: map[string]string{
		"sendmail.enabled": "true",
		"sendmail.users":   `{ "` + u.Username + `" = "` + alice + `" }`,
		"delivery.routes":  `{ "remote.test" = "` + route + `" }`,
	}})
}
