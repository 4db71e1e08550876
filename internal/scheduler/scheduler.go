// Package scheduler owns the queue while messages wait in it: it keeps an
// index of the spool in memory (lane, next attempt, held), hands due
// messages to the workers of their lane, takes connection slots, calls a
// courier for each group of recipients, records each recipient's result,
// asks package dsn to report failures, and removes or reschedules the
// message. Operator commands (list, show, hold, release, delete, flush:
// ops.go) go through it too, because it owns a message while a worker is
// on it, so an operator and a worker never race on the same message.
//
// One message's way through a worker (process.go): expire, pick the due
// recipients, group them by courier and domain, take slots, deliver,
// record results, report, remove or reschedule. A panic anywhere in one
// attempt is contained: the attempt counts as deferred ("451 4.3.0
// internal error during delivery"), the message is retried on the normal
// schedule, and one `panic` log line carries the queue id and the stack.
//
// Everything goes through the queue (one way through): the SMTP "250"
// waits only for the queue's fsync, and the workers then deliver each
// recipient and record its state. A crash in between delivers that
// recipient again after restart (at least once, never lost).
//
// # Scheduling
//
// There are two lanes with their own workers and connection bounds:
// "bounce" (DSNs and any mail from the null sender) and "normal"
// (everything else), so a flood of either cannot starve the other.
// Outgoing connections are bounded in total (split between the lanes) and
// per destination domain; a domain at its bound is skipped and tried
// again when a slot frees, without blocking a worker. Temporary failures
// (4xx, no answer, DNS trouble) are retried with exponential backoff from
// RetryMin to RetryMax; permanent ones (5xx, null MX, no such domain) fail
// the recipient at once; a message older than Expire fails its remaining
// recipients. A message whose attempts were in flight at two consecutive
// unclean stops of the server is held instead of being tried again (see
// unclean.go).
//
// SECURITY: the scheduler trusts the spool's envelopes (written by smtpd
// after policy) and nothing a courier reports beyond its Result: a
// Result's Detail goes to the log only, its reply to the queue state and
// DSNs. Every structure it keeps is bounded by the queue's own limits.
package scheduler

import (
	"cmp"
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kanmon/internal/courier"
	"kanmon/internal/dsn"
	"kanmon/internal/metrics"
	"kanmon/internal/queue"
)

// Lanes.
const (
	// LaneNormal carries ordinary mail.
	LaneNormal = "normal"
	// LaneBounce carries DSNs and any mail from the null sender.
	LaneBounce = "bounce"
)

// LaneOf returns the lane a message is scheduled in.
func LaneOf(env *queue.Envelope) string {
	if env.From == "" || env.Origin == queue.OriginLocal {
		return LaneBounce
	}
	return LaneNormal
}

// busyDelay is how soon a domain at its connection bound is tried again
// at the latest; usually a freed connection slot wakes a waiting message
// sooner (releaseDomain).
const busyDelay = 500 * time.Millisecond

// Scheduler runs delivery workers over the spool.
type Scheduler struct {
	// Spool is the queue the scheduler owns while it works on a message.
	Spool *queue.Spool
	// Log gets the `delivery`, `queue` and `panic` lines.
	Log *slog.Logger
	// Metrics counts deliveries and panics (nil: none are counted).
	Metrics *metrics.Metrics
	// Workers is the number of workers of the normal lane; the bounce
	// lane gets a quarter of it (at least 2).
	Workers int
	// RetryMin is the first retry delay (default 5m); it doubles with
	// each attempt up to RetryMax.
	RetryMin time.Duration
	RetryMax time.Duration
	// Expire fails what is still undelivered this long after arrival
	// (0: never).
	Expire time.Duration
	// Local delivers to recipients with a local account; Remote to the
	// others, one domain per call. Nil keeps those recipients queued.
	Local  courier.Courier
	Remote courier.Courier
	// Reports sends DSNs (nil: a Reporter on Spool and Log with no
	// delay warnings).
	Reports *dsn.Reporter
	// MaxConcurrency bounds remote connections in total (default 32): a
	// quarter (at least 1) is kept for the bounce lane.
	MaxConcurrency int
	// MaxPerDomain bounds remote connections per domain and lane (default 4).
	MaxPerDomain int
	// Tick is how often due messages are looked for (default 1s); the
	// spool directory itself is re-read every 5 minutes.
	Tick time.Duration

	mu         sync.Mutex
	index      map[string]*entry
	inflight   map[string]bool
	lanes      map[string]chan string
	sems       map[string]chan struct{}
	domainBusy map[string]int
	// domainWait lists messages that found their domain at its bound, by
	// lane/domain key, so a freed slot wakes one at once.
	domainWait map[string][]string
	ctx        context.Context
	wg         sync.WaitGroup
	// uncleanStops counts messages found in flight at startup (unclean.go).
	uncleanStops *prometheus.CounterVec
}

