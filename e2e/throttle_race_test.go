package e2e

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// authOutcomes counts the server's auth log lines from remote address ip
// (by its "remote" key where it has one, else all): how many passwords
// were checked and found wrong, and how many attempts were throttled.
func authOutcomes(t *testing.T, s *server, since int) (checked, throttled int) {
	t.Helper()
	for _, l := range s.Logs(t)[since:] {
		if l.str("msg") != "auth" || l["ok"] == true {
			continue
		}
		switch l.str("rule") {
		case "auth.failed", "auth.invalid":
			checked++
		case "auth.throttled":
			throttled++
		}
	}
	return checked, throttled
}

// raceLogins starts n submission logins (swaks, STARTTLS, AUTH PLAIN) and
// n POP3S logins (curl) with a wrong password for alice from local
// address from, all at once, and waits for all of them.
func raceLogins(t *testing.T, p *popServer, n int, from string) (smtpReplies []reply) {
	t.Helper()
	needTool(t, "swaks")
	needTool(t, "curl")
	start := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	port := portOf(p.POP3S)
	for range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			out, _ := swaks(t, "--server", p.Submission, "--local-interface", from, "-tls", "--auth", "PLAIN",
				"--auth-user", alice, "--auth-password", "wrong-password", "--from", alice, "--to", alice, "--quit-after", "AUTH")
			mu.Lock()
			smtpReplies = append(smtpReplies, swaksReplies(out)...)
			mu.Unlock()
		}()
		go func() {
			defer wg.Done()
			<-start
			curl(t, "--cacert", p.Cert, "--resolve", hostname+":"+port+":127.0.0.1", "--interface", from,
				"-u", alice+":wrong-password", "pop3s://"+hostname+":"+port+"/")
		}()
	}
	close(start)
	wg.Wait()
	return smtpReplies
}

// TestLoginThrottleRace: the login throttle counts an attempt before the
// password is checked, so logins that arrive together cannot all pass
// it. 20 submission and 20 POP3S logins racing from one address get at
// most auth_max_failures (10) passwords checked; then, against the
// account those guesses hit, 40 racing logins from a fresh address get
// one.
func TestLoginThrottleRace(t *testing.T) {
	t.Parallel()
	p := startPOP3Server(t, map[string]string{"limits.max_connections_per_ip": "100"})
	const limit = 10

	deadline := time.Now().Add(2 * time.Minute)
	replies := raceLogins(t, p, 20, "127.0.0.1")
	if time.Now().After(deadline) {
		t.Fatalf("the first race took over 2 minutes")
	}
	// Logs are flushed every 100 ms.
	var checked, throttled int
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if checked, throttled = authOutcomes(t, p.server, 0); checked+throttled >= 40 {
			break
		}
	}
	t.Logf("one address, 40 racing logins: %d passwords checked, %d throttled", checked, throttled)
	if checked > limit || checked+throttled < 40 {
		t.Errorf("40 racing logins from one address: %d passwords checked (want at most %d), %d throttled (want the rest)",
			checked, limit, throttled)
	}
	if !hasReply(replies, 454, "4.7.0") {
		t.Errorf("no submission login got 454 4.7.0 (throttled); replies: %v", replies)
	}

	before := len(p.Logs(t))
	raceLogins(t, p, 20, "127.0.0.2")
	var fresh, freshThrottled int
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if fresh, freshThrottled = authOutcomes(t, p.server, before); fresh+freshThrottled >= 40 {
			break
		}
	}
	t.Logf("fresh address on the guessed account, 40 racing logins: %d passwords checked, %d throttled", fresh, freshThrottled)
	if fresh > 1 || fresh+freshThrottled < 40 {
		t.Errorf("40 racing logins from a fresh address on an account at its limit: %d passwords checked (want at most 1), %d throttled",
			fresh, freshThrottled)
	}
	if strings.Contains(p.LogRaw(t), "wrong-password") {
		t.Errorf("a password reached the log")
	}
}
