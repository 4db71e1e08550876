// Package rcptverify decides whether a recipient in a relay domain (we
// are the partner's backup MX) exists, while the client still waits for
// our answer to RCPT TO. Mail accepted for a recipient the partner does
// not have could only be dropped later (mail from outside is never
// bounced, law 3), so the sender of a mistyped address would never know:
// the answer must be given at RCPT.
//
// Each relay domain is verified by one method: "probe" (the default)
// asks the partner's own server with a bounded SMTP dialogue that stops
// after RCPT (internal/courier/remote Prober), or "list" reads a file of
// the domain's valid recipients. Probe answers are cached, positive and
// negative ones for lifetimes of their own; concurrent questions about the
// same address share one probe, and the probes in flight are bounded.
// When no answer can be had (the partner down, a 4xx, DNS trouble, too
// many probes at once), the recipient is unverified: the policy says 450
// unless the operator chose unverified = "accept" for that domain.
//
// SECURITY: the addresses checked come from clients, so the cache is
// bounded in entries and a flood of made-up addresses costs at most
// MaxProbes connections at a time, each ended by the probe timeout. The
// partner's reply text is passed on only as printable ASCII, cut to 200
// bytes. Metric labels are fixed names, never addresses.
package rcptverify

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kanmon/internal/courier/remote"
)

// Methods of verification.
const (
	MethodProbe = "probe"
	MethodList  = "list"
)

// Outcome is what verification concluded.
type Outcome int

const (
	// Unverified: no answer could be had (our trouble or a temporary one
	// of the partner's).
	Unverified Outcome = iota
	// Valid: the partner accepts the recipient.
	Valid
	// Invalid: the partner refuses the recipient permanently.
	Invalid
)

// String names the outcome for logs and metrics.
func (o Outcome) String() string {
	switch o {
	case Valid:
		return "valid"
	case Invalid:
		return "invalid"
	}
	return "unverified"
}

// Result is one verification.
type Result struct {
	Outcome Outcome
	// Method is the domain's method; Source where the answer came from:
	// "probe", "cache" or "list".
	Method, Source string
	// Code, Enhanced and Text are the partner's reply to the probe's RCPT
	// (also when cached); empty for a list.
	Code     int
	Enhanced string
	Text     string
	// Host is the server that answered the probe.
	Host string
	// Reason says why the recipient is unverified.
	Reason string
	// AcceptUnverified is the domain's unverified = "accept".
	AcceptUnverified bool
}

// Summary is the result in one line, for the queue and the logs:
// "probe 250 2.1.5 via mx.partner.test (cache)".
func (r Result) Summary() string {
	var b strings.Builder
	b.WriteString(r.Method + " " + r.Outcome.String())
	if r.Code != 0 {
		fmt.Fprintf(&b, " %d", r.Code)
		if r.Enhanced != "" {
			b.WriteString(" " + r.Enhanced)
		}
	}
	if r.Host != "" {
		b.WriteString(" via " + r.Host)
	}
	if r.Source == "cache" {
		b.WriteString(" (cache)")
	}
	if r.Outcome == Unverified && r.AcceptUnverified {
		b.WriteString(" (accepted unverified)")
	}
	return b.String()
}

// Prober asks a domain's next hop about a recipient (remote.Prober).
type Prober interface {
	Probe(ctx context.Context, domain, rcpt string) remote.ProbeResult
}

// Domain is one relay domain's verification settings.
type Domain struct {
	// Method is MethodProbe ("" too) or MethodList.
	Method string
	// List is the file of valid recipients (MethodList).
	List string
	// AcceptUnverified accepts a recipient that could not be verified.
	AcceptUnverified bool
}

// Config configures a Verifier; zero values take the defaults.
type Config struct {
	// Domains holds the settings of the relay domains that have any;
	// every other domain asked about is probed.
	Domains map[string]Domain
	// PositiveTTL and NegativeTTL are how long a probe's "exists" (2xx)
	// and "does not exist" (5xx) answers are cached (7 days, 3 hours).
	PositiveTTL, NegativeTTL time.Duration
	// MaxProbes bounds the probes in flight (default 8); ProbeTimeout a
	// whole verification, the wait for a probe slot included (20s).
	MaxProbes    int
	ProbeTimeout time.Duration
	// CacheSize bounds the positive and the negative cache each (100000).
	CacheSize int
}

// Verifier answers the RCPT stage's question about relay-domain
// recipients. It is safe for concurrent use.
type Verifier struct {
	cfg    Config
	prober Prober
	log    *slog.Logger
	count  *prometheus.CounterVec // source, result
	lists  map[string]*list
	pos    *cache
	neg    *cache
	slots  chan struct{}

	mu       sync.Mutex
	inflight map[string]*call
	now      func() time.Time
}

// New returns a verifier, reading every list file once: a list that
// cannot be read is an error at start. count may be nil.
func New(cfg Config, p Prober, log *slog.Logger, count *prometheus.CounterVec) (*Verifier, error) {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.PositiveTTL, 7*24*time.Hour)
	def(&cfg.NegativeTTL, 3*time.Hour)
	def(&cfg.ProbeTimeout, 20*time.Second)
	if cfg.MaxProbes <= 0 {
		cfg.MaxProbes = 8
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 100000
	}
	v := &Verifier{
		cfg: cfg, prober: p, log: log, count: count, lists: map[string]*list{},
		pos: newCache(cfg.CacheSize), neg: newCache(cfg.CacheSize),
		slots: make(chan struct{}, cfg.MaxProbes), inflight: map[string]*call{}, now: time.Now,
	}
	for dom, d := range cfg.Domains {
		if d.Method != MethodList {
			continue
		}
		l, err := loadList(d.List, dom)
		if err != nil {
			return nil, err
		}
		v.lists[dom] = l
	}
	return v, nil
}