// entry is what the scheduler remembers about a queued message.
type entry struct {
	lane     string
	next     time.Time // zero: due now
	held     bool
	received time.Time
	op       string // operator action waiting for the worker: "delete", "hold"
}

// init makes the maps and the default Reporter; every entry point calls
// it, so a Scheduler literal works without a constructor.
func (s *Scheduler) init() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Reports == nil {
		s.Reports = &dsn.Reporter{}
	}
	if s.Reports.Spool == nil || s.Reports.Log == nil {
		r := *s.Reports
		r.Spool, r.Log = cmp.Or(r.Spool, s.Spool), cmp.Or(r.Log, s.Log)
		s.Reports = &r
	}
	if s.index == nil {
		s.index = map[string]*entry{}
		s.inflight = map[string]bool{}
		s.domainBusy = map[string]int{}
	}
}

// Start recovers the queue (every message on disk is scheduled again) and
// starts the workers; they stop when ctx ends.
func (s *Scheduler) Start(ctx context.Context) {
	s.init()
	total := s.MaxConcurrency
	if total <= 0 {
		total = 32
	}
	bounceConns := max(1, total/4)
	normalWorkers := max(s.Workers, 1)
	s.mu.Lock()
	s.ctx = ctx
	s.lanes = map[string]chan string{LaneNormal: make(chan string, 4096), LaneBounce: make(chan string, 4096)}
	s.sems = map[string]chan struct{}{
		LaneNormal: make(chan struct{}, max(1, total-bounceConns)),
		LaneBounce: make(chan struct{}, bounceConns),
	}
	s.mu.Unlock()
	s.registerMetrics()
	s.registerUncleanMetric()
	// Before any worker runs: what the previous run left in flight.
	s.recoverUnclean()
	workers := map[string]int{LaneNormal: normalWorkers, LaneBounce: max(2, normalWorkers/4)}
	for lane, n := range workers {
		ch := s.lanes[lane]
		for i := 0; i < n; i++ {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				for {
					select {
					case <-ctx.Done():
						return
					case id := <-ch:
						s.work(ctx, id, lane)
					}
				}
			}()
		}
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.rescan()
		tick := s.Tick
		if tick <= 0 {
			tick = time.Second
		}
		t := time.NewTicker(tick)
		defer t.Stop()
		lastScan := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if time.Since(lastScan) > 5*time.Minute {
					s.rescan()
					lastScan = time.Now()
				}
				s.dispatchDue()
			}
		}
	}()
}

// Wait waits for the workers after ctx ended.
func (s *Scheduler) Wait() {
	s.wg.Wait()
	// The remote courier keeps idle connections between messages; with
	// no delivery left to use them, they end with QUIT now.
	if c, ok := s.Remote.(interface{ Close() }); ok {
		c.Close()
	}
}

// Enqueue schedules a newly committed message now. It takes the envelope
// in memory (smtpd and package dsn hand it over right after the commit),
// so the lane is known without reading the file back. If its lane's
// channel is full, the next tick picks it up: it is safe on disk either
// way.
func (s *Scheduler) Enqueue(env *queue.Envelope) {
	s.init()
	lane := LaneOf(env)
	s.mu.Lock()
	if _, ok := s.index[env.ID]; !ok {
		s.index[env.ID] = &entry{lane: lane, received: env.Received}
	}
	s.mu.Unlock()
	s.enqueue(env.ID, lane)
}

