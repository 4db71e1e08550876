// Package delivery takes messages out of the queue and delivers them: to
// local accounts' Maildirs, and to other servers over SMTP (MX lookup,
// static routes or a smarthost: see Remote). When a recipient finally
// fails it reports the failure: a DSN for our own users' mail, a log line
// and nothing else for mail from outside (law 3).
//
// Everything goes through the queue (one way through): the SMTP "250"
// waits only for the queue's fsync, and this package's workers then
// deliver each recipient and record its state. A crash in between
// delivers that recipient again after restart (at least once, never lost).
// DSNs are themselves queued messages (null sender, Origin local).
//
// # Scheduling
//
// The Scheduler keeps an index of the spool in memory (lane, next attempt,
// held) and hands due messages to the workers of their lane. There are two
// lanes with their own workers and connection bounds: "bounce" (DSNs and
// any mail from the null sender) and "normal" (everything else), so a
// flood of either cannot starve the other. Outgoing connections are
// bounded in total (split between the lanes) and per destination domain;
// a domain at its bound is skipped and tried again shortly, without
// blocking a worker. Temporary failures (4xx, no answer, DNS trouble) are
// retried with exponential backoff from RetryMin to RetryMax; permanent
// ones (5xx, null MX, no such domain) fail the recipient at once; a
// message older than Expire fails its remaining recipients. A message
// whose attempts were in flight at two consecutive unclean stops of the
// server is held instead of being tried again (see unclean.go).
//
// Operator commands (list, hold, release, delete, flush) go through the
// Scheduler too (see ops.go), which owns a message while it works on it,
// so an operator and a worker never race on the same message.
//
// SECURITY: Maildir paths come from accounts resolved at RCPT time and
// validated by the directory package, never from message content. Remote
// peers and DNS answers are untrusted: their replies are recorded and
// logged as text, and never choose a file or a host outside the resolver's
// answers. TLS to MX hosts is opportunistic and unverified (no MTA-STS or
// DANE yet); TLS to the smarthost is verified, and its credentials are sent
// only over TLS and never logged.
package delivery

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kanmon/internal/directory"
	"kanmon/internal/maildir"
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
	Spool    *queue.Spool
	MailRoot string
	Log      *slog.Logger
	Metrics  *metrics.Metrics
	// Workers is the number of workers of the normal lane; the bounce
	// lane gets a quarter of it (at least 2).
	Workers  int
	RetryMin time.Duration
	RetryMax time.Duration
	// Expire fails what is still undelivered this long after arrival
	// (0: never).
	Expire time.Duration
	// DelayWarning sends our own users a "delayed" DSN once a message has
	// waited this long (0: never).
	DelayWarning time.Duration
	// Remote delivers to other servers; nil keeps remote recipients queued.
	Remote *Remote
	// Hostname names this server in DSNs.
	Hostname string
	// LocalAccount resolves a DSN's recipient to a local account, when
	// the sender is one of ours (nil: every DSN goes out by SMTP).
	LocalAccount func(addr string) (string, bool)
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

