package scheduler

import (
	"errors"
	"io/fs"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// A message whose delivery attempt crashes the process (a hostile peer
// exhausting our memory, say) would be retried at every restart and
// crash it again. So each attempt is marked in flight in the spool's
// journal while it runs (queue.Spool.MarkInFlight); a mark found at startup
// means the previous run stopped uncleanly during that attempt. The
// message's UncleanStops count goes up, and at UncleanStopsToHold it is
// put on hold for an operator instead of being tried again. A completed
// attempt (any outcome) resets the count; an attempt cut short by a
// clean stop (SIGTERM drain) clears its marker and leaves the count
// alone, so restarting the server by hand neither counts nor forgives.
//
// The price is that a message which just happened to be in flight at two
// unrelated crashes is held too; `kanmon queue release` sends it on.

// UncleanStopsToHold is how many consecutive unclean stops with a
// delivery attempt of a message in flight put that message on hold.
const UncleanStopsToHold = 2

// heldUncleanReason is the hold reason shown by `kanmon queue list`.
func heldUncleanReason(id string, n int) string {
	return "in flight at " + strconv.Itoa(n) + " consecutive unclean stops; release with kanmon queue release " + id
}

// attemptMark is the in-flight marker of one message's processing. It is
// set lazily, just before the first delivery attempt, so processing that
// attempts nothing (a held message, a busy domain) costs no write.
type attemptMark struct {
	s      *Scheduler
	id     string
	marked bool
}

// begin marks the attempt in flight (once).
func (a *attemptMark) begin() {
	if a.marked {
		return
	}
	a.marked = true
	if err := a.s.Spool.MarkInFlight(a.id); err != nil {
		// Delivering anyway is the lesser harm: without the mark, a crash
		// during this attempt only goes uncounted.
		a.s.Log.Error("queue", "queue_id", a.id, "op", "mark_in_flight", "err", err.Error())
	}
}

// end clears the mark, whatever the outcome of the attempt.
func (a *attemptMark) end() {
	if !a.marked {
		return
	}
	if err := a.s.Spool.ClearInFlight(a.id); err != nil {
		a.s.Log.Error("queue", "queue_id", a.id, "op", "clear_in_flight", "err", err.Error())
	}
}

// recoverUnclean runs at Start, before any worker: every marker left is
// a message whose attempt an unclean stop cut short.
func (s *Scheduler) recoverUnclean() {
	ids, err := s.Spool.InFlight()
	if err != nil {
		s.Log.Error("queue", "op", "scan_in_flight", "err", err.Error())
		return
	}
	for _, id := range ids {
		s.countUnclean(id)
	}
}

// countUnclean adds one unclean stop to id and holds it at the bound.
func (s *Scheduler) countUnclean(id string) {
	m, err := s.Spool.Open(id)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.Log.Error("queue", "queue_id", id, "op", "unclean_stop", "err", err.Error())
		}
		// Gone (delivered and removed just before the stop) or unreadable:
		// nothing to count.
		s.Spool.ClearInFlight(id)
		return
	}
	st := m.State
	m.Close()
	st.UncleanStops++
	held := st.UncleanStops >= UncleanStopsToHold && !st.Held
	if held {
		st.Held = true
		st.HoldReason = heldUncleanReason(id, st.UncleanStops)
	}
	// State first, then the marker: a crash in between counts this stop
	// twice (stricter), never zero times.
	if err := s.Spool.SaveState(id, st); err != nil {
		s.Log.Error("queue", "queue_id", id, "op", "unclean_stop", "err", err.Error())
		return
	}
	if err := s.Spool.ClearInFlight(id); err != nil {
		s.Log.Error("queue", "queue_id", id, "op", "unclean_stop", "err", err.Error())
	}
	result := "counted"
	if held {
		result = "held"
		s.Log.Warn("queue", "queue_id", id, "conn", m.Envelope.ConnID, "op", "held", "unclean_stops", st.UncleanStops,
			"reason", st.HoldReason)
	} else {
		s.Log.Warn("queue", "queue_id", id, "conn", m.Envelope.ConnID, "op", "unclean_stop", "unclean_stops", st.UncleanStops,
			"reason", "a delivery attempt was in flight when the server stopped uncleanly; held at "+strconv.Itoa(UncleanStopsToHold))
	}
	if s.uncleanStops != nil {
		s.uncleanStops.WithLabelValues(result).Inc()
	}
}

// registerUncleanMetric adds kanmon_queue_unclean_stops_total.
func (s *Scheduler) registerUncleanMetric() {
	if s.Metrics == nil {
		return
	}
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kanmon_queue_unclean_stops_total",
		Help: "Messages found in flight at startup (an unclean stop cut their delivery attempt), by result: counted or held.",
	}, []string{"result"})
	if err := s.Metrics.Registry.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			s.Log.Error("metrics", "op", "register", "err", err.Error())
			return
		}
		c = are.ExistingCollector.(*prometheus.CounterVec)
	}
	// Both series exist from the start, so a scrape shows 0, not nothing.
	c.WithLabelValues("counted")
	c.WithLabelValues("held")
	s.uncleanStops = c
}
