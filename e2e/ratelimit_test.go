package e2e

import (
	"strings"
	"testing"
	"time"
)

// Greylisting through the real binary: the first attempt of a triplet
// gets 451 4.7.1 (rule rcpt.greylist), an early retry too, and a retry
// after the delay 250 — across a restart, so the triplet is in the state
// database. Submission (authenticated) is never greylisted.
func TestGreylisting(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{set: map[string]string{
		"inbound.greylist":        `"on"`,
		"inbound.greylist_delay":  `"3s"`,
		"inbound.greylist_expiry": `"1m"`,
	}})
	attempt := func() (*client, reply) {
		c := dial(t, s.MX)
		c.Expect("EHLO client.remote.test", 250, "")
		c.Expect("MAIL FROM:<sender@remote.test>", 250, "2.1.0")
		return c, c.Cmd("RCPT TO:<" + alice + ">")
	}
	start := time.Now()
	c, r := attempt()
	if r.Code != 451 || r.Enhanced != "4.7.1" || !strings.Contains(r.Text(), "greylisted") ||
		!strings.Contains(r.Text(), "try again in 3s") || r.ConnID() == "" {
		t.Fatalf("first attempt: %q, want 451 4.7.1 greylisted, try again in 3s, with the connection id", r)
	}
	l := expectDecision(t, s, "rcpt.greylist", r.ConnID())
	if l.str("enhanced") != "4.7.1" || l.str("client_net") != "127.0.0.0/24" {
		t.Errorf("decision line %v", l)
	}
	// Greylisting does not count toward the error limit (5): a server
	// naming many recipients keeps its session.
	for i := range 6 {
		if r := c.Cmd("RCPT TO:<" + alice + ">"); r.Code != 451 {
			t.Fatalf("early retry %d in the same session: %q, want 451", i+1, r)
		}
	}
	c.Expect("QUIT", 221, "2.0.0")

	// Restart: the triplet must come back from DATA_DIR/state.db.
	s.Stop(t)
	if err := s.start(t); err != nil {
		t.Fatal(err)
	}
	if wait := 3*time.Second + 500*time.Millisecond - time.Since(start); wait > 0 {
		time.Sleep(wait)
	}
	c, r = attempt()
	if r.Code != 250 {
		t.Fatalf("retry after the delay (and a restart): %q, want 250\n%s", r, s.LogTail(20))
	}
	if r := c.Data("Subject: greylisted once\r\n\r\nhello\r\n"); r.Code != 250 {
		t.Fatalf("DATA: %q", r)
	}
	c.Expect("QUIT", 221, "2.0.0")

	// Authenticated clients bypass greylisting.
	out, code := swaks(t, "--server", s.Submission, "-tls", "--auth", "PLAIN", "--auth-user", alice,
		"--auth-password", alicePassword, "--from", alice, "--to", "bob@remote.test")
	if code != 0 || hasReply(swaksReplies(out), 451, "4.7.1") {
		t.Fatalf("submission was greylisted (exit %d):\n%s", code, out)
	}
}

// submit sends one message as alice through submission with swaks and
// returns its replies.
func submit(t *testing.T, s *server, to string) []reply {
	t.Helper()
	out, _ := swaks(t, "--server", s.Submission, "-tls", "--auth", "PLAIN", "--auth-user", alice,
		"--auth-password", alicePassword, "--from", alice, "--to", to)
	return swaksReplies(out)
}

func lastReply(rs []reply) reply {
	if len(rs) == 0 {
		return reply{}
	}
	// swaks ends with QUIT's 221; the reply before it decided.
	if rs[len(rs)-1].Code == 221 && len(rs) > 1 {
		return rs[len(rs)-2]
	}
	return rs[len(rs)-1]
}

