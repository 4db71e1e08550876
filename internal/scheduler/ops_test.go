package scheduler

import (
	"testing"

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
