// Package delivery takes messages out of the queue and delivers them: to
// local accounts' Maildirs now; remote delivery plugs in as another Agent.
//
// Local recipients go through the queue like every message (one way
// through): the SMTP "250" waits only for the queue's fsync, and this
// package's workers then write each local copy to its Maildir (itself
// fsynced) before marking the recipient done. A crash in between delivers
// that recipient again after restart (at least once, never lost).
//
// SECURITY: Maildir paths come from accounts resolved at RCPT time and
// validated by the directory package, never from message content.
package delivery

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"kanmon/internal/directory"
	"kanmon/internal/maildir"
	"kanmon/internal/metrics"
	"kanmon/internal/queue"
)

// Scheduler runs delivery workers over the spool.
type Scheduler struct {
	Spool    *queue.Spool
	MailRoot string
	Log      *slog.Logger
	Metrics  *metrics.Metrics
	Workers  int
	RetryMin time.Duration
	RetryMax time.Duration

	work     chan string
	mu       sync.Mutex
	inflight map[string]bool
	wg       sync.WaitGroup
}

// Start recovers the queue (every message on disk is scheduled again) and
// starts the workers; they stop when ctx ends.
func (s *Scheduler) Start(ctx context.Context) {
	s.work = make(chan string, 4096)
	s.inflight = map[string]bool{}
	for i := 0; i < max(s.Workers, 1); i++ {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case id := <-s.work:
					s.process(id)
					s.mu.Lock()
					delete(s.inflight, id)
					s.mu.Unlock()
				}
			}
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.rescan()
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.rescan()
			}
		}
	}()
}

// Wait waits for the workers after ctx ended.
func (s *Scheduler) Wait() { s.wg.Wait() }

// Enqueue schedules a message now. If the work channel is full, the
// periodic rescan picks the message up: it is safe on disk either way.
func (s *Scheduler) Enqueue(id string) {
	s.mu.Lock()
	if s.inflight[id] {
		s.mu.Unlock()
		return
	}
	s.inflight[id] = true
	s.mu.Unlock()
	select {
	case s.work <- id:
	default:
		s.mu.Lock()
		delete(s.inflight, id)
		s.mu.Unlock()
	}
}

func (s *Scheduler) rescan() {
	ids, err := s.Spool.IDs()
	if err != nil {
		s.Log.Error("queue", "op", "scan", "err", err.Error())
		return
	}
	for _, id := range ids {
		s.Enqueue(id)
	}
}

func (s *Scheduler) backoff(attempts int) time.Duration {
	d := s.RetryMin
	for i := 1; i < attempts && d < s.RetryMax; i++ {
		d *= 2
	}
	return min(d, s.RetryMax)
}

func (s *Scheduler) process(id string) {
	m, err := s.Spool.Open(id)
	if err != nil {
		s.Log.Error("queue", "queue_id", id, "op", "open", "err", err.Error())
		return
	}
	defer m.Close()
	if m.State.Held {
		return
	}
	now := time.Now()
	changed := false
	for i, r := range m.Envelope.Recipients {
		st := &m.State.Rcpts[i]
		if st.Done || st.Failed || r.Account == "" || now.Before(st.Next) {
			continue
		}
		st.Attempts++
		changed = true
		name, err := s.deliverLocal(m, r)
		if err != nil {
			st.Last = err.Error()
			st.Next = now.Add(s.backoff(st.Attempts))
			s.Metrics.Deliveries.WithLabelValues("local", "deferred").Inc()
			s.Log.Warn("delivery", "queue_id", id, "conn", m.Envelope.ConnID, "rcpt", r.Addr, "account", r.Account,
				"result", "deferred", "err", err.Error(), "next", st.Next.Format(time.RFC3339))
			continue
		}
		st.Done = true
		st.Last = "delivered to Maildir " + name
		s.Metrics.Deliveries.WithLabelValues("local", "delivered").Inc()
		s.Log.Info("delivery", "queue_id", id, "conn", m.Envelope.ConnID, "rcpt", r.Addr, "account", r.Account,
			"result", "delivered", "mailbox", "maildir")
	}
	if !m.Pending() {
		if err := s.Spool.Remove(id); err != nil {
			s.Log.Error("queue", "queue_id", id, "op", "remove", "err", err.Error())
			return
		}
		s.Log.Info("queue", "queue_id", id, "op", "removed", "reason", "all recipients done")
		return
	}
	if changed {
		if err := s.Spool.SaveState(id, m.State); err != nil {
			s.Log.Error("queue", "queue_id", id, "op", "state", "err", err.Error())
		}
	}
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