// The submission message limit through the real binary and swaks: the
// burst passes, the next gets 450 4.7.1 saying when to retry; trying on
// at twice the limit suspends the account (550 5.7.1 at MAIL, a
// decision line and the metric); `kanmon user unsuspend` lets it send
// again, and `kanmon user suspend` stops it by hand.
func TestSubmissionRateLimitAndSuspension(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{set: map[string]string{
		"ratelimit.messages_per_hour": "1",
		"ratelimit.messages_burst":    "3",
		"ratelimit.suspend_factor":    "2.0",
	}})
	for i := 1; i <= 3; i++ {
		if r := lastReply(submit(t, s, alice)); r.Code != 250 {
			t.Fatalf("message %d of the burst: %q, want 250", i, r)
		}
	}
	r := lastReply(submit(t, s, alice))
	if r.Code != 450 || r.Enhanced != "4.7.1" || !strings.Contains(r.String(), "try again in") || !strings.Contains(r.String(), "1 messages an hour (burst 3)") {
		t.Fatalf("message 4: %q, want 450 4.7.1 with the limit and when to retry", r)
	}
	expectDecision(t, s, "submission.rate_messages", "")
	// Demand at twice the limit has a burst of 6: attempts 5 and 6 are
	// refused, the 7th suspends.
	for i := 5; i <= 6; i++ {
		if r := lastReply(submit(t, s, alice)); r.Code != 450 {
			t.Fatalf("message %d: %q, want 450", i, r)
		}
	}
	r = lastReply(submit(t, s, alice))
	if r.Code != 550 || r.Enhanced != "5.7.1" || !strings.Contains(r.String(), "suspended") {
		t.Fatalf("message 7: %q, want 550 5.7.1 account suspended", r)
	}
	l := expectDecision(t, s, "account.suspend", "")
	if l.str("user") != alice || l.str("cause") != "rate" {
		t.Errorf("suspension line %v", l)
	}
	if v := scrape(t, s)[`kanmon_account_suspensions_total{cause="rate"}`]; v != 1 {
		t.Errorf("kanmon_account_suspensions_total{cause=\"rate\"} = %v, want 1", v)
	}
	if r := lastReply(submit(t, s, alice)); r.Code != 550 {
		t.Fatalf("suspended account sent: %q", r)
	}

	out := mustKanmon(t, s.Dir, "", "user", "unsuspend", alice, "--config", s.Config)
	if !strings.Contains(out, "may send again") {
		t.Errorf("unsuspend said %q", out)
	}
	waitReply(t, func() reply { return lastReply(submit(t, s, alice)) }, 250, "after unsuspend")

	mustKanmon(t, s.Dir, "", "user", "suspend", alice, "lost laptop", "--config", s.Config)
	waitReply(t, func() reply { return lastReply(submit(t, s, alice)) }, 550, "after kanmon user suspend")
}

// waitReply retries send until its reply has code: a running server
// sees a change of the directory within about a second.
func waitReply(t *testing.T, send func() reply, code int, what string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := send()
		if r.Code == code {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %q, want %d", what, r, code)
		}
		time.Sleep(time.Second)
	}
}

// A sudden rise of a new account's volume above the floor raises the
// compromised-account alert (rule account.anomaly) and its metric.
func TestAccountAnomalyAlert(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{set: map[string]string{
		"ratelimit.anomaly_floor":  "4",
		"ratelimit.anomaly_factor": "2.0",
	}})
	rs := submit(t, s, "a@remote.test,b@remote.test,c@remote.test,d@remote.test,e@remote.test")
	if r := lastReply(rs); r.Code != 250 {
		t.Fatalf("message: %q (anomaly = log must not refuse)", r)
	}
	l := s.WaitLog(t, "account.anomaly", func(l logLine) bool {
		return l.str("rule") == "account.anomaly" && l.str("signal") == "volume"
	})
	if l.str("user") != alice || l["hour_recipients"] != float64(4) {
		t.Errorf("alert line %v, want alice at the 4th recipient", l)
	}
	if v := scrape(t, s)[`kanmon_account_anomalies_total{signal="volume"}`]; v != 1 {
		t.Errorf("kanmon_account_anomalies_total{signal=\"volume\"} = %v, want 1", v)
	}
}

// The MX connection rate: beyond mx_connections_per_minute from one
// client, 421 4.7.0 before the greeting (rule client.connection_rate).
func TestMXConnectionRate(t *testing.T) {
	t.Parallel()
	const rate = 5
	s := startServer(t, options{set: map[string]string{"ratelimit.mx_connections_per_minute": "5"}})
	// The harness's own probes at start spent some of the five: greet
	// until the first refusal, which must come within the rate.
	var c *client
	var r reply
	for i := 0; ; i++ {
		if i > rate {
			t.Fatalf("%d connections within a second were all greeted (rate %d a minute)", i, rate)
		}
		c = dialNoGreeting(t, s.MX)
		r = c.MustRead()
		if r.Code != 220 {
			break
		}
		c.Expect("QUIT", 221, "2.0.0")
	}
	checkReply(t, "greeting over the rate", r, 421, "4.7.0")
	if !strings.Contains(r.Text(), "too many new connections") || r.ConnID() == "" {
		t.Errorf("refusal %q lacks its reason or connection id", r)
	}
	c.ExpectClosed("after 421")
	s.WaitLog(t, "connect.refused client.connection_rate", func(l logLine) bool {
		return l.str("msg") == "connect.refused" && l.str("rule") == "client.connection_rate" && l["code"] == float64(421)
	})
	// Submission has no connection rate.
	for range 4 {
		c := dial(t, s.Submission)
		c.Expect("QUIT", 221, "2.0.0")
	}
}
