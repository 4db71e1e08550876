package scheduler

import (
	"context"
	"kanmon/internal/courier/local"
	"kanmon/internal/courier/remote"
	"kanmon/internal/testutil/logbuf"
	"kanmon/internal/testutil/smtppeer"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"kanmon/internal/logging"
	"kanmon/internal/metrics"
	"kanmon/internal/queue"
)

// run is one life of the scheduler over a spool directory, from start to
// a clean stop (or to being abandoned, as a crash would).
type run struct {
	spool *queue.Spool
	sched *Scheduler
	logs  *logbuf.Buffer
	stop  func() // a clean stop: cancel and wait for the workers
}

// startRun opens the spool at dir (as a restart does) and starts a
// scheduler on it; route is the next hop of remote.test ("" : no remote
// delivery, so remote recipients stay queued and nothing is attempted).
func startRun(t *testing.T, dir, route string) *run {
	t.Helper()
	spool, err := queue.Open(filepath.Join(dir, "queue"), queue.Limits{MaxMessages: 1000, MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	r := &run{spool: spool, logs: &logbuf.Buffer{}}
	r.sched = &Scheduler{
		Spool: spool, Local: &local.Courier{MailRoot: filepath.Join(dir, "mail")}, Log: logging.New(r.logs, "json", slog.LevelDebug),
		Metrics: metrics.New(func() float64 { return 0 }, func() float64 { return 0 }),
		Workers: 2, RetryMin: time.Hour, RetryMax: time.Hour, Tick: 20 * time.Millisecond,
	}
	if route != "" {
		r.sched.Remote = &remote.Remote{HeloName: "mx.example.org", Routes: map[string]string{"remote.test": route},
			// Short: a clean stop waits for a silent greeting to time out
			// (the plain-text prelude does not watch ctx).
			ConnectTimeout: 2 * time.Second, CommandTimeout: 2 * time.Second, DataTimeout: 2 * time.Second}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.sched.Start(ctx)
	stopped := false
	r.stop = func() {
		if !stopped {
			stopped = true
			cancel()
			r.sched.Wait()
		}
	}
	t.Cleanup(func() {
		r.stop()
		if t.Failed() {
			t.Logf("scheduler log:\n%s", r.logs.String())
		}
	})
	return r
}

func (r *run) state(t *testing.T, id string) queue.State {
	t.Helper()
	m, err := r.spool.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	return m.State
}

func (r *run) inFlight(t *testing.T) []string {
	t.Helper()
	ids, err := r.spool.InFlight()
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func (r *run) uncleanMetric(result string) float64 {
	mfs, _ := r.sched.Metrics.Registry.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "kanmon_queue_unclean_stops_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

// commitTo writes a message into the spool at dir before any run.
func commitTo(t *testing.T, dir string, env queue.Envelope) string {
	t.Helper()
	spool, err := queue.Open(filepath.Join(dir, "queue"), queue.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := spool.Create(env)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(testMessage(env.From, env.Recipients[0].Addr, "unclean")))
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	return w.ID()
}

// crashDuringAttempt leaves what an unclean stop during a delivery
// attempt of id leaves: the attempt's start record in the in-flight
// journal, with no end record.
func crashDuringAttempt(t *testing.T, dir, id string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "queue", "inflight.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("+" + id + "\n"); err != nil {
		t.Fatal(err)
	}
}

// TestAttemptMarkedInFlightUntilItEnds: while a delivery attempt runs (the
// peer accepted the connection and says nothing) the message is marked
// in flight on disk; when the attempt ends (the peer hangs up: deferred),
// the mark is gone.
func TestAttemptMarkedInFlightUntilItEnds(t *testing.T) {
	p := smtppeer.Start(t, &smtppeer.Peer{Hang: make(chan struct{})})
	dir := t.TempDir()
	id := commitTo(t, dir, ownUser("bob@remote.test"))
	r := startRun(t, dir, p.Addr)
	waitFor(t, "the attempt's connection", func() bool {
		return p.Conns() == 1
	})
	if got := r.inFlight(t); !reflect.DeepEqual(got, []string{id}) {
		t.Fatalf("in flight during the attempt = %v, want [%s]", got, id)
	}
	close(p.Hang)
	waitFor(t, "the deferred attempt", func() bool { return r.state(t, id).Rcpts[0].Attempts == 1 })
	waitFor(t, "the mark to be cleared", func() bool { return len(r.inFlight(t)) == 0 })
}

// TestCleanStopDuringAttemptLeavesNoMark: SIGTERM's drain cuts the
// attempt short; it leaves no marker (the next start counts nothing) and
// does not reset the count of earlier unclean stops either.
func TestCleanStopDuringAttemptLeavesNoMark(t *testing.T) {
	p := smtppeer.Start(t, &smtppeer.Peer{Hang: make(chan struct{})})
	defer close(p.Hang)
	dir := t.TempDir()
	id := commitTo(t, dir, ownUser("bob@remote.test"))
	crashDuringAttempt(t, dir, id)
	r := startRun(t, dir, p.Addr)
	if n := r.state(t, id).UncleanStops; n != 1 {
		t.Fatalf("unclean_stops after the first restart = %d, want 1", n)
	}
	waitFor(t, "the attempt's connection", func() bool {
		return p.Conns() == 1
	})
	r.stop()
	if got := r.inFlight(t); len(got) != 0 {
		t.Errorf("in flight after a clean stop = %v, want none", got)
	}
	if st := r.state(t, id); st.UncleanStops != 1 || st.Held {
		t.Errorf("after a clean stop: unclean_stops = %d held = %v, want 1 and false", st.UncleanStops, st.Held)
	}
	r2 := startRun(t, dir, "")
	if st := r2.state(t, id); st.UncleanStops != 1 || st.Held {
		t.Errorf("restart after a clean stop: unclean_stops = %d held = %v, want 1 and false (a clean stop counts nothing)", st.UncleanStops, st.Held)
	}
}

// TestTwoUncleanStopsHoldTheMessage is the crash loop: a message in flight
// at two consecutive unclean stops is held at the second restart, with
// its reason, one queue line op=held and the metric; a clean stop in
// between changes nothing. Release clears hold, reason and count. (No
// remote delivery here, so nothing is attempted and only the restarts
// move the count.)
func TestTwoUncleanStopsHoldTheMessage(t *testing.T) {
	dir := t.TempDir()
	id := commitTo(t, dir, ownUser("bob@remote.test"))

	crashDuringAttempt(t, dir, id)
	r1 := startRun(t, dir, "")
	if st := r1.state(t, id); st.UncleanStops != 1 || st.Held {
		t.Fatalf("after unclean stop 1: unclean_stops = %d held = %v, want 1 and false", st.UncleanStops, st.Held)
	}
	if !r1.logs.Has("queue", func(l map[string]any) bool {
		return l["op"] == "unclean_stop" && l["queue_id"] == id && l["unclean_stops"] == 1.0
	}) {
		t.Errorf("no queue op=unclean_stop line:\n%s", r1.logs.String())
	}
	if v := r1.uncleanMetric("counted"); v != 1 {
		t.Errorf(`kanmon_queue_unclean_stops_total{result="counted"} = %v, want 1`, v)
	}
	if got := r1.inFlight(t); len(got) != 0 {
		t.Errorf("marker left after counting: %v", got)
	}
	r1.stop() // clean

	crashDuringAttempt(t, dir, id)
	r2 := startRun(t, dir, "")
	st := r2.state(t, id)
	want := "in flight at 2 consecutive unclean stops; release with kanmon queue release " + id
	if st.UncleanStops != 2 || !st.Held || st.HoldReason != want {
		t.Fatalf("after unclean stop 2: %+v, want held with reason %q", st, want)
	}
	if !r2.logs.Has("queue", func(l map[string]any) bool {
		return l["op"] == "held" && l["queue_id"] == id && l["reason"] == want && l["unclean_stops"] == 2.0
	}) {
		t.Errorf("no queue op=held line with the reason:\n%s", r2.logs.String())
	}
	if v := r2.uncleanMetric("held"); v != 1 {
		t.Errorf(`kanmon_queue_unclean_stops_total{result="held"} = %v, want 1`, v)
	}
	list, err := r2.sched.List(Filter{})
	if err != nil || len(list) != 1 || !list[0].Held || list[0].HoldReason != want || list[0].UncleanStops != 2 {
		t.Fatalf("List = %+v, %v; want the message held with its reason", list, err)
	}

	if _, err := r2.sched.Apply("release", id, Filter{}); err != nil {
		t.Fatal(err)
	}
	if st := r2.state(t, id); st.Held || st.HoldReason != "" || st.UncleanStops != 0 {
		t.Errorf("after release: %+v, want not held, no reason, no unclean stops", st)
	}
}

// TestHeldAfterUncleanStopsIsNotAttempted: a message held for its unclean
// stops stays out of delivery until released, then is delivered.
func TestHeldAfterUncleanStopsIsNotAttempted(t *testing.T) {
	dir := t.TempDir()
	env := queue.Envelope{From: "a@remote.test", Origin: queue.OriginInbound,
		Recipients: []queue.Recipient{{Addr: "alice@example.org", Account: "alice@example.org"}}}
	id := commitTo(t, dir, env)
	spool, err := queue.Open(filepath.Join(dir, "queue"), queue.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	// Unclean stop 1 was counted by an earlier run; now stop 2.
	if err := spool.SaveState(id, queue.State{Rcpts: make([]queue.RcptState, 1), UncleanStops: 1}); err != nil {
		t.Fatal(err)
	}
	crashDuringAttempt(t, dir, id)
	r := startRun(t, dir, "")
	maildir := filepath.Join(dir, "mail", "example.org", "alice", "new")
	time.Sleep(300 * time.Millisecond) // 15 scheduler ticks
	if ents, _ := os.ReadDir(maildir); len(ents) != 0 {
		t.Fatalf("a message held for unclean stops was delivered (%d files)", len(ents))
	}
	if !r.state(t, id).Held {
		t.Fatal("not held")
	}
	if _, err := r.sched.Apply("release", id, Filter{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery after release", func() bool {
		ents, _ := os.ReadDir(maildir)
		return len(ents) == 1
	})
}

// TestCompletedAttemptResetsUncleanStops: the count is of consecutive
// unclean stops: an attempt that completes (here a local delivery; the
// remote recipient stays queued) sets it back to zero.
func TestCompletedAttemptResetsUncleanStops(t *testing.T) {
	dir := t.TempDir()
	env := queue.Envelope{From: "a@remote.test", Origin: queue.OriginInbound, Recipients: []queue.Recipient{
		{Addr: "alice@example.org", Account: "alice@example.org"}, {Addr: "bob@remote.test"}}}
	id := commitTo(t, dir, env)
	crashDuringAttempt(t, dir, id)
	r := startRun(t, dir, "")
	waitFor(t, "the local delivery", func() bool { return r.state(t, id).Rcpts[0].Done })
	if st := r.state(t, id); st.UncleanStops != 0 || st.Held {
		t.Errorf("after a completed attempt: unclean_stops = %d held = %v, want 0 and false", st.UncleanStops, st.Held)
	}
	// The state is saved before the attempt's marker is cleared.
	waitFor(t, "the in-flight marker cleared after the attempt", func() bool { return len(r.inFlight(t)) == 0 })
	if !strings.Contains(r.logs.String(), `"op":"unclean_stop"`) {
		t.Errorf("the restart did not count the unclean stop:\n%s", r.logs.String())
	}
}

// TestOperatorHoldReason: `kanmon queue hold` records its own reason, and
// a second hold does not overwrite an earlier one.
func TestOperatorHoldReason(t *testing.T) {
	dir := t.TempDir()
	id := commitTo(t, dir, ownUser("bob@remote.test"))
	r := startRun(t, dir, "")
	if _, err := r.sched.Apply("hold", id, Filter{}); err != nil {
		t.Fatal(err)
	}
	in, err := r.sched.Show(id)
	if err != nil || !in.Held || in.HoldReason != holdReasonOperator {
		t.Fatalf("Show after hold = %+v, %v", in, err)
	}
}