// Reload re-reads every list file (on SIGHUP); a list that cannot be read
// keeps its previous contents, and the error says which.
func (v *Verifier) Reload() error {
	var errs []error
	for _, l := range v.lists {
		if err := l.reload(true); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("rcptverify: reload: %v", errs)
	}
	return nil
}

// Verify checks one recipient of a relay domain. domain is the address's
// domain in canonical (lower-case) form; conn the connection id for the
// log line.
func (v *Verifier) Verify(ctx context.Context, conn, local, domain string) Result {
	start := v.now()
	addr := local + "@" + domain
	d := v.cfg.Domains[domain]
	var res Result
	if d.Method == MethodList {
		res = v.fromList(domain, local)
	} else {
		res = v.probe(ctx, domain, addr)
	}
	res.AcceptUnverified = d.AcceptUnverified
	if v.count != nil {
		v.count.WithLabelValues(res.Source, res.Outcome.String()).Inc()
	}
	if v.log != nil {
		attrs := []any{"conn", conn, "addr", addr, "domain", domain, "method", res.Method, "source", res.Source,
			"result", res.Outcome.String(), "duration_ms", v.now().Sub(start).Milliseconds()}
		if res.Code != 0 {
			attrs = append(attrs, "code", res.Code, "enhanced", res.Enhanced, "reply", res.Text)
		}
		if res.Host != "" {
			attrs = append(attrs, "mx", res.Host)
		}
		if res.Reason != "" {
			attrs = append(attrs, "reason", res.Reason)
		}
		if res.Outcome == Unverified && res.AcceptUnverified {
			attrs = append(attrs, "unverified", "accept")
		}
		v.log.Info("rcpt.verify", attrs...)
	}
	return res
}

// fromList answers from the domain's static list.
func (v *Verifier) fromList(domain, local string) Result {
	res := Result{Method: MethodList, Source: "list"}
	l := v.lists[domain]
	if l == nil {
		res.Reason = "no recipient list loaded for " + domain
		return res
	}
	ok, err := l.has(local)
	switch {
	case err != nil:
		res.Reason = err.Error()
	case ok:
		res.Outcome = Valid
	default:
		res.Outcome = Invalid
	}
	return res
}

// probe answers from the cache, or asks the partner, one probe per
// address at a time however many sessions ask.
func (v *Verifier) probe(ctx context.Context, domain, addr string) Result {
	key := strings.ToLower(addr)
	now := v.now()
	if r, ok := v.pos.get(key, now); ok {
		r.Source = "cache"
		return r
	}
	if r, ok := v.neg.get(key, now); ok {
		r.Source = "cache"
		return r
	}
	ctx, cancel := context.WithTimeout(ctx, v.cfg.ProbeTimeout)
	defer cancel()
	v.mu.Lock()
	c, shared := v.inflight[key]
	if !shared {
		c = &call{done: make(chan struct{})}
		v.inflight[key] = c
		go v.run(domain, addr, key, c)
	}
	v.mu.Unlock()
	select {
	case <-c.done:
		r := c.res
		if shared && r.Source == "probe" {
			// Answered by a probe another session started.
			r.Source = "cache"
		}
		return r
	case <-ctx.Done():
		return Result{Method: MethodProbe, Source: "probe", Reason: "no answer from the partner's mail server within " + v.cfg.ProbeTimeout.String()}
	}
}

// call is one probe in flight; its waiters read res after done closes.
type call struct {
	done chan struct{}
	res  Result
}

// run makes one probe, within the probe timeout and a slot, caches its
// answer and hands it to every waiter. It runs on its own so that a
// waiter giving up does not cancel the answer the others wait for.
func (v *Verifier) run(domain, addr, key string, c *call) {
	defer func() {
		v.mu.Lock()
		delete(v.inflight, key)
		v.mu.Unlock()
		close(c.done)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), v.cfg.ProbeTimeout)
	defer cancel()
	c.res = Result{Method: MethodProbe, Source: "probe"}
	select {
	case v.slots <- struct{}{}:
		defer func() { <-v.slots }()
	case <-ctx.Done():
		c.res.Reason = fmt.Sprintf("too many verification probes in progress (%d)", cap(v.slots))
		return
	}
	pr := v.prober.Probe(ctx, domain, addr)
	c.res.Host = pr.Host
	if pr.Err != nil {
		c.res.Reason = pr.Err.Error()
		return
	}
	c.res.Code, c.res.Enhanced, c.res.Text = pr.Code, pr.Enhanced, pr.Text
	now := v.now()
	switch pr.Code / 100 {
	case 2:
		c.res.Outcome = Valid
		v.pos.put(key, c.res, now.Add(v.cfg.PositiveTTL))
	case 5:
		c.res.Outcome = Invalid
		v.neg.put(key, c.res, now.Add(v.cfg.NegativeTTL))
	default:
		c.res.Reason = "the partner's mail server answered " + strings.TrimSpace(fmt.Sprintf("%d %s %s", pr.Code, pr.Enhanced, pr.Text))
	}
}
