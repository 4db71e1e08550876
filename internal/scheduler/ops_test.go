package scheduler

import (
	"net"
	"strings"
	"testing"
	"time"

	"kanmon/internal/queue"
)

// TestQueueMetrics: /metrics carries queue depth per lane, the oldest
// message's age and deliveries by outcome.
func TestQueueMetrics(t *testing.T) {
	e := newEnv(t, func(s *Scheduler) { s.Remote = nil })
	e.submit(t, ownUser("bob@remote.test"), testMessage("alice@example.org", "bob@remote.test", "m1"))
	e.submit(t, queue.Envelope{From: "", Origin: queue.OriginLocal, Recipients: []queue.Recipient{{Addr: "x@remote.test"}}}, testMessage("", "x@remote.test", "m2"))
	got := map[string]float64{}
	mfs, err := e.sched.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			if m.Gauge != nil {
				got[key] = m.Gauge.GetValue()
			}
		}
	}
	if got["kanmon_queue_lane_messages,lane=normal"] != 1 || got["kanmon_queue_lane_messages,lane=bounce"] != 1 {
		t.Errorf("lane depths: %v", got)
	}
	if _, ok := got["kanmon_queue_oldest_age_seconds"]; !ok {
		t.Errorf("no kanmon_queue_oldest_age_seconds")
	}
}

// startEndlessGreeting is a receiving server that answers "220 " and then
// 64 KiB chunks without a newline, for up to a second per connection.
func startEndlessGreeting(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	chunk := []byte(strings.Repeat("x", 64<<10))
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(time.Second))
				c.Write([]byte("220 "))
				for range 1 << 14 {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestRemoteHostileLogged: the scheduler's delivery line for an
// attempt carries the queue id, the peer and the reason, and the message
// stays queued.
func TestRemoteHostileLogged(t *testing.T) {
	p := startEndlessGreeting(t)
	e := newEnv(t, func(s *Scheduler) { rem(s).Routes["remote.test"] = p })
	id := e.submit(t, ownUser("bob@remote.test"), testMessage("alice@example.org", "bob@remote.test", "hostile"))
	waitFor(t, "a deferred delivery line", func() bool {
		return e.logs.Has("delivery", func(l map[string]any) bool {
			return l["queue_id"] == id && l["result"] == "deferred" && l["mx"] == "127.0.0.1" &&
				strings.HasPrefix(l["reply"].(string), "451 4.4.2 "+p+": greeting: remote server sent a reply line over 4096 bytes")
		})
	})
	if e.queueEmpty() {
		t.Errorf("the message left the queue")
	}
}