func (s *Scheduler) init() {
	s.mu.Lock()
	defer s.mu.Unlock()
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
						s.process(ctx, id, lane)
						s.applyOp(id)
						s.done(id)
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
func (s *Scheduler) Wait() { s.wg.Wait() }

// Enqueue schedules a newly committed message now. If its lane's channel
// is full, the next tick picks it up: it is safe on disk either way.
func (s *Scheduler) Enqueue(id string) {
	s.init()
	m, err := s.Spool.Open(id)
	if err != nil {
		s.Log.Error("queue", "queue_id", id, "op", "open", "err", err.Error())
		return
	}
	lane, received := LaneOf(&m.Envelope), m.Envelope.Received
	m.Close()
	s.mu.Lock()
	if _, ok := s.index[id]; !ok {
		s.index[id] = &entry{lane: lane, received: received}
	}
	s.mu.Unlock()
	s.enqueue(id, lane)
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

func (s *Scheduler) backoff(attempts int) time.Duration {
	d := s.RetryMin
	if d <= 0 {
		d = 5 * time.Minute
	}
	for i := 1; i < attempts && d < s.RetryMax; i++ {
		d *= 2
	}
	if s.RetryMax > 0 {
		d = min(d, s.RetryMax)
	}
	return d
}

// tryDomain takes a connection slot for domain in lane, or reports that
// the domain is at its bound.
func (s *Scheduler) tryDomain(lane, domain string) bool {
	limit := s.MaxPerDomain
	if limit <= 0 {
		limit = 4
	}
	key := lane + "/" + domain
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.domainBusy[key] >= limit {
		return false
	}
	s.domainBusy[key]++
	return true
}

func (s *Scheduler) releaseDomain(lane, domain string) {
	key := lane + "/" + domain
	s.mu.Lock()
	if s.domainBusy[key]--; s.domainBusy[key] <= 0 {
		delete(s.domainBusy, key)
	}
	var wake string
	if w := s.domainWait[key]; len(w) > 0 {
		wake = w[0]
		if len(w) == 1 {
			delete(s.domainWait, key)
		} else {
			s.domainWait[key] = w[1:]
		}
	}
	s.mu.Unlock()
	if wake != "" {
		// Wake a waiting message now; if it is still being processed, its
		// busyDelay retry picks it up.
		go s.wakeLater(wake, lane)
	}
}

// wakeLater re-enqueues id once its current processing (which put it on
// the wait list) has finished.
func (s *Scheduler) wakeLater(id, lane string) {
	for i := 0; i < 50; i++ {
		s.mu.Lock()
		e, known := s.index[id]
		busy := s.inflight[id]
		s.mu.Unlock()
		if !known || (e != nil && e.held) {
			return
		}
		if !busy {
			s.enqueue(id, lane)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}

func (s *Scheduler) count(kind, result string) {
	if s.Metrics != nil {
		s.Metrics.Deliveries.WithLabelValues(kind, result).Inc()
	}
}

func (s *Scheduler) process(ctx context.Context, id, lane string) {
	if s.applyOp(id) {
		return
	}
	m, err := s.Spool.Open(id)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			s.forget(id)
			return
		}
		s.Log.Error("queue", "queue_id", id, "op", "open", "err", err.Error())
		s.setNext(id, time.Now().Add(s.backoff(1)))
		return
	}
	defer m.Close()
	env := &m.Envelope
	if m.State.Held {
		s.mu.Lock()
		if e := s.index[id]; e != nil {
			e.held = true
		}
		s.mu.Unlock()
		return
	}
	// The in-flight marker spans every attempt below (unclean.go).
	mark := &attemptMark{s: s, id: id}
	defer mark.end()
	now := time.Now()
	expired := s.Expire > 0 && now.Sub(env.Received) >= s.Expire
	changed := false
	busy := false
	groups := map[string][]int{}
	for i, r := range env.Recipients {
		st := &m.State.Rcpts[i]
		if st.Done || st.Failed {
			continue
		}
		if expired {
			st.Failed, changed = true, true
			last := st.Last
			st.Last = "4.4.7 expired: undelivered after " + s.Expire.String() + " in the queue"
			if last != "" {
				st.Last += "; last error: " + last
			}
			s.count(kindOf(r), "failed")
			s.Log.Warn("delivery", "queue_id", id, "conn", env.ConnID, "rcpt", r.Addr, "result", "failed",
				"reply", st.Last, "attempts", st.Attempts)
			continue
		}
		if now.Before(st.Next) {
			continue
		}
		if r.Account != "" {
			st.Attempts++
			changed = true
			mark.begin()
			name, err := s.deliverLocal(m, r)
			if err != nil {
				st.Last = err.Error()
				st.Next = now.Add(s.backoff(st.Attempts))
				s.count("local", "deferred")
				s.Log.Warn("delivery", "queue_id", id, "conn", env.ConnID, "rcpt", r.Addr, "account", r.Account,
					"result", "deferred", "err", err.Error(), "next", st.Next.Format(time.RFC3339))
				continue
			}
			st.Done = true
			st.Last = "delivered to Maildir " + name
			s.count("local", "delivered")
			s.Log.Info("delivery", "queue_id", id, "conn", env.ConnID, "rcpt", r.Addr, "account", r.Account,
				"result", "delivered", "mailbox", "maildir")
			continue
		}
		d := domainOf(r.Addr)
		groups[d] = append(groups[d], i)
	}
	domains := make([]string, 0, len(groups))
	for d := range groups {
		domains = append(domains, d)
	}
	sort.Strings(domains)
	for _, d := range domains {
		if s.Remote == nil {
			continue // no remote delivery configured: stays queued
		}
		if !s.tryDomain(lane, d) {
			busy = true
			s.mu.Lock()
			if s.domainWait == nil {
				s.domainWait = map[string][]string{}
			}
			key := lane + "/" + d
			if len(s.domainWait[key]) < 10000 {
				s.domainWait[key] = append(s.domainWait[key], id)
			}
			s.mu.Unlock()
			continue
		}
		if !s.acquire(ctx, lane) {
			s.releaseDomain(lane, d)
			break
		}
		idxs := groups[d]
		addrs := make([]string, len(idxs))
		for k, i := range idxs {
			addrs[k] = env.Recipients[i].Addr
		}
		start := time.Now()
		mark.begin()
		results := s.Remote.Deliver(ctx, env, d, addrs, m.Body)
		s.release(lane)
		s.releaseDomain(lane, d)
		if ctx.Err() != nil {
			// Stopping: the attempt was cut short; do not count it.
			return
		}
		for k, i := range idxs {
			res := results[k]
			st := &m.State.Rcpts[i]
			st.Attempts++
			changed = true
			st.Last = res.Reply()
			args := []any{"queue_id", id, "conn", env.ConnID, "rcpt", res.Rcpt, "lane", lane, "mx", res.MX, "tls", res.TLS,
				"reply", res.Reply(), "attempt", st.Attempts, "duration_ms", time.Since(start).Milliseconds()}
			switch {
			case res.OK:
				st.Done = true
				s.count("remote", "delivered")
				s.Log.Info("delivery", append(args, "result", "delivered")...)
			case res.Permanent:
				st.Failed = true
				s.count("remote", "failed")
				s.Log.Warn("delivery", append(args, "result", "failed")...)
			default:
				st.Next = time.Now().Add(s.backoff(st.Attempts))
				s.count("remote", "deferred")
				s.Log.Warn("delivery", append(args, "result", "deferred", "next", st.Next.Format(time.RFC3339))...)
			}
		}
	}
	if mark.marked && m.State.UncleanStops > 0 {
		// An attempt completed: the count is of consecutive unclean stops.
		m.State.UncleanStops = 0
		changed = true
	}
	if s.report(m) {
		changed = true
	}
	if s.warnDelay(m, now) {
		changed = true
	}
	if !m.Pending() {
		if err := s.Spool.Remove(id); err != nil {
			s.Log.Error("queue", "queue_id", id, "op", "remove", "err", err.Error())
			s.setNext(id, time.Now().Add(s.backoff(1)))
			return
		}
		s.forget(id)
		s.Log.Info("queue", "queue_id", id, "op", "removed", "reason", "all recipients done")
		return
	}
	if changed {
		if err := s.Spool.SaveState(id, m.State); err != nil {
			s.Log.Error("queue", "queue_id", id, "op", "state", "err", err.Error())
		}
	}
	next := nextAttempt(m, s.Expire)
	for _, st := range m.State.Rcpts {
		if st.Failed && !st.Reported {
			// The report could not be queued (queue full?): try again later.
			next = time.Now().Add(s.backoff(1))
		}
	}
	if !next.After(now) {
		if busy {
			// A domain was at its connection bound: try again shortly.
			next = time.Now().Add(busyDelay)
		} else {
			// Nothing became due later (no remote delivery configured, or
			// stopping): look again after the shortest backoff.
			next = time.Now().Add(s.backoff(1))
		}
	}
	s.setNext(id, next)
}

func kindOf(r queue.Recipient) string {
	if r.Account != "" {
		return "local"
	}
	return "remote"
}

func (s *Scheduler) acquire(ctx context.Context, lane string) bool {
	select {
	case s.sems[lane] <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *Scheduler) release(lane string) { <-s.sems[lane] }

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

// report handles recipients that failed and were not reported yet: a DSN
// for our own users' mail, otherwise a log line saying no bounce is sent.
// It reports whether the state changed.
func (s *Scheduler) report(m *queue.Message) bool {
	env := &m.Envelope
	var failed []int
	for i, st := range m.State.Rcpts {
		if st.Failed && !st.Reported {
			failed = append(failed, i)
		}
	}
	if len(failed) == 0 {
		return false
	}
	addrs := make([]string, len(failed))
	for k, i := range failed {
		addrs[k] = env.Recipients[i].Addr
	}
	if !BounceAllowed(env) {
		reason := "mail from outside (origin " + string(env.Origin) + ") is never bounced (law 3: reject, don't bounce)"
		switch {
		case env.Origin == queue.OriginLocal:
			reason = "undeliverable DSN: never a DSN about a DSN"
		case env.From == "":
			reason = "null sender: never a DSN to <>"
		}
		for _, i := range failed {
			m.State.Rcpts[i].Reported = true
		}
		s.Log.Warn("queue", "queue_id", env.ID, "conn", env.ConnID, "op", "dropped", "from", env.From,
			"rcpts", strings.Join(addrs, ","), "origin", string(env.Origin), "bounce", false, "reason", reason)
		return true
	}
	rcpts := make([]dsnRcpt, len(failed))
	for k, i := range failed {
		st := m.State.Rcpts[i]
		rcpts[k] = dsnRcpt{Addr: env.Recipients[i].Addr, Status: statusOf(st.Last, "5.0.0"), Reply: st.Last, Last: time.Now()}
	}
	dsnID, err := s.queueDSN(m, "failed", rcpts)
	if err != nil {
		s.Log.Error("queue", "queue_id", env.ID, "op", "bounce", "err", err.Error())
		return false
	}
	for _, i := range failed {
		m.State.Rcpts[i].Reported = true
	}
	s.Log.Info("queue", "queue_id", env.ID, "conn", env.ConnID, "op", "bounced", "to", env.From,
		"rcpts", strings.Join(addrs, ","), "dsn_id", dsnID)
	return true
}

// warnDelay sends one "delayed" DSN for our own users' mail that has
// waited DelayWarning. It reports whether the state changed.
func (s *Scheduler) warnDelay(m *queue.Message, now time.Time) bool {
	env := &m.Envelope
	if s.DelayWarning <= 0 || m.State.Warned || now.Sub(env.Received) < s.DelayWarning || !BounceAllowed(env) {
		return false
	}
	var rcpts []dsnRcpt
	for i, st := range m.State.Rcpts {
		if !st.Done && !st.Failed && st.Attempts > 0 {
			rcpts = append(rcpts, dsnRcpt{Addr: env.Recipients[i].Addr, Status: statusOf(st.Last, "4.0.0"), Reply: st.Last, Last: now})
		}
	}
	if len(rcpts) == 0 {
		return false
	}
	dsnID, err := s.queueDSN(m, "delayed", rcpts)
	if err != nil {
		s.Log.Error("queue", "queue_id", env.ID, "op", "delay_warning", "err", err.Error())
		return false
	}
	m.State.Warned = true
	s.Log.Info("queue", "queue_id", env.ID, "conn", env.ConnID, "op", "delay_warning", "to", env.From, "dsn_id", dsnID)
	return true
}

// statusOf finds the enhanced status code in a recorded reply ("550 5.1.1
// ...", "4.4.7 expired..."), or returns def.
func statusOf(reply, def string) string {
	for _, f := range strings.Fields(reply) {
		if len(f) >= 5 && (f[0] == '2' || f[0] == '4' || f[0] == '5') && f[1] == '.' && strings.Count(f, ".") == 2 {
			return f
		}
	}
	if len(reply) >= 3 && (reply[0] == '4' || reply[0] == '5') {
		return reply[:1] + ".0.0"
	}
	return def
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

// deliverLocal writes one copy with Return-Path and Delivered-To on top
// (RFC 5321 4.4: the final delivery adds Return-Path).
func (s *Scheduler) deliverLocal(m *queue.Message, r queue.Recipient) (string, error) {
	dir := maildir.Dir(directory.MailboxPath(s.MailRoot, r.Account))
	var head strings.Builder
	head.WriteString("Return-Path: <")
	head.WriteString(m.Envelope.From)
	head.WriteString(">\r\nDelivered-To: ")
	head.WriteString(r.Account)
	head.WriteString("\r\n")
	return dir.Deliver(io.MultiReader(strings.NewReader(head.String()), m.Body()))
}
