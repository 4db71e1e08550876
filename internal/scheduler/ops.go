package scheduler

import (
	"errors"
	"fmt"
	"kanmon/internal/courier"
	"kanmon/internal/dsn"
	"strings"
	"time"

	"kanmon/internal/queue"
)

// Filter selects queued messages for operator commands. Empty fields match
// everything.
type Filter struct {
	// Sender is the envelope sender (case-insensitive); "<>" is the null sender.
	Sender string `json:"sender,omitempty"`
	// RcptDomain matches messages with a recipient in this domain.
	RcptDomain string `json:"rcpt_domain,omitempty"`
	// ClientIP is the address of the client that submitted the message.
	ClientIP string `json:"client_ip,omitempty"`
	// OlderThan matches messages that arrived at least this long ago.
	OlderThan time.Duration `json:"older_than,omitempty"`
	// Lane is "normal" or "bounce".
	Lane string `json:"lane,omitempty"`
}

// Empty reports whether the filter has no criterion.
func (f Filter) Empty() bool { return f == Filter{} }

// Match reports whether env matches.
func (f Filter) Match(env *queue.Envelope, now time.Time) bool {
	if f.Sender != "" {
		want := f.Sender
		if want == "<>" {
			want = ""
		}
		if !strings.EqualFold(strings.Trim(want, "<>"), env.From) {
			return false
		}
	}
	if f.RcptDomain != "" {
		ok := false
		for _, r := range env.Recipients {
			if courier.DomainOf(r.Addr) == strings.ToLower(strings.TrimPrefix(f.RcptDomain, "@")) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if f.ClientIP != "" && f.ClientIP != env.ClientIP {
		return false
	}
	if f.OlderThan > 0 && now.Sub(env.Received) < f.OlderThan {
		return false
	}
	if f.Lane != "" && f.Lane != LaneOf(env) {
		return false
	}
	return true
}

// RcptInfo is one recipient's state, for operators.
type RcptInfo struct {
	Addr     string    `json:"addr"`
	Account  string    `json:"account,omitempty"`
	Verified string    `json:"verified,omitempty"` // how a relay-domain recipient was verified at RCPT
	Status   string    `json:"status"`             // pending, delivered, failed
	Attempts int       `json:"attempts"`
	Last     string    `json:"last,omitempty"`
	Next     time.Time `json:"next,omitempty"`
}

// Info describes a queued message, for operators.
type Info struct {
	ID       string     `json:"id"`
	From     string     `json:"from"`
	Rcpts    []RcptInfo `json:"rcpts"`
	Received time.Time  `json:"received"`
	Origin   string     `json:"origin"`
	ClientIP string     `json:"client_ip,omitempty"`
	AuthUser string     `json:"auth_user,omitempty"`
	Lane     string     `json:"lane"`
	Size     int64      `json:"size"`
	Held     bool       `json:"held,omitempty"`
	// HoldReason says why a held message is held: the operator, or
	// UncleanStopsToHold unclean stops during its delivery (unclean.go).
	HoldReason string `json:"hold_reason,omitempty"`
	// UncleanStops counts the consecutive unclean stops of the server
	// that cut a delivery attempt of this message.
	UncleanStops int    `json:"unclean_stops,omitempty"`
	Headers      string `json:"headers,omitempty"` // only from Show
}

func infoOf(m *queue.Message) Info {
	env := &m.Envelope
	in := Info{ID: env.ID, From: env.From, Received: env.Received, Origin: string(env.Origin), ClientIP: env.ClientIP,
		AuthUser: env.AuthUser, Lane: LaneOf(env), Size: m.Size, Held: m.State.Held,
		HoldReason: m.State.HoldReason, UncleanStops: m.State.UncleanStops}
	if in.Held && in.HoldReason == "" {
		in.HoldReason = holdReasonOperator // held before reasons were recorded
	}
	for i, r := range env.Recipients {
		st := m.State.Rcpts[i]
		ri := RcptInfo{Addr: r.Addr, Account: r.Account, Verified: r.Verified, Status: "pending", Attempts: st.Attempts, Last: st.Last, Next: st.Next}
		switch {
		case st.Done:
			ri.Status = "delivered"
		case st.Failed:
			ri.Status = "failed"
		}
		in.Rcpts = append(in.Rcpts, ri)
	}
	return in
}

// List returns the queued messages matching f, in arrival order.
func (s *Scheduler) List(f Filter) ([]Info, error) {
	ids, err := s.Spool.IDs()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := []Info{}
	for _, id := range ids {
		m, err := s.Spool.Open(id)
		if err != nil {
			continue // removed meanwhile
		}
		if f.Match(&m.Envelope, now) {
			out = append(out, infoOf(m))
		}
		m.Close()
	}
	return out, nil
}

// Show returns one message with its header section.
func (s *Scheduler) Show(id string) (Info, error) {
	m, err := s.Spool.Open(id)
	if err != nil {
		return Info{}, err
	}
	defer m.Close()
	in := infoOf(m)
	if in.Headers, err = dsn.HeaderSection(m.Body()); err != nil {
		return Info{}, fmt.Errorf("scheduler: show %s: %w", id, err)
	}
	return in, nil
}

// own takes id for an operator command. When a worker has it, op is
// recorded for the worker to apply when it finishes, and own returns false.
func (s *Scheduler) own(id, op string) bool {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight[id] {
		if e := s.index[id]; e != nil && op != "" {
			e.op = op
		}
		return false
	}
	s.inflight[id] = true
	return true
}

// applyOp performs an operator action recorded while a worker had id.
func (s *Scheduler) applyOp(id string) bool {
	s.mu.Lock()
	e := s.index[id]
	op := ""
	if e != nil {
		op, e.op = e.op, ""
	}
	s.mu.Unlock()
	switch op {
	case "delete":
		s.remove(id)
		return true
	case "hold":
		s.setHeld(id, true)
		return true
	}
	return false
}

func (s *Scheduler) remove(id string) error {
	if err := s.Spool.Remove(id); err != nil {
		return err
	}
	s.forget(id)
	s.Log.Info("queue", "queue_id", id, "op", "removed", "reason", "operator")
	return nil
}

func (s *Scheduler) setHeld(id string, held bool) error {
	m, err := s.Spool.Open(id)
	if err != nil {
		return err
	}
	st := m.State
	m.Close()
	if held && !st.Held {
		st.HoldReason = holdReasonOperator // an earlier reason stays
	}
	st.Held = held
	if !held {
		// A release forgives the unclean stops too: the operator decided
		// the message may be tried again.
		st.HoldReason, st.UncleanStops = "", 0
		for i := range st.Rcpts {
			st.Rcpts[i].Next = time.Time{}
		}
	}
	if err := s.Spool.SaveState(id, st); err != nil {
		return err
	}
	s.mu.Lock()
	if e := s.index[id]; e != nil {
		e.held = held
		e.next = time.Time{}
	}
	s.mu.Unlock()
	op := "held"
	if !held {
		op = "released"
	}
	s.Log.Info("queue", "queue_id", id, "op", op, "reason", "operator")
	return nil
}

// holdReasonOperator is the hold reason of `kanmon queue hold`.
const holdReasonOperator = "held by the operator (kanmon queue hold)"

// Op is an operator command: "hold", "release", "delete" or "flush".
type Op string

// Apply runs op on the message id (or, with id "", on every message
// matching f; an empty filter then matches every message only for
// "flush"). It returns the ids acted on; an action on a message a worker
// is delivering right now is applied when the worker finishes
// (flush is then moot).
func (s *Scheduler) Apply(op Op, id string, f Filter) ([]string, error) {
	var ids []string
	if id != "" {
		m, err := s.Spool.Open(id)
		if err != nil {
			return nil, err
		}
		m.Close() // only its existence was in question
		ids = []string{id}
	} else {
		if f.Empty() && op != "flush" {
			return nil, errors.New("scheduler: a filter needs at least one criterion (or give an id)")
		}
		list, err := s.List(f)
		if err != nil {
			return nil, err
		}
		for _, in := range list {
			ids = append(ids, in.ID)
		}
	}
	var errs []error
	for _, id := range ids {
		pending := ""
		switch op {
		case "delete", "hold":
			pending = string(op)
		case "release", "flush":
		default:
			return nil, fmt.Errorf("scheduler: unknown queue operation %q", op)
		}
		if !s.own(id, pending) {
			continue
		}
		var err error
		switch op {
		case "delete":
			err = s.remove(id)
		case "hold":
			err = s.setHeld(id, true)
		case "release":
			err = s.setHeld(id, false)
		case "flush":
			err = s.flush(id)
		}
		s.done(id)
		if err != nil {
			errs = append(errs, err)
		}
		if op == "release" || op == "flush" {
			s.mu.Lock()
			lane := ""
			if e := s.index[id]; e != nil {
				lane = e.lane
			}
			s.mu.Unlock()
			if lane != "" {
				s.enqueue(id, lane)
			}
		}
	}
	return ids, errors.Join(errs...)
}

// flush makes every pending recipient due now.
func (s *Scheduler) flush(id string) error {
	m, err := s.Spool.Open(id)
	if err != nil {
		return err
	}
	st := m.State
	held := st.Held
	m.Close()
	if held {
		return nil
	}
	for i := range st.Rcpts {
		st.Rcpts[i].Next = time.Time{}
	}
	if err := s.Spool.SaveState(id, st); err != nil {
		return err
	}
	s.Log.Info("queue", "queue_id", id, "op", "flushed", "reason", "operator")
	return nil
}
