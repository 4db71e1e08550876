package scheduler

// The scheduler on its own: a fake courier stands in for Maildirs and
// SMTP peers, so these tests open no socket. The spool is a real one in a
// temporary directory.

import (
	"context"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"kanmon/internal/courier"
	"kanmon/internal/logging"
	"kanmon/internal/metrics"
	"kanmon/internal/queue"
	"kanmon/internal/testutil/logbuf"
)

// fakeCall is one Deliver call the fake courier saw.
type fakeCall struct {
	id    string
	rcpts []string
	at    time.Time
}

// fakeCourier answers every recipient with what answer returns (nil
// answer: delivered). It records its calls and the most calls it had in
// flight at once, in total and per domain.
type fakeCourier struct {
	answer func(n int, msg *queue.Message, rcpt queue.Recipient) courier.Result

	mu        sync.Mutex
	calls     []fakeCall
	now       int
	peak      int
	perDomain map[string]int
	peakDom   map[string]int
}

func (f *fakeCourier) Deliver(ctx context.Context, msg *queue.Message, rcpts []queue.Recipient) []courier.Result {
	d := courier.DomainOf(rcpts[0].Addr)
	f.mu.Lock()
	n := len(f.calls)
	f.calls = append(f.calls, fakeCall{id: msg.Envelope.ID, rcpts: courier.Addrs(rcpts), at: time.Now()})
	if f.perDomain == nil {
		f.perDomain, f.peakDom = map[string]int{}, map[string]int{}
	}
	f.now++
	f.perDomain[d]++
	f.peak = max(f.peak, f.now)
	f.peakDom[d] = max(f.peakDom[d], f.perDomain[d])
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.now--
		f.perDomain[d]--
		f.mu.Unlock()
	}()
	out := make([]courier.Result, len(rcpts))
	for i, r := range rcpts {
		out[i] = courier.Result{Rcpt: r.Addr, OK: true, Code: 250, Enhanced: "2.0.0", Text: "ok"}
		if f.answer != nil {
			out[i] = f.answer(n, msg, r)
			out[i].Rcpt = r.Addr
		}
	}
	return out
}

