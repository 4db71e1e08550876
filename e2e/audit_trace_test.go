package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAuditOwnServer: `kanmon audit` against kanmon in its default
// configuration finds nothing of severity high or above (exit 0).
func TestAuditOwnServer(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{})
	out, code := runKanmon(t, s.Dir, "", "audit", s.MX, "--domain", domain, "--no-dns", "--insecure-tls-ok", "--json")
	if code != 0 {
		t.Fatalf("audit exit %d, want 0:\n%s", code, out)
	}
	var rep struct {
		Findings []struct {
			ID       string `json:"id"`
			Severity string `json:"severity"`
		} `json:"findings"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &rep); err != nil {
		t.Fatalf("audit --json output: %v\n%s", err, out)
	}
	for _, f := range rep.Findings {
		if f.Severity == "high" || f.Severity == "critical" {
			t.Errorf("finding %s of severity %s against kanmon's defaults", f.ID, f.Severity)
		}
	}
	// The battery really ran: the server logged relay refusals.
	s.Stop(t) // flush the buffered log
	found := false
	for _, l := range s.Logs(t) {
		if l.str("msg") == "decision" && strings.HasPrefix(l.str("rule"), "relay.") {
			found = true
		}
	}
	if !found {
		t.Error("no relay decision in the server log: the audit did not try to relay")
	}
}

// TestTraceMessage: after a delivery and a refusal on one connection,
// `kanmon trace` rebuilds the story from the server's log by Message-ID,
// queue id and connection id.
func TestTraceMessage(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{})
	c := dial(t, s.MX)
	c.Ehlo("client.remote.test")
	c.Expect("MAIL FROM:<x@remote.test>", 250, "2.1.0")
	c.Expect("RCPT TO:<nobody@"+domain+">", 550, "5.1.1")
	c.Expect("RCPT TO:<"+alice+">", 250, "2.1.5")
	msgID := newMessageID(t)
	r := c.Data(message("x@remote.test", alice, "trace me", msgID, "hello\n"))
	checkReply(t, "end of DATA", r, 250, "2.0.0")
	c.Expect("QUIT", 221, "2.0.0")
	waitMaildir(t, s.Maildir(alice), msgID)
	l := s.WaitLog(t, "delivery", func(l logLine) bool { return l.str("msg") == "delivery" && l.str("result") == "delivered" })
	qid := l.str("queue_id")
	s.WaitLog(t, "disconnect", func(l logLine) bool { return l.str("msg") == "disconnect" })
	s.Stop(t) // flush the buffered log
	var conn string
	for _, l := range s.Logs(t) {
		if l.str("msg") == "queued" && l.str("queue_id") == qid {
			conn = l.str("conn")
		}
	}
	if conn == "" {
		t.Fatalf("no queued line for %s", qid)
	}
	for _, id := range []string{msgID, qid, conn} {
		out, code := runKanmon(t, s.Dir, "", "trace", id, "--log", s.LogPath)
		if code != 0 {
			t.Fatalf("trace %s: exit %d\n%s", id, code, out)
		}
		for _, want := range []string{conn, qid, "rcpt.unknown", "delivered", "127.0.0.1"} {
			if !strings.Contains(out, want) {
				t.Errorf("trace %s lacks %q:\n%s", id, want, out)
			}
		}
	}
}

// TestTraceReceivedOwnMessage: the Received chain of a delivered message
// marks our hop and names the sending client as the origin.
func TestTraceReceivedOwnMessage(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{})
	c := dial(t, s.MX)
	c.Ehlo("client.remote.test")
	c.Expect("MAIL FROM:<x@remote.test>", 250, "2.1.0")
	c.Expect("RCPT TO:<"+alice+">", 250, "2.1.5")
	msgID := newMessageID(t)
	checkReply(t, "end of DATA", c.Data(message("x@remote.test", alice, "received", msgID, "hi\n")), 250, "2.0.0")
	got := waitMaildir(t, s.Maildir(alice), msgID)
	f := filepath.Join(t.TempDir(), "msg.eml")
	if err := os.WriteFile(f, []byte(got), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := runKanmon(t, s.Dir, "", "trace", "--received", f, "--ours", hostname)
	if code != 0 {
		t.Fatalf("trace --received: exit %d\n%s", code, out)
	}
	if !strings.Contains(out, "[ours") || !strings.Contains(out, "Likely origin: [127.0.0.1] (HELO client.remote.test)") {
		t.Errorf("trace --received output:\n%s", out)
	}
}