// enqueue hands id to its lane's workers unless a worker or an operator
// command has it already.
func (s *Scheduler) enqueue(id, lane string) {
	s.init()
	s.mu.Lock()
	e, ok := s.index[id]
	if !ok {
		e = &entry{lane: lane, received: time.Now()}
		s.index[id] = e
	}
	e.next = time.Time{}
	ch := s.lanes[lane]
	if s.inflight[id] || ch == nil {
		s.mu.Unlock()
		return
	}
	s.inflight[id] = true
	s.mu.Unlock()
	select {
	case ch <- id:
	default:
		s.done(id)
	}
}

func (s *Scheduler) done(id string) {
	s.mu.Lock()
	delete(s.inflight, id)
	s.mu.Unlock()
}

// dispatchDue enqueues every message whose next attempt is due.
func (s *Scheduler) dispatchDue() {
	now := time.Now()
	type due struct{ id, lane string }
	var list []due
	s.mu.Lock()
	for id, e := range s.index {
		if !e.held && !s.inflight[id] && !e.next.After(now) {
			list = append(list, due{id, e.lane})
		}
	}
	s.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].id < list[j].id })
	for _, d := range list {
		s.enqueue(d.id, d.lane)
	}
}

// rescan reads the spool directory: messages not yet known are learned
// (and due now), entries whose file is gone are forgotten.
func (s *Scheduler) rescan() {
	ids, err := s.Spool.IDs()
	if err != nil {
		s.Log.Error("queue", "op", "scan", "err", err.Error())
		return
	}
	onDisk := make(map[string]bool, len(ids))
	for _, id := range ids {
		onDisk[id] = true
		s.mu.Lock()
		_, known := s.index[id]
		s.mu.Unlock()
		if known {
			continue
		}
		m, err := s.Spool.Open(id)
		if err != nil {
			continue // removed meanwhile, or unreadable (logged on processing)
		}
		e := &entry{lane: LaneOf(&m.Envelope), received: m.Envelope.Received, held: m.State.Held, next: nextAttempt(m, s.Expire)}
		m.Close()
		s.mu.Lock()
		if _, known := s.index[id]; !known {
			s.index[id] = e
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	for id := range s.index {
		if !onDisk[id] && !s.inflight[id] {
			delete(s.index, id)
		}
	}
	s.mu.Unlock()
}

// nextAttempt is the earliest time any pending recipient is due (or the
// expiry time, when earlier).
func nextAttempt(m *queue.Message, expire time.Duration) time.Time {
	var next time.Time
	first := true
	for _, st := range m.State.Rcpts {
		if st.Failed && !st.Reported {
			return time.Time{}
		}
		if st.Done || st.Failed {
			continue
		}
		if first || st.Next.Before(next) {
			next, first = st.Next, false
		}
	}
	if expire > 0 {
		if exp := m.Envelope.Received.Add(expire); !first && exp.Before(next) {
			next = exp
		}
	}
	return next
}

func (s *Scheduler) setNext(id string, next time.Time) {
	s.mu.Lock()
	if e := s.index[id]; e != nil {
		e.next = next
	}
	s.mu.Unlock()
}

func (s *Scheduler) forget(id string) {
	s.mu.Lock()
	delete(s.index, id)
	s.mu.Unlock()
}

// registerMetrics adds queue depth per lane and the oldest message's age.
func (s *Scheduler) registerMetrics() {
	if s.Metrics == nil {
		return
	}
	depth := func(lane string) func() float64 {
		return func() float64 {
			s.mu.Lock()
			defer s.mu.Unlock()
			n := 0
			for _, e := range s.index {
				if e.lane == lane {
					n++
				}
			}
			return float64(n)
		}
	}
	for _, lane := range []string{LaneNormal, LaneBounce} {
		_ = s.Metrics.Registry.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kanmon_queue_lane_messages", Help: "Messages in the queue, by scheduling lane.",
			ConstLabels: prometheus.Labels{"lane": lane},
		}, depth(lane)))
	}
	_ = s.Metrics.Registry.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "kanmon_queue_oldest_age_seconds", Help: "Age of the oldest message in the queue (0 when empty).",
	}, func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		var oldest time.Time
		for _, e := range s.index {
			if oldest.IsZero() || e.received.Before(oldest) {
				oldest = e.received
			}
		}
		if oldest.IsZero() {
			return 0
		}
		return time.Since(oldest).Seconds()
	}))
}
