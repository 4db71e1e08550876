package scheduler

import (
	"context"
	"time"
)

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

// waitDomain puts id on the wait list of a domain at its bound, so the
// next freed slot wakes it.
func (s *Scheduler) waitDomain(lane, domain, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.domainWait == nil {
		s.domainWait = map[string][]string{}
	}
	key := lane + "/" + domain
	if len(s.domainWait[key]) < 10000 {
		s.domainWait[key] = append(s.domainWait[key], id)
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

func (s *Scheduler) acquire(ctx context.Context, lane string) bool {
	select {
	case s.sems[lane] <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *Scheduler) release(lane string) { <-s.sems[lane] }
