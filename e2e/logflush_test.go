package e2e

import (
	"fmt"
	"testing"
)

// TestLogFlushedOnStop: the log is buffered (lines go out every 100 ms),
// and a clean stop loses none: right after 20 messages, SIGTERM, and the
// log holds every message's queued line and ends with "stopped".
func TestLogFlushedOnStop(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{})
	var ids []string
	for i := range 20 {
		ids = append(ids, sendMail(t, s.MX, "bob@remote.test", []string{alice},
			message("bob@remote.test", alice, fmt.Sprintf("flush %d", i), newMessageID(t), "body\n")))
	}
	s.Stop(t)
	logs := s.Logs(t)
	queued := map[string]bool{}
	for _, l := range logs {
		if l.str("msg") == "queued" {
			queued[l.str("queue_id")] = true
		}
	}
	for _, id := range ids {
		if !queued[id] {
			t.Errorf("no queued line for %s after a clean stop", id)
		}
	}
	if len(logs) == 0 || logs[len(logs)-1].str("msg") != "stopped" {
		t.Errorf("log does not end with the stopped line:\n%s", s.LogTail(5))
	}
}
