package e2e

// Connection pools through the real binary: each listener has its own
// pool (limits.max_connections), the connection over it hears 421 4.7.0,
// and an MX flood of idle connections neither locks out submission and
// POP3 users nor keeps its slots for the normal command timeout (stress
// mode).

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// dialSource connects to a from a loopback source address (127.0.0.x)
// without reading anything. Loopback aliases are always there on Linux;
// where they are not, the test fails in CI and is skipped elsewhere.
func dialSource(t *testing.T, src, a string) *client {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	nc, err := d.Dial("tcp", a)
	if err != nil {
		skipOrFail(t, "cannot connect from %s (loopback aliases unavailable here): %v", src, err)
	}
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, conn: nc, r: bufio.NewReader(nc)}
}

// metric returns the line of a metric series from /metrics, or "".
func (s *server) metric(t *testing.T, series string) string {
	t.Helper()
	resp, err := http.Get("http://" + s.Admin + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, series+" ") {
			return line
		}
	}
	return ""
}

// TestMaxConnectionsRefuses: limits.max_connections bounds each listener:
// with 3, the 4th MX connection gets 421 4.7.0 before any greeting (with
// the connection id, logged as limit.connections), while submission,
// with a pool of its own, still greets.
func TestMaxConnectionsRefuses(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{set: map[string]string{"limits.max_connections": "3"}})
	s.waitNoSessions(t) // the readiness probe is gone
	for _, src := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		c := dialSource(t, src, s.MX)
		c.ExpectReply("greeting from "+src, 220, "")
	}
	over := dialSource(t, "127.0.0.5", s.MX)
	r := over.ExpectReply("4th connection", 421, "4.7.0")
	over.ExpectClosed("after 421 4.7.0")
	id := r.ConnID()
	if id == "" {
		t.Errorf("refusal %q carries no connection id", r)
	}
	s.WaitLog(t, "connect.refused limit.connections", func(l logLine) bool {
		return l.str("msg") == "connect.refused" && l.str("rule") == "limit.connections" &&
			l.str("listener") == "mx" && l.str("conn") == id
	})
	sub := dialSource(t, "127.0.0.5", s.Submission)
	sub.ExpectReply("submission while MX is full", 220, "")
}

// TestMXFloodKeepsSubmissionAndPOP3: 4 addresses × 5 idle connections
// fill the MX pool of 20. The 21st MX connection is refused, yet an
// authenticated submission (swaks) and a POP3 login (curl) both work, and
// once the MX pool is stressed (16 of 20) its idle connections are cut
// after stress_command_timeout (3s), not command_timeout (5m).
func TestMXFloodKeepsSubmissionAndPOP3(t *testing.T) {
	t.Parallel()
	needTool(t, "swaks")
	needTool(t, "curl")
	p := startPOP3Server(t, map[string]string{
		"limits.max_connections":        "20",
		"limits.max_connections_per_ip": "5",
		"limits.stress_command_timeout": `"3s"`,
	})
	p.waitNoSessions(t)
	var flood []*client
	for _, src := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"} {
		for i := 0; i < 5; i++ {
			c := dialSource(t, src, p.MX)
			c.ExpectReply("flood greeting", 220, "")
			flood = append(flood, c)
		}
	}
	filled := time.Now()
	over := dialSource(t, "127.0.0.6", p.MX)
	over.ExpectReply("21st MX connection", 421, "4.7.0")
	if m := p.metric(t, `kanmon_listener_stress{listener="mx"}`); !strings.HasSuffix(m, " 1") {
		t.Errorf("stress gauge with the MX pool full: %q, want 1", m)
	}

	// Users of the other listeners are not locked out by the flood.
	var wg sync.WaitGroup
	var swaksOut, curlOut string
	var swaksCode, curlCode int
	wg.Add(2)
	go func() {
		defer wg.Done()
		swaksOut, swaksCode = swaks(t, "--server", p.Submission, "-tls", "--auth", "PLAIN", "--auth-user", alice,
			"--auth-password", alicePassword, "--from", alice, "--to", alice, "--header", "Subject: during the flood")
	}()
	go func() {
		defer wg.Done()
		curlOut, curlCode = p.popCurl(t, "/")
	}()
	wg.Wait()
	if d := time.Since(filled); d > 3*time.Second {
		t.Logf("note: submission and POP3 took %s, past the stress timeout", d)
	}
	if rs := swaksReplies(swaksOut); swaksCode != 0 || !hasReply(rs, 235, "2.7.0") || !hasReply(rs, 250, "2.0.0") {
		t.Errorf("authenticated submission during an MX flood: exit %d\n%s", swaksCode, swaksOut)
	}
	if curlCode != 0 {
		t.Errorf("POP3 login during an MX flood: curl exit %d\n%s", curlCode, curlOut)
	}

	// The idle flood connections are cut after the stress timeout.
	for i, c := range flood {
		r, err := c.Read()
		if err != nil || r.Code != 421 || r.Enhanced != "4.4.2" {
			t.Fatalf("idle flood connection %d: %q (%v), want 421 4.4.2", i, r, err)
		}
	}
	cut := time.Since(filled)
	t.Logf("20 idle MX connections cut %s after the pool filled (stress_command_timeout 3s, command_timeout 5m)", cut.Round(10*time.Millisecond))
	if cut > 10*time.Second {
		t.Errorf("idle connections held their slots for %s under stress, want about 3s", cut)
	}
	p.WaitLog(t, "listener.stress on", func(l logLine) bool {
		return l.str("msg") == "listener.stress" && l.str("listener") == "mx" && l["on"] == true
	})
	p.WaitLog(t, "listener.stress off", func(l logLine) bool {
		return l.str("msg") == "listener.stress" && l.str("listener") == "mx" && l["on"] == false
	})
	if n := countLogs(p.Logs(t), "listener.stress", "mx"); n != 2 {
		t.Errorf("%d listener.stress lines for mx, want 2 (one per transition)", n)
	}
	// The POP3 login above may have listed the message already and so
	// moved it from new/ to cur/: either place counts as delivered.
	cur := filepath.Join(filepath.Dir(p.Maildir(alice)), "cur")
	deadline := time.Now().Add(deliveryWait)
	for len(maildirFind(p.Maildir(alice), "Subject: during the flood"))+len(maildirFind(cur, "Subject: during the flood")) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the message submitted during the flood is in neither new/ nor cur/ after %s", deliveryWait)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func countLogs(ls []logLine, msg, listener string) int {
	n := 0
	for _, l := range ls {
		if l.str("msg") == msg && l.str("listener") == listener {
			n++
		}
	}
	return n
}
