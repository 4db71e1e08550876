package e2e

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"kanmon/internal/testutil/smtppeer"
)

// Lane isolation: the sizes below give the bounce lane two workers and two
// connection slots (queue.workers 4: a quarter, at least 2;
// delivery.max_concurrency 8: a quarter), and leave the normal lane four
// workers and six slots. max_per_domain (20) is above both, so the lanes'
// own bounds are what a flood meets.
const (
	laneWorkers     = 4
	laneConcurrency = 8
	bounceLaneSlots = 2
	// floodSize is how many null-sender messages the flood queues: at
	// least a hundred times what the bounce lane can have in flight.
	floodSize = 300
	// ordinaryBound is how long ordinary mail may take, from its first
	// SMTP command to its next hop, while the bounce lane is saturated.
	ordinaryBound = 10 * time.Second
)

// TestLaneIsolationNullSenderFlood: a flood of null-sender mail (smtp-source
// sending `MAIL FROM:<>` from a trusted network) to a next hop that accepts
// connections and then never says a word fills the bounce lane: both of
// its connection slots hang on that peer and hundreds of messages wait
// behind them. Ordinary mail (swaks) sent during the flood still reaches
// its own next hop within ordinaryBound, and the flood never takes more
// than the bounce lane's slots. Were the lanes to share one pool of
// workers or slots, the flood would hold every worker and the ordinary
// message would wait behind it.
func TestLaneIsolationNullSenderFlood(t *testing.T) {
	t.Parallel()
	source := needTool(t, "smtp-source")
	needTool(t, "swaks")
	hang := make(chan struct{})
	// Registered before startServer, so it runs after the server stopped:
	// the stop itself must end the hanging sessions.
	t.Cleanup(func() { close(hang) })
	slow := smtppeer.Start(t, &smtppeer.Peer{Hang: hang})
	fast := smtppeer.Start(t, &smtppeer.Peer{})
	s := startServer(t, options{set: map[string]string{
		"trusted_networks":         `["127.0.0.1/32"]`,
		"queue.workers":            strconv.Itoa(laneWorkers),
		"delivery.max_concurrency": strconv.Itoa(laneConcurrency),
		"delivery.routes":          `{ "slow.test" = "` + slow.Addr + `", "fast.test" = "` + fast.Addr + `" }`,
	}})

	floodNullSender(t, source, s.MX, floodSize)
	waitSaturated(t, s, slow)

	msgID := newMessageID(t)
	sent := time.Now()
	out, code := swaks(t, "--server", s.MX, "--from", "sender@client.test", "--to", "friend@fast.test",
		"--header", "Message-Id: "+msgID, "--header", "Subject: ordinary mail during a flood")
	if code != 0 || !hasReply(swaksReplies(out), 250, "2.0.0") {
		t.Fatalf("swaks: exit status %d, no 250 2.0.0 at end of DATA:\n%s", code, out)
	}
	for !peerGot(fast, msgID) {
		if time.Since(sent) > ordinaryBound {
			m := scrape(t, s)
			t.Fatalf("ordinary mail not delivered within %s of its first SMTP command while the bounce lane was saturated "+
				"(queue: %v normal, %v bounce; slow peer connections: %d)\n%s", ordinaryBound,
				m[`kanmon_queue_lane_messages{lane="normal"}`], m[`kanmon_queue_lane_messages{lane="bounce"}`],
				slow.Conns(), s.LogTail(30))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("ordinary mail sent and delivered in %s, with the bounce lane saturated", time.Since(sent).Round(time.Millisecond))

	// The flood is still there, held to the bounce lane's slots.
	m := scrape(t, s)
	if got := metricValue(t, m, `kanmon_queue_lane_messages{lane="bounce"}`); got < floodSize-bounceLaneSlots {
		t.Errorf("bounce lane holds %v messages after the ordinary delivery, want at least %d (still saturated)", got, floodSize-bounceLaneSlots)
	}
	if got := slow.Conns(); got != bounceLaneSlots {
		t.Errorf("the flood opened %d connections to its next hop, want exactly the bounce lane's %d slots", got, bounceLaneSlots)
	}
	for _, msg := range fast.Messages() {
		if msg.From == "" {
			t.Errorf("a null-sender message reached the ordinary mail's next hop: %+v", msg)
		}
	}
}

// floodNullSender has smtp-source send n messages from the null sender to
// flood@slow.test over four sessions, each message its own transaction
// on a kept connection (-d). Any reply but the expected one aborts
// smtp-source with a non-zero status.
func floodNullSender(t *testing.T, source, mx string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, source, "-d", "-s", "4", "-m", strconv.Itoa(n), "-f", "", "-t", "flood@slow.test",
		"-M", "client.remote.test", "-S", "null-sender flood", "-l", "512", "inet:"+mx)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("smtp-source: %v\n%s", err, out)
	}
	t.Logf("smtp-source queued %d null-sender messages in %s", n, time.Since(start).Round(time.Millisecond))
}

// waitSaturated waits until the bounce lane holds (nearly) the whole flood
// and every one of its connection slots hangs on the slow peer.
func waitSaturated(t *testing.T, s *server, slow *smtppeer.Peer) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		m := scrape(t, s)
		bounce := metricValue(t, m, `kanmon_queue_lane_messages{lane="bounce"}`)
		if bounce >= floodSize-bounceLaneSlots && slow.Conns() >= bounceLaneSlots {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("bounce lane not saturated within 20s: %v messages in it, %d connections to the slow peer\n%s",
				bounce, slow.Conns(), s.LogTail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// peerGot reports whether the peer received a message carrying msgID.
func peerGot(p *smtppeer.Peer, msgID string) bool {
	for _, m := range p.Messages() {
		if strings.Contains(m.Data, msgID) {
			return true
		}
	}
	return false
}
