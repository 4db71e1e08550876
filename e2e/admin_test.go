package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrape fetches /metrics with curl and returns "name{labels}" -> value.
func scrape(t *testing.T, s *server) map[string]float64 {
	t.Helper()
	out, code := curl(t, "-f", "http://"+s.Admin+"/metrics")
	if code != 0 {
		t.Fatalf("curl /metrics: exit status %d\n%s", code, out)
	}
	m := map[string]float64{}
	for _, line := range strings.Split(out, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m
}

// TestAdmin: /healthz and /metrics on the admin listener, read with curl.
func TestAdmin(t *testing.T) {
	t.Parallel()
	needTool(t, "curl")
	s := startServer(t, options{})

	out, code := curl(t, "-f", "http://"+s.Admin+"/healthz")
	if code != 0 || strings.TrimSpace(out) != "ok" {
		t.Errorf("curl /healthz: exit %d, body %q; want ok", code, out)
	}
	if out, code := curl(t, "-f", "-o", "/dev/null", "http://"+s.Admin+"/no-such-page"); code == 0 {
		t.Errorf("GET /no-such-page succeeded: %q", out)
	}

	before := scrape(t, s)
	for _, name := range []string{"kanmon_queue_messages", "kanmon_queue_bytes"} {
		if _, ok := before[name]; !ok {
			t.Errorf("/metrics lacks %s", name)
		}
	}

	// One relay attempt and one accepted message.
	c := dial(t, s.MX)
	c.Ehlo("client.remote.test")
	c.Expect("MAIL FROM:<x@remote.test>", 250, "2.1.0")
	c.Expect("RCPT TO:<friend@remote.test>", 554, "5.7.1")
	c.Expect("QUIT", 221, "2.0.0")
	msgID := newMessageID(t)
	sendMail(t, s.MX, "x@remote.test", []string{alice}, message("x@remote.test", alice, "metrics", msgID, "count me\n"))
	waitMaildir(t, s.Maildir(alice), msgID)

	deadline := time.Now().Add(5 * time.Second)
	for {
		m := scrape(t, s)
		var problems []string
		if v := m[`kanmon_rejections_total{rule="relay.denied"}`]; v != 1 {
			problems = append(problems, "kanmon_rejections_total{rule=\"relay.denied\"} = "+strconv.FormatFloat(v, 'g', -1, 64)+", want 1")
		}
		if v := m[`kanmon_messages_accepted_total{listener="mx"}`]; v != 1 {
			problems = append(problems, "kanmon_messages_accepted_total{listener=\"mx\"} = "+strconv.FormatFloat(v, 'g', -1, 64)+", want 1")
		}
		// The readiness probe, the relay attempt and the message.
		if v := m[`kanmon_connections_total{listener="mx"}`]; v < 3 {
			problems = append(problems, "kanmon_connections_total{listener=\"mx\"} = "+strconv.FormatFloat(v, 'g', -1, 64)+", want >= 3")
		}
		if v, ok := m["kanmon_queue_messages"]; !ok || v != 0 {
			problems = append(problems, "kanmon_queue_messages = "+strconv.FormatFloat(v, 'g', -1, 64)+", want 0 after delivery")
		}
		if len(problems) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics:\n  %s", strings.Join(problems, "\n  "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestQueueBytesMetric: kanmon_queue_bytes follows the queue: back to 0
// when every message is delivered, and equal to what is queued otherwise.
// The same counter enforces queue.max_size, so a drift loosens that bound.
func TestQueueBytesMetric(t *testing.T) {
	t.Parallel()
	needTool(t, "curl")
	s := startServer(t, options{})
	if v := metricValue(t, scrape(t, s), "kanmon_queue_bytes"); v != 0 {
		t.Errorf("kanmon_queue_bytes = %g on an empty queue, want 0", v)
	}
	for i := 0; i < 3; i++ {
		msgID := newMessageID(t)
		sendMail(t, s.MX, "x@remote.test", []string{alice}, message("x@remote.test", alice, "bytes", msgID, "count my bytes\n"))
		waitMaildir(t, s.Maildir(alice), msgID)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(s.QueueIDs(t)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("queue not empty after delivery: %v", s.QueueIDs(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
	m := scrape(t, s)
	if metricValue(t, m, "kanmon_queue_messages") != 0 || metricValue(t, m, "kanmon_queue_bytes") != 0 {
		t.Errorf("after 3 messages were delivered and removed from the queue: kanmon_queue_messages = %g, kanmon_queue_bytes = %g; want 0 and 0",
			m["kanmon_queue_messages"], m["kanmon_queue_bytes"])
	}
}

// metricValue returns a series from a scrape, failing the test when it is
// missing: a missing series must not read as 0 and pass a "want 0" check.
func metricValue(t *testing.T, m map[string]float64, series string) float64 {
	t.Helper()
	v, ok := m[series]
	if !ok {
		t.Fatalf("/metrics has no series %s", series)
	}
	return v
}
