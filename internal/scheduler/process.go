package scheduler

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"runtime/debug"
	"sort"
	"time"

	"kanmon/internal/courier"
	"kanmon/internal/queue"
)

// pass is one worker's turn with one message: what the steps of process
// share.
type pass struct {
	m    *queue.Message
	lane string
	now  time.Time
	mark *attemptMark
	// changed is set when m.State must be saved.
	changed bool
	// busy is set when a domain was at its connection bound.
	busy bool
}

// group is recipients of one message that go through one courier in one
// call: the local ones, or the remote ones of one domain.
type group struct {
	remote bool
	domain string
	idxs   []int // indexes into the envelope's recipients
}

// internalError is what a recipient gets when its attempt panicked: a
// plain temporary failure, retried on the normal schedule.
var internalError = courier.Result{Code: 451, Enhanced: "4.3.0", Text: "internal error during delivery"}

// work is one worker's turn with id. A panic that escapes process (in
// recording or reporting, say) is contained here like one in a courier:
// logged once with the stack, counted, and the message retried later.
func (s *Scheduler) work(ctx context.Context, id, lane string) {
	defer s.done(id)
	defer func() {
		if v := recover(); v != nil {
			s.logPanic(id, "", v)
			s.setNext(id, time.Now().Add(s.backoff(1)))
		}
	}()
	s.process(ctx, id, lane)
	s.applyOp(id)
}

// process runs the steps of one pass over message id: expire, pick the
// due recipients, group them, deliver each group, report, and remove or
// reschedule.
func (s *Scheduler) process(ctx context.Context, id, lane string) {
	if s.applyOp(id) {
		return
	}
	m := s.open(id)
	if m == nil {
		return
	}
	defer m.Close()
	// The in-flight marker spans every attempt below (unclean.go).
	p := &pass{m: m, lane: lane, now: time.Now(), mark: &attemptMark{s: s, id: id}}
	defer p.mark.end()
	s.expire(p)
	for _, g := range s.due(p) {
		if !s.deliverGroup(ctx, p, g) {
			return // stopping: the attempt was cut short; do not count it
		}
	}
	s.finish(p)
}

// open reads message id for a pass, or returns nil when there is nothing
// to do: the message is gone, unreadable (retried later) or held.
func (s *Scheduler) open(id string) *queue.Message {
	m, err := s.Spool.Open(id)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			s.forget(id)
			return nil
		}
		s.Log.Error("queue", "queue_id", id, "op", "open", "err", err.Error())
		s.setNext(id, time.Now().Add(s.backoff(1)))
		return nil
	}
	if m.State.Held {
		s.mu.Lock()
		if e := s.index[id]; e != nil {
			e.held = true
		}
		s.mu.Unlock()
		m.Close()
		return nil
	}
	return m
}

// expire fails every pending recipient of a message older than Expire.
func (s *Scheduler) expire(p *pass) {
	env := &p.m.Envelope
	if s.Expire <= 0 || p.now.Sub(env.Received) < s.Expire {
		return
	}
	for i, r := range env.Recipients {
		st := &p.m.State.Rcpts[i]
		if st.Done || st.Failed {
			continue
		}
		st.Failed, p.changed = true, true
		last := st.Last
		st.Last = "4.4.7 expired: undelivered after " + s.Expire.String() + " in the queue"
		if last != "" {
			st.Last += "; last error: " + last
		}
		s.count(kindOf(r), "failed")
		s.Log.Warn("delivery", "queue_id", env.ID, "conn", env.ConnID, "rcpt", r.Addr, "result", "failed",
			"reply", st.Last, "attempts", st.Attempts)
	}
}

// due groups the recipients due now: the local ones first (one group),
// then the remote ones by domain, in domain order.
func (s *Scheduler) due(p *pass) []group {
	var local group
	remote := map[string]*group{}
	for i, r := range p.m.Envelope.Recipients {
		st := p.m.State.Rcpts[i]
		if st.Done || st.Failed || p.now.Before(st.Next) {
			continue
		}
		if r.Account != "" {
			local.idxs = append(local.idxs, i)
			continue
		}
		d := courier.DomainOf(r.Addr)
		if remote[d] == nil {
			remote[d] = &group{remote: true, domain: d}
		}
		remote[d].idxs = append(remote[d].idxs, i)
	}
	var out []group
	if len(local.idxs) > 0 {
		out = append(out, local)
	}
	domains := make([]string, 0, len(remote))
	for d := range remote {
		domains = append(domains, d)
	}
	sort.Strings(domains)
	for _, d := range domains {
		out = append(out, *remote[d])
	}
	return out
}

// deliverGroup takes the slots a group needs, hands it to its courier and
// records the results. It returns false when the scheduler stopped during
// a remote attempt: the attempt was cut short and is not counted.
func (s *Scheduler) deliverGroup(ctx context.Context, p *pass, g group) bool {
	c := s.Local
	if g.remote {
		c = s.Remote
	}
	if c == nil {
		return true // no courier configured for these: they stay queued
	}
	if g.remote {
		if !s.tryDomain(p.lane, g.domain) {
			p.busy = true
			s.waitDomain(p.lane, g.domain, p.m.Envelope.ID)
			return true
		}
		if !s.acquire(ctx, p.lane) {
			// Stopping before the attempt: nothing was tried, and what
			// earlier groups recorded is still saved by finish.
			s.releaseDomain(p.lane, g.domain)
			return true
		}
		defer s.releaseDomain(p.lane, g.domain)
		defer s.release(p.lane)
	}
	rcpts := make([]queue.Recipient, len(g.idxs))
	for k, i := range g.idxs {
		rcpts[k] = p.m.Envelope.Recipients[i]
	}
	start := time.Now()
	results := s.attempt(ctx, p, c, rcpts)
	if ctx.Err() != nil && g.remote {
		return false
	}
	for k, i := range g.idxs {
		s.record(p, i, results[k], g.remote, time.Since(start))
	}
	return true
}

