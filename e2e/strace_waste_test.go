package e2e

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kanmon/internal/testutil/postfix"
)

// TestStraceRelayNoWaste counts, from outside the process, the system
// calls that used to be spent in vain on every relayed message: opening
// and removing a queue state file that does not exist, registering disk
// files with the network poller (an epoll_ctl that always fails), TCP
// keepalive options on both connections, one new outgoing connection
// per message, and an in-flight marker file created and removed per
// delivery attempt (now a journal opened once). Ten messages relayed to smtp-sink must show none of the
// first three and reuse the outgoing connection.
func TestStraceRelayNoWaste(t *testing.T) {
	t.Parallel()
	strace := needTool(t, "strace")
	sink := postfix.StartSink(t, "")
	trace := filepath.Join(t.TempDir(), "strace.out")
	s := startServer(t, options{
		set: map[string]string{
			"delivery.routes":  `{ "remote.test" = "` + sink.Addr + `" }`,
			"trusted_networks": `["127.0.0.1/32"]`,
		},
		wrap: []string{strace, "-f", "-qq", "-s", "64", "-yy", "-o", trace,
			"-e", "trace=openat,unlinkat,setsockopt,connect,epoll_ctl"},
	})
	const n = 10
	for i := range n {
		sendMail(t, s.MX, "bob@client.test", []string{"friend@remote.test"},
			message("bob@client.test", "friend@remote.test", fmt.Sprintf("waste %d", i), newMessageID(t), "relayed\n"))
	}
	deadline := time.Now().Add(deliveryWait)
	for {
		msgs, _ := sink.Messages()
		if len(msgs) >= n && len(s.QueueIDs(t)) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtp-sink has %d of %d messages, queue %v\n%s", len(msgs), n, s.QueueIDs(t), s.LogTail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Stop(t)

	_, sinkPort, _ := net.SplitHostPort(sink.Addr)
	var waste []string
	connects, journalOpens := 0, 0
	for _, c := range parseStrace(t, trace) {
		switch {
		case c.name == "setsockopt" && strings.Contains(c.line, "SO_KEEPALIVE"):
			waste = append(waste, c.line)
		case (c.name == "openat" || c.name == "unlinkat") && strings.Contains(c.line, "/queue/") && strings.Contains(c.line, "ENOENT"):
			waste = append(waste, c.line)
		case (c.name == "openat" || c.name == "unlinkat") && strings.Contains(c.line, "/queue/inflight/"):
			// Attempts are marked in the journal, opened once at start,
			// not with a file per attempt.
			waste = append(waste, c.line)
		case c.name == "openat" && strings.Contains(c.line, "/queue/inflight.log"):
			journalOpens++
		case c.name == "epoll_ctl" && strings.Contains(c.line, "EPERM") && strings.Contains(c.line, "/queue/"):
			// Files read once at start do not count; the queue's do.
			waste = append(waste, c.line)
		case c.name == "connect" && strings.Contains(c.line, "htons("+sinkPort+")"):
			connects++
		}
	}
	if len(waste) > 0 {
		t.Errorf("%d wasted system calls for %d messages, e.g.:\n%s", len(waste), n, strings.Join(waste[:min(len(waste), 10)], "\n"))
	}
	// Start reads the journal, writes its compacted copy and opens that
	// for appending: three opens for the run, none per message.
	if journalOpens > 3 {
		t.Errorf("%d opens of the in-flight journal for %d messages, want at most 3 (at start)", journalOpens, n)
	}
	// Sequential messages to one destination: one connection carries
	// them, a second at most if a delivery overlapped the previous one.
	if connects == 0 || connects > 3 {
		t.Errorf("%d connections to the sink for %d messages, want 1 to 3", connects, n)
	}
}
