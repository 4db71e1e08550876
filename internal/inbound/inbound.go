// Package inbound screens mail arriving on the MX listener before it is
// accepted: the connection stage (access lists, dynamic clients speaking
// straight to the MX, policy-block zones, reverse DNS, DNS blocklists,
// early talkers) and the MAIL FROM stage (the sender domain exists, SPF).
// Each stage is a list of checks (connect.go, mail.go); a check is one
// file returning a Result named by its rule, so a new check is one file
// and one line in a list. Every check has a configured action (reject,
// tempfail, log, off), so an operator can watch a rule before enforcing
// it.
//
// Why a package of its own rather than more of internal/policy: these
// checks ask DNS, keep caches and remember clients, while policy holds
// pure rules over facts the server established. The replies reuse
// policy.Verdict, so a refusal looks the same whoever made it.
//
// DNS failure is never evidence against a client: a reverse lookup that
// fails temporarily lets the PTR-based checks pass (logged), a blocklist
// that does not answer counts as not listing, and the MAIL stage answers
// our own DNS trouble with 4xx only.
//
// SECURITY: the inputs are the socket's address, the client's HELO name
// and MAIL FROM (for SPF and the sender domain), and DNS answers, all
// untrusted. Every lookup is bounded in time; caches and the early-talker
// memory are bounded in entries. Nothing here grants anything except the
// allow list, which only skips these checks (never relay).
package inbound

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"

	"kanmon/internal/config"
	"kanmon/internal/dnsresolve"
	"kanmon/internal/metrics"
	"kanmon/internal/policy"
	"kanmon/internal/state"
)

// Screen runs the inbound checks. It is safe for concurrent use; one
// Screen serves every connection.
type Screen struct {
	cfg      config.Inbound
	dns      dnsresolve.Resolver
	met      *metrics.Metrics
	remember *memory
	cache    *blCache
	connect  []ConnectCheck
	mail     []MailCheck
	// state keeps the greylisting triplets (nil: no greylisting;
	// greylist.go).
	state state.Store
}

// New returns a Screen with kanmon's standard check lists.
func New(cfg config.Inbound, r dnsresolve.Resolver, m *metrics.Metrics) *Screen {
	return &Screen{
		cfg: cfg, dns: r, met: m,
		remember: newMemory(cfg.GreetRemember.Duration, maxRemembered),
		cache:    newBLCache(cfg.DNSBLCache.Duration, maxCached),
		connect:  ConnectChecks,
		mail:     MailChecks,
	}
}

// Applies reports whether the checks run for a client: only on the MX
// listener, and never for trusted, authenticated or POP-before-SMTP
// clients (our own users and hosts).
func Applies(listener string, c policy.Client) bool {
	return listener == policy.ListenerMX && !c.Trusted && !c.Authenticated && !c.PopBeforeSMTP
}

// Conn is one client connection as the checks see it.
type Conn struct {
	ID  string
	IP  netip.Addr
	Log *slog.Logger

	// Allowed is set by the connection stage when the allow list
	// matched: the MAIL stage's checks are skipped too.
	Allowed bool

	ptrOnce sync.Once
	ptr     []string
	ptrErr  error
}

// PTR returns the client's reverse names, asked once per connection
// whichever check asks first.
func (c *Conn) PTR(ctx context.Context, s *Screen) ([]string, error) {
	c.ptrOnce.Do(func() {
		c.ptr, c.ptrErr = s.dns.LookupAddr(ctx, c.IP)
		for i, n := range c.ptr {
			c.ptr[i] = normName(n)
		}
	})
	return c.ptr, c.ptrErr
}

// Result is one check's finding. The zero Result means "nothing to say".
type Result struct {
	// Rule names the rule, e.g. "client.dynamic".
	Rule string
	// Action is the configured action: reject, tempfail or log.
	Action string
	// Verdict is the reply the client gets when the action refuses (for
	// "log", the reply it would have got).
	Verdict policy.Verdict
	// Allow is set by the allow list: skip every later check.
	Allow bool
	// Attrs are the evidence, as slog key/value pairs.
	Attrs []any
}

// Refuses reports whether the result refuses the client.
func (r Result) Refuses() bool {
	return r.Action == config.ActionReject || r.Action == config.ActionTempfail
}

// Outcome is what a stage decided. When Refused, Verdict is the reply
// to send and Attrs the evidence for its decision line; the caller logs
// that line (smtpd's reject), everything else the stage logged itself.
type Outcome struct {
	Refused bool
	Verdict policy.Verdict
	Attrs   []any
	// SPF is the SPF result of the MAIL stage ("" when not checked).
	SPF string
}

// judge builds the result of rule under action: perm and "5."+detail
// when rejecting, temp and "4."+detail when tempfailing. The reply text
// names the rule; the connection id is added by the session.
func judge(action, rule string, perm, temp int, detail, reason string, attrs ...any) Result {
	if action == config.ActionOff || action == "" {
		return Result{}
	}
	v := policy.Rejected(rule, perm, "5."+detail, reason+" (rule "+rule+")")
	if action == config.ActionTempfail {
		v.Code, v.Enhanced = temp, "4."+detail
	}
	return Result{Rule: rule, Action: action, Verdict: v, Attrs: attrs}
}

// note records a finding that is not the stage's reply: one decision
// line and the metric. A refusing finding that another one preceded says
// which (superseded_by).
func (s *Screen) note(c *Conn, r Result, supersededBy string) {
	s.count(r)
	attrs := []any{"rule", r.Rule, "action", r.Action, "reason", r.Verdict.Reason}
	if r.Verdict.Code != 0 { // a recorded result (spf.pass, client.allow) would send nothing
		attrs = append(attrs, "would", itoa(r.Verdict.Code)+" "+r.Verdict.Enhanced)
	}
	if supersededBy != "" {
		attrs = append(attrs, "superseded_by", supersededBy)
	}
	c.Log.Info("decision", append(attrs, r.Attrs...)...)
}

// count bumps the finding's metric.
func (s *Screen) count(r Result) {
	if s.met != nil {
		s.met.Inbound.WithLabelValues(r.Rule, r.Action).Inc()
	}
}

// decide turns the findings of a stage, in list order, into its outcome:
// the first refusing finding is the reply; the others are logged.
func (s *Screen) decide(c *Conn, results []Result) Outcome {
	var out Outcome
	for _, r := range results {
		switch {
		case r.Rule == "":
		case r.Refuses() && !out.Refused:
			s.count(r)
			out = Outcome{Refused: true, Verdict: r.Verdict, Attrs: append([]any{"action", r.Action}, r.Attrs...)}
		case r.Refuses():
			s.note(c, r, out.Verdict.Rule)
		default:
			s.note(c, r, "")
		}
	}
	return out
}

// runAll runs independent checks concurrently and returns their results
// in list order.
func runAll[T any](checks []T, run func(T) Result) []Result {
	results := make([]Result, len(checks))
	var wg sync.WaitGroup
	for i, ch := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = run(ch)
		}()
	}
	wg.Wait()
	return results
}