// attempt calls the courier once, with the in-flight marker set. A panic
// in the courier is recovered here: every recipient of the call gets
// internalError, so the message stays queued and is retried.
func (s *Scheduler) attempt(ctx context.Context, p *pass, c courier.Courier, rcpts []queue.Recipient) (res []courier.Result) {
	p.mark.begin()
	defer func() {
		if v := recover(); v != nil {
			s.logPanic(p.m.Envelope.ID, p.m.Envelope.ConnID, v)
			fail := internalError
			fail.Detail = fmt.Sprintf("panic: %v", v)
			res = courier.All(courier.Addrs(rcpts), fail)
		}
	}()
	res = c.Deliver(ctx, p.m, rcpts)
	if len(res) != len(rcpts) {
		// A courier bug; never mark a recipient done on a guess.
		fail := internalError
		fail.Detail = fmt.Sprintf("courier returned %d results for %d recipients", len(res), len(rcpts))
		s.Log.Error("delivery", "queue_id", p.m.Envelope.ID, "err", fail.Detail)
		res = courier.All(courier.Addrs(rcpts), fail)
	}
	return res
}

// logPanic writes one `panic` line with the stack and counts it.
func (s *Scheduler) logPanic(id, conn string, v any) {
	s.Log.Error("panic", "queue_id", id, "conn", conn, "where", "delivery", "panic", fmt.Sprint(v),
		"stack", string(debug.Stack()))
	if s.Metrics != nil && s.Metrics.Panics != nil {
		s.Metrics.Panics.WithLabelValues("delivery").Inc()
	}
}

// record stores one recipient's result in the message state and logs it
// (one `delivery` line per recipient and attempt).
func (s *Scheduler) record(p *pass, i int, res courier.Result, remote bool, took time.Duration) {
	env := &p.m.Envelope
	r := env.Recipients[i]
	st := &p.m.State.Rcpts[i]
	st.Attempts++
	p.changed = true
	st.Last = res.Reply()
	result := "deferred"
	switch {
	case res.OK:
		st.Done, result = true, "delivered"
	case res.Permanent:
		st.Failed, result = true, "failed"
	default:
		st.Next = time.Now().Add(s.backoff(st.Attempts))
	}
	kind := kindOf(r)
	s.count(kind, result)
	var args []any
	if remote {
		args = []any{"queue_id", env.ID, "conn", env.ConnID, "rcpt", res.Rcpt, "lane", p.lane, "mx", res.MX, "tls", res.TLS,
			"reply", res.Reply(), "attempt", st.Attempts, "duration_ms", took.Milliseconds(), "result", result}
	} else {
		args = []any{"queue_id", env.ID, "conn", env.ConnID, "rcpt", r.Addr, "account", r.Account, "result", result}
		if res.OK {
			args = append(args, "mailbox", "maildir")
		} else {
			args = append(args, "err", res.Detail)
		}
	}
	if result == "deferred" {
		args = append(args, "next", st.Next.Format(time.RFC3339))
	}
	if result == "delivered" {
		s.Log.Info("delivery", args...)
	} else {
		s.Log.Warn("delivery", args...)
	}
}

func kindOf(r queue.Recipient) string {
	if r.Account != "" {
		return "local"
	}
	return "remote"
}

func (s *Scheduler) count(kind, result string) {
	if s.Metrics != nil {
		s.Metrics.Deliveries.WithLabelValues(kind, result).Inc()
	}
}

// finish ends a pass: the unclean-stop count, reports, then removal of
// a message with nothing left to do, or its next attempt.
func (s *Scheduler) finish(p *pass) {
	m := p.m
	if p.mark.marked && m.State.UncleanStops > 0 {
		// An attempt completed: the count is of consecutive unclean stops.
		m.State.UncleanStops = 0
		p.changed = true
	}
	changed, failedDSN := s.Reports.Failed(m)
	p.changed = p.changed || changed
	changed, delayedDSN := s.Reports.Delayed(m, p.now)
	p.changed = p.changed || changed
	for _, env := range []*queue.Envelope{failedDSN, delayedDSN} {
		if env != nil {
			s.Enqueue(env)
		}
	}
	id := m.Envelope.ID
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
	if p.changed {
		if err := s.Spool.SaveState(id, m.State); err != nil {
			s.Log.Error("queue", "queue_id", id, "op", "state", "err", err.Error())
		}
	}
	s.setNext(id, s.next(p))
}

// next is when the message of a finished pass is due again.
func (s *Scheduler) next(p *pass) time.Time {
	next := nextAttempt(p.m, s.Expire)
	for _, st := range p.m.State.Rcpts {
		if st.Failed && !st.Reported {
			// The report could not be queued (queue full?): try again later.
			next = time.Now().Add(s.backoff(1))
		}
	}
	if !next.After(p.now) {
		if p.busy {
			// A domain was at its connection bound: try again shortly.
			return time.Now().Add(busyDelay)
		}
		// Nothing became due later (no courier configured, or stopping):
		// look again after the shortest backoff.
		return time.Now().Add(s.backoff(1))
	}
	return next
}
