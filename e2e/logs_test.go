package e2e

import (
	"encoding/base64"
	"strings"
	"testing"
)

// checkMessageTrail asserts the documented log trail of one accepted
// message: connect, cmd, queued (queue_id, message_id) and delivery lines
// that all carry the same conn.
func checkMessageTrail(t *testing.T, s *server, msgID, listener string) {
	t.Helper()
	q := s.WaitLog(t, "queued with message_id "+msgID, func(l logLine) bool {
		return l.str("msg") == "queued" && l.str("message_id") == msgID
	})
	conn, qid := q.str("conn"), q.str("queue_id")
	if conn == "" || qid == "" {
		t.Fatalf("queued line without conn or queue_id: %v", q)
	}
	for _, k := range []string{"from", "rcpts", "size"} {
		if _, ok := q[k]; !ok {
			t.Errorf("queued line lacks %s: %v", k, q)
		}
	}
	if q.str("listener") != listener {
		t.Errorf("queued line listener %q, want %q", q.str("listener"), listener)
	}
	s.WaitLog(t, "delivery of "+qid, func(l logLine) bool {
		return l.str("msg") == "delivery" && l.str("queue_id") == qid && l.str("conn") == conn && l.str("result") == "delivered"
	})
	var connect, cmds, disconnect int
	for _, l := range s.Logs(t) {
		if l.str("conn") != conn {
			continue
		}
		switch l.str("msg") {
		case "connect":
			connect++
			if l.str("remote") == "" || l.str("listener") != listener {
				t.Errorf("connect line lacks remote or listener: %v", l)
			}
		case "cmd":
			cmds++
		case "disconnect":
			disconnect++
		}
	}
	if connect != 1 || cmds < 4 {
		t.Errorf("conn %s: %d connect lines and %d cmd lines, want 1 and at least 4 (EHLO, MAIL, RCPT, DATA)", conn, connect, cmds)
	}
	s.WaitLog(t, "disconnect of "+conn, func(l logLine) bool { return l.str("msg") == "disconnect" && l.str("conn") == conn })
}

// TestLogs: one JSON line per event, a trail per message tied by conn,
// and no secret in any line.
func TestLogs(t *testing.T) {
	t.Parallel()
	needTool(t, "swaks")
	s := startServer(t, options{})
	const wrongPassword = "Wrong-e2e-Guess-9911"

	mxID := newMessageID(t)
	sendMail(t, s.MX, "x@remote.test", []string{alice}, message("x@remote.test", alice, "log trail", mxID, "hello\n"))

	var subIDs []string
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		id := newMessageID(t)
		subIDs = append(subIDs, id)
		out, code := swaks(t, "--server", s.Submission, "-tls", "--auth", mech, "--auth-user", alice, "--auth-password", alicePassword,
			"--from", alice, "--to", alice, "--header", "Message-Id: "+id)
		if code != 0 {
			t.Fatalf("swaks AUTH %s: exit %d\n%s", mech, code, out)
		}
	}
	out, _ := swaks(t, "--server", s.SMTPS, "--tls-on-connect", "--auth", "PLAIN", "--auth-user", alice,
		"--auth-password", wrongPassword, "--from", alice, "--to", alice)
	if !hasReply(swaksReplies(out), 535, "5.7.8") {
		t.Errorf("wrong password: want 535 5.7.8:\n%s", out)
	}

	// The failed login's lines are flushed too before the log is searched.
	s.WaitLog(t, "failed auth", func(l logLine) bool { return l.str("msg") == "auth" && l["ok"] == false })
	s.WaitLog(t, "smtps disconnect", func(l logLine) bool { return l.str("msg") == "disconnect" && l.str("listener") == "smtps" })
	checkMessageTrail(t, s, mxID, "mx")
	for _, id := range subIDs {
		checkMessageTrail(t, s, id, "submission")
	}

	b64 := base64.StdEncoding.EncodeToString
	secrets := map[string]string{
		"password":                         alicePassword,
		"wrong password":                   wrongPassword,
		"AUTH PLAIN payload":               plainPayload(alice, alicePassword),
		"AUTH PLAIN payload (wrong)":       plainPayload(alice, wrongPassword),
		"AUTH LOGIN password payload":      b64([]byte(alicePassword)),
		"AUTH LOGIN username payload":      b64([]byte(alice)),
		"AUTH PLAIN payload without \\x00": b64([]byte(alice + "\x00" + alicePassword)),
	}
	raw := s.LogRaw(t)
	for what, secret := range secrets {
		if strings.Contains(raw, secret) {
			t.Errorf("the log contains the %s (%q)", what, secret)
		}
	}
	var redacted, authOK, authFailed int
	for _, l := range s.Logs(t) {
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := l[k]; !ok {
				t.Errorf("log line without %s: %v", k, l)
			}
		}
		switch {
		case l.str("msg") == "cmd" && strings.HasPrefix(l.str("line"), "AUTH "):
			if !strings.HasSuffix(l.str("line"), " [redacted]") {
				t.Errorf("AUTH command logged unredacted: %v", l)
			}
			redacted++
		case l.str("msg") == "auth" && l["ok"] == true:
			authOK++
			if l.str("user") != alice {
				t.Errorf("auth line user %q, want %s", l.str("user"), alice)
			}
		case l.str("msg") == "auth" && l["ok"] == false:
			authFailed++
		}
	}
	if redacted != 3 || authOK != 2 || authFailed != 1 {
		t.Errorf("want 3 redacted AUTH cmd lines, 2 successful and 1 failed auth lines; got %d, %d, %d", redacted, authOK, authFailed)
	}
}

// TestLogsRefusalOnce: a refusal leaves exactly one line in the trail,
// the `decision` naming its rule and carrying the reply sent (code,
// enhanced code and text, as docs/logging.md says); it is not logged a
// second time as a `reply`.
func TestLogsRefusalOnce(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{})
	c := dial(t, s.MX)
	c.Ehlo("client.remote.test")
	c.Expect("MAIL FROM:<x@remote.test>", 250, "2.1.0")
	r := c.Expect("RCPT TO:<friend@remote.test>", 554, "5.7.1")
	c.Expect("QUIT", 221, "2.0.0")
	conn := r.ConnID()
	s.WaitLog(t, "disconnect", func(l logLine) bool { return l.str("msg") == "disconnect" && l.str("conn") == conn })
	var decisions, replies int
	for _, l := range s.Logs(t) {
		if l.str("conn") != conn {
			continue
		}
		code, _ := l["code"].(float64)
		switch {
		case l.str("msg") == "decision" && code == 554:
			decisions++
			if l.str("rule") != "relay.denied" || l.str("enhanced") != "5.7.1" ||
				!strings.HasPrefix(l.str("line"), "554 5.7.1 ") || !strings.Contains(l.str("line"), conn) {
				t.Errorf("decision line %v does not carry the rule and the reply sent", l)
			}
		case l.str("msg") == "reply" && code == 554:
			replies++
		}
	}
	if decisions != 1 || replies != 0 {
		t.Fatalf("refusal logged as %d decision and %d reply lines, want exactly one decision", decisions, replies)
	}
}