func (f *fakeCourier) callsFor(id string) []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeCall
	for _, c := range f.calls {
		if c.id == id {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeCourier) peaks() (total int, perDomain map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	perDomain = map[string]int{}
	for d, n := range f.peakDom {
		perDomain[d] = n
	}
	return f.peak, perDomain
}

// fakeEnv is a scheduler over a fresh spool with fake as its remote
// courier (and local, unless mutate changes it).
type fakeEnv struct {
	dir   string
	spool *queue.Spool
	sched *Scheduler
	logs  *logbuf.Buffer
	fake  *fakeCourier
	stop  func()
}

func newFakeEnv(t *testing.T, fake *fakeCourier, mutate func(*Scheduler)) *fakeEnv {
	t.Helper()
	dir := t.TempDir()
	spool, err := queue.Open(filepath.Join(dir, "queue"), queue.Limits{MaxMessages: 10000, MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	e := &fakeEnv{dir: dir, spool: spool, logs: &logbuf.Buffer{}, fake: fake}
	e.sched = &Scheduler{
		Spool: spool, Log: logging.New(e.logs, "json", slog.LevelDebug),
		Metrics: metrics.New(func() float64 { return 0 }, func() float64 { return 0 }),
		Workers: 8, RetryMin: 50 * time.Millisecond, RetryMax: 400 * time.Millisecond, Tick: 5 * time.Millisecond,
		Local: fake, Remote: fake, MaxConcurrency: 32, MaxPerDomain: 4,
	}
	if mutate != nil {
		mutate(e.sched)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.sched.Start(ctx)
	var once sync.Once
	e.stop = func() { once.Do(func() { cancel(); e.sched.Wait() }) }
	t.Cleanup(func() {
		e.stop()
		if t.Failed() {
			t.Logf("scheduler log:\n%s", e.logs.String())
		}
	})
	return e
}

// submit commits a message and hands its envelope to the scheduler.
func (e *fakeEnv) submit(t *testing.T, env queue.Envelope) string {
	t.Helper()
	w, err := e.spool.Create(env)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(testMessage(env.From, env.Recipients[0].Addr, "fake")))
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	e.sched.Enqueue(w.Envelope())
	return w.ID()
}

func (e *fakeEnv) gone(id string) bool {
	_, err := e.spool.Open(id)
	return err != nil
}

func deferAll(int, *queue.Message, queue.Recipient) courier.Result {
	return courier.Result{Code: 451, Enhanced: "4.2.0", Text: "try later"}
}

// TestBackoffDoublesToMax: the retry delay starts at RetryMin, doubles
// with each attempt and stays at RetryMax.
func TestBackoffDoublesToMax(t *testing.T) {
	s := &Scheduler{RetryMin: time.Minute, RetryMax: 5 * time.Minute}
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 5 * time.Minute, 5 * time.Minute}
	for i, w := range want {
		if got := s.backoff(i + 1); got != w {
			t.Errorf("backoff(%d) = %v, want %v", i+1, got, w)
		}
	}
}

// TestFakeRetrySchedule: a recipient deferred again and again is tried
// after RetryMin, then twice as long each time, never sooner, and the
// planned next attempt is recorded in the queue.
func TestFakeRetrySchedule(t *testing.T) {
	fake := &fakeCourier{answer: deferAll}
	e := newFakeEnv(t, fake, nil)
	id := e.submit(t, ownUser("bob@remote.test"))
	waitFor(t, "five attempts", func() bool { return len(fake.callsFor(id)) >= 5 })
	calls := fake.callsFor(id)
	want := []time.Duration{50, 100, 200, 400} // ms: RetryMin doubling to RetryMax
	for i, w := range want {
		gap := calls[i+1].at.Sub(calls[i].at)
		if gap < w*time.Millisecond-5*time.Millisecond {
			t.Errorf("attempt %d came %v after attempt %d, want at least %dms", i+2, gap, i+1, w)
		}
	}
	if !e.logs.Has("delivery", func(l map[string]any) bool {
		return l["queue_id"] == id && l["result"] == "deferred" && l["attempt"] == 3.0 && l["next"] != nil
	}) {
		t.Errorf("no deferred delivery line for attempt 3 with next")
	}
}

// TestFakeExpiry: mail still undelivered after Expire fails its
// recipients with 4.4.7 and the last error; mail from outside is then
// dropped without a DSN and leaves the queue.
func TestFakeExpiry(t *testing.T) {
	fake := &fakeCourier{answer: deferAll}
	e := newFakeEnv(t, fake, func(s *Scheduler) { s.Expire = 300 * time.Millisecond })
	id := e.submit(t, queue.Envelope{From: "someone@outside.test", Origin: queue.OriginInbound,
		Recipients: []queue.Recipient{{Addr: "bob@remote.test"}}})
	waitFor(t, "the message to expire and leave", func() bool { return e.gone(id) })
	if !e.logs.Has("delivery", func(l map[string]any) bool {
		reply, _ := l["reply"].(string)
		return l["queue_id"] == id && l["result"] == "failed" &&
			strings.HasPrefix(reply, "4.4.7 expired: undelivered after 300ms") && strings.Contains(reply, "last error: 451 4.2.0 try later")
	}) {
		t.Errorf("no failed delivery line with 4.4.7 and the last error")
	}
	if !e.logs.Has("queue", func(l map[string]any) bool {
		return l["queue_id"] == id && l["op"] == "dropped" && l["bounce"] == false
	}) {
		t.Errorf("no queue op=dropped line")
	}
	if n := len(fake.callsFor(id)); n < 2 {
		t.Errorf("%d attempts before expiry, want several", n)
	}
}

// TestFakeBounceFloodDoesNotStarveNormal: while every connection of the
// bounce lane hangs on a flood of null-sender mail, normal mail still
// goes out at once.
func TestFakeBounceFloodDoesNotStarveNormal(t *testing.T) {
	release := make(chan struct{})
	fake := &fakeCourier{answer: func(_ int, msg *queue.Message, _ queue.Recipient) courier.Result {
		if msg.Envelope.From == "" {
			<-release
		}
		return courier.Result{OK: true, Code: 250, Enhanced: "2.0.0", Text: "ok"}
	}}
	e := newFakeEnv(t, fake, func(s *Scheduler) { s.MaxConcurrency = 8 })
	defer close(release)
	for i := range 40 {
		e.submit(t, queue.Envelope{From: "", Origin: queue.OriginLocal,
			Recipients: []queue.Recipient{{Addr: "x@flood" + strconv.Itoa(i) + ".test"}}})
	}
	waitFor(t, "the bounce lane to be busy", func() bool { total, _ := fake.peaks(); return total >= 2 })
	id := e.submit(t, ownUser("bob@remote.test"))
	start := time.Now()
	waitFor(t, "normal mail to be delivered", func() bool { return e.gone(id) })
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("normal mail took %v behind the bounce flood", took)
	}
	if total, _ := fake.peaks(); total > 8 {
		t.Errorf("%d attempts at once, want at most MaxConcurrency 8", total)
	}
}

// TestFakeSlots: attempts to one domain never exceed MaxPerDomain at once,
// and attempts in total never exceed the normal lane's share of
// MaxConcurrency; everything is delivered in the end.
func TestFakeSlots(t *testing.T) {
	fake := &fakeCourier{answer: func(int, *queue.Message, queue.Recipient) courier.Result {
		time.Sleep(30 * time.Millisecond)
		return courier.Result{OK: true, Code: 250, Enhanced: "2.0.0", Text: "ok"}
	}}
	// 8 in total: 2 kept for the bounce lane, 6 for normal mail.
	e := newFakeEnv(t, fake, func(s *Scheduler) { s.Workers, s.MaxConcurrency, s.MaxPerDomain = 16, 8, 2 })
	var ids []string
	for i := range 12 {
		ids = append(ids, e.submit(t, ownUser("u"+strconv.Itoa(i)+"@one.test")))
	}
	for i := range 12 {
		ids = append(ids, e.submit(t, ownUser("u@many"+strconv.Itoa(i)+".test")))
	}
	waitFor(t, "every message delivered", func() bool {
		for _, id := range ids {
			if !e.gone(id) {
				return false
			}
		}
		return true
	})
	total, perDomain := fake.peaks()
	if perDomain["one.test"] != 2 {
		t.Errorf("one.test: %d attempts at once at the peak, want exactly MaxPerDomain 2", perDomain["one.test"])
	}
	if total > 6 || total < 3 {
		t.Errorf("%d attempts at once at the peak, want between 3 and the normal lane's 6", total)
	}
}

// TestFakeHeldAfterUncleanStops: a message in flight at two consecutive
// unclean stops is held at start and never handed to a courier.
func TestFakeHeldAfterUncleanStops(t *testing.T) {
	dir := t.TempDir()
	id := commitTo(t, dir, ownUser("bob@remote.test"))
	crashDuringAttempt(t, dir, id)
	r1 := startRun(t, dir, "") // counts one unclean stop
	r1.stop()
	crashDuringAttempt(t, dir, id)
	spool, err := queue.Open(filepath.Join(dir, "queue"), queue.Limits{MaxMessages: 1000, MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeCourier{}
	logs := &logbuf.Buffer{}
	s := &Scheduler{Spool: spool, Log: logging.New(logs, "json", slog.LevelDebug), Remote: fake, Local: fake,
		RetryMin: 10 * time.Millisecond, Tick: 5 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	s.Start(ctx)
	defer func() { cancel(); s.Wait() }()
	time.Sleep(200 * time.Millisecond) // many ticks
	if n := len(fake.callsFor(id)); n != 0 {
		t.Errorf("a held message was handed to the courier %d times", n)
	}
	m, err := spool.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !m.State.Held || m.State.UncleanStops != 2 {
		t.Errorf("state %+v, want held after 2 unclean stops", m.State)
	}
}

// TestPanicInCourierContained: a courier that panics on a message's first
// attempt costs that attempt only: it is deferred with 451 4.3.0, logged
// as one panic line with the queue id and the stack, counted, the
// in-flight marker is cleared, other mail is delivered meanwhile, and the
// message goes out on its next attempt.
func TestPanicInCourierContained(t *testing.T) {
	var victim sync.Map
	fake := &fakeCourier{}
	fake.answer = func(_ int, msg *queue.Message, _ queue.Recipient) courier.Result {
		if _, ok := victim.Load(msg.Envelope.ID); ok && len(fake.callsFor(msg.Envelope.ID)) == 1 {
			panic("courier bug")
		}
		return courier.Result{OK: true, Code: 250, Enhanced: "2.0.0", Text: "ok"}
	}
	e := newFakeEnv(t, fake, func(s *Scheduler) { s.RetryMin = 300 * time.Millisecond })
	w, err := e.spool.Create(ownUser("bob@remote.test"))
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(testMessage("alice@example.org", "bob@remote.test", "panic")))
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	id := w.ID()
	victim.Store(id, true)
	e.sched.Enqueue(w.Envelope())
	waitFor(t, "the first attempt", func() bool { return len(fake.callsFor(id)) == 1 })
	others := []string{e.submit(t, ownUser("carol@other.test")), e.submit(t, ownUser("dave@more.test"))}
	waitFor(t, "the message to be delivered on retry", func() bool { return e.gone(id) })
	for _, o := range others {
		if !e.gone(o) {
			t.Errorf("%s not delivered", o)
		} else if c := fake.callsFor(o); len(c) != 1 || !c[0].at.Before(fake.callsFor(id)[1].at) {
			t.Errorf("%s was not delivered while the panicked message waited", o)
		}
	}
	panics := e.logs.Lines("panic")
	if len(panics) != 1 {
		t.Fatalf("%d panic lines, want 1", len(panics))
	}
	stack, _ := panics[0]["stack"].(string)
	if panics[0]["queue_id"] != id || panics[0]["where"] != "delivery" || !strings.Contains(stack, "goroutine") ||
		!strings.Contains(stack, "fake_test.go") {
		t.Errorf("panic line %v: want queue_id %s, where=delivery and the stack", panics[0], id)
	}
	if strings.Count(e.logs.String(), `"msg":"panic"`) != 1 {
		t.Errorf("the panic is not on one line")
	}
	if !e.logs.Has("delivery", func(l map[string]any) bool {
		return l["queue_id"] == id && l["result"] == "deferred" && l["reply"] == "451 4.3.0 internal error during delivery"
	}) {
		t.Errorf("the panicked attempt is not a deferred delivery line with 451 4.3.0")
	}
	if v := counterValue(t, e.sched.Metrics, "kanmon_panics_total", "delivery"); v != 1 {
		t.Errorf(`kanmon_panics_total{where="delivery"} = %v, want 1`, v)
	}
	if ids, _ := e.spool.InFlight(); len(ids) != 0 {
		t.Errorf("in-flight markers left: %v", ids)
	}
}

// counterValue reads a counter with one label value from the registry.
func counterValue(t *testing.T, m *metrics.Metrics, name, label string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, c := range mf.GetMetric() {
			if c.GetLabel()[0].GetValue() == label {
				return c.GetCounter().GetValue()
			}
		}
	}
	return -1
}

// TestEnqueueUsesEnvelopeInMemory: Enqueue schedules a message in its lane
// from the envelope it is handed, without reading the queue file (here
// there is none to read).
func TestEnqueueUsesEnvelopeInMemory(t *testing.T) {
	spool, err := queue.Open(filepath.Join(t.TempDir(), "queue"), queue.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	s := &Scheduler{Spool: spool, Log: logging.New(&logbuf.Buffer{}, "json", slog.LevelDebug)}
	s.Enqueue(&queue.Envelope{ID: "qinmemory1", From: "", Origin: queue.OriginLocal, Received: time.Now(),
		Recipients: []queue.Recipient{{Addr: "alice@example.org"}}})
	s.mu.Lock()
	e := s.index["qinmemory1"]
	s.mu.Unlock()
	if e == nil || e.lane != LaneBounce {
		t.Fatalf("index entry %+v, want one in the bounce lane", e)
	}
}
