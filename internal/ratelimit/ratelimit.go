// Package ratelimit bounds what an account may send (seed 003: a
// hijacked account or home PC turned into a spam source): messages,
// recipients and distinct recipient domains per hour, per authenticated
// account and per client address on submission and SMTPS; suspends an
// account that tries to send far beyond its limits; raises an alert on
// a sudden rise of an account's volume or of its share of first-time
// recipients (anomaly.go); and bounds the connection rate of MX clients.
//
// Every limit is a token bucket in the state database (internal/state):
// per_hour tokens refill over an hour and at most burst are spent at
// once. A refusal is 450 4.7.1 with the time a retry will pass, so a
// legitimate client's queue delivers the rest later.
//
// SECURITY: the keys are the authenticated account (established by the
// server, never by MAIL FROM) and the client's address (IPv4, or the
// IPv6 /64, so one host cannot spread over its addresses). A state store
// that is full lets mail through (fail open): these limits slow abuse,
// the relay rule is what forbids it.
package ratelimit

import (
	"context"
	"log/slog"
	"net/netip"
	"strconv"
	"time"

	"kanmon/internal/address"
	"kanmon/internal/config"
	"kanmon/internal/listener"
	"kanmon/internal/metrics"
	"kanmon/internal/policy"
	"kanmon/internal/state"
)

// Suspensions keeps which accounts are suspended (directory.DB).
type Suspensions interface {
	Suspended(account string) (reason string, ok bool)
	Suspend(ctx context.Context, account, reason string) error
}

// Limiter applies [ratelimit]. It is safe for concurrent use.
type Limiter struct {
	cfg config.RateLimit
	st  state.Store
	dir Suspensions
	met *metrics.Metrics
	// Now is the clock (tests).
	Now func() time.Time
}

// New returns a Limiter keeping its counters in st.
func New(cfg config.RateLimit, st state.Store, dir Suspensions, met *metrics.Metrics) *Limiter {
	return &Limiter{cfg: cfg, st: st, dir: dir, met: met, Now: time.Now}
}

// Sender is an authenticated session as the limits see it.
type Sender struct {
	Conn     string
	Listener string
	Account  string
	IP       netip.Addr
	Log      *slog.Logger
}

// limited reports whether the rate limits apply: authenticated users on
// submission and SMTPS (the sendmail socket's local users are not
// limited; trusted networks on the MX listener neither).
func (s Sender) limited() bool {
	return s.Account != "" && (s.Listener == policy.ListenerSubmission || s.Listener == policy.ListenerSMTPS)
}

// bucket is one limit as applied to one key.
type bucket struct {
	rule  string // the rule refusing when it is empty
	what  string // for the reply: "messages", "recipients", "recipient domains"
	whose string // for the reply: the account or the address
	key   string
	rate  state.Rate
}

func perHour(per, burst int64) state.Rate {
	return state.Rate{Per: per, Period: time.Hour, Burst: burst}
}

func (l *Limiter) addrKey(ip netip.Addr) string { return listener.ClientKey(ip).String() }

// messageBuckets are the limits MAIL FROM spends one token of.
func (l *Limiter) messageBuckets(s Sender) []bucket {
	c := l.cfg
	return []bucket{
		{"submission.rate_messages", "messages", s.Account, "rl:m:u:" + s.Account, perHour(c.MessagesPerHour, c.MessagesBurst)},
		{"submission.address_rate_messages", "messages", l.addrKey(s.IP), "rl:m:a:" + l.addrKey(s.IP), perHour(c.AddressMessagesPerHour, c.AddressMessagesBurst)},
	}
}

// Mail decides a MAIL FROM of an authenticated session: a suspended
// account may not send (550 5.7.1); the message limits of the account
// and its address (450 4.7.1). An accepting Verdict has Accept set.
func (l *Limiter) Mail(s Sender) policy.Verdict {
	if s.Account == "" {
		return ok()
	}
	if v, suspended := l.suspended(s); suspended {
		return v
	}
	if !s.limited() {
		return ok()
	}
	return l.spend(s, l.messageBuckets(s), "messages", perHour(l.cfg.MessagesPerHour, l.cfg.MessagesBurst))
}

// Rcpt decides an accepted recipient of an authenticated session: the
// recipient limits, the recipient-domain limits when its domain is new
// within the hour, then the anomaly signals.
func (l *Limiter) Rcpt(s Sender, to address.Addr) policy.Verdict {
	if !s.limited() {
		return ok()
	}
	if v, suspended := l.suspended(s); suspended {
		return v
	}
	c := l.cfg
	a := l.addrKey(s.IP)
	bs := []bucket{
		{"submission.rate_recipients", "recipients", s.Account, "rl:r:u:" + s.Account, perHour(c.RecipientsPerHour, c.RecipientsBurst)},
		{"submission.address_rate_recipients", "recipients", a, "rl:r:a:" + a, perHour(c.AddressRecipientsPerHour, c.AddressRecipientsBurst)},
	}
	now := l.Now()
	domKeys := []string{"rd:u:" + s.Account + "\x00" + to.Domain, "rd:a:" + a + "\x00" + to.Domain}
	newDomain := [2]bool{}
	for i, k := range domKeys {
		_, seen := l.st.Get(k, now)
		newDomain[i] = !seen
	}
	if newDomain[0] {
		bs = append(bs, bucket{"submission.rate_domains", "recipient domains", s.Account, "rl:d:u:" + s.Account, perHour(c.DomainsPerHour, c.DomainsBurst)})
	}
	if newDomain[1] {
		bs = append(bs, bucket{"submission.address_rate_domains", "recipient domains", a, "rl:d:a:" + a, perHour(c.AddressDomainsPerHour, c.AddressDomainsBurst)})
	}
	if v := l.spend(s, bs, "recipients", perHour(c.RecipientsPerHour, c.RecipientsBurst)); !v.Accept {
		return v
	}
	for _, k := range domKeys {
		state.Seen(l.st, k, time.Hour, now)
	}
	return l.observe(s, to, now)
}

// spend takes one token from every bucket, or none: the first empty one
// refuses with the time a retry will find a token. Every attempt also
// counts toward the account's demand at suspend_factor times the
// account's limit kind; exceeding that suspends the account.
func (l *Limiter) spend(s Sender, bs []bucket, kind string, accountRate state.Rate) policy.Verdict {
	now := l.Now()
	if v, suspended := l.demand(s, kind, accountRate, now); suspended {
		return v
	}
	for _, b := range bs {
		if allowed, retry := state.Peek(l.st, b.key, b.rate, 1, now); !allowed {
			return l.refuse(s, b, retry, now)
		}
	}
	for _, b := range bs {
		state.Allow(l.st, b.key, b.rate, 1, now)
	}
	return ok()
}

// refuse is the 450 4.7.1 of an empty bucket, with when to retry.
func (l *Limiter) refuse(s Sender, b bucket, retry time.Duration, now time.Time) policy.Verdict {
	retry = retry.Round(time.Second) + time.Second
	at := now.Add(retry).UTC().Format("15:04:05 MST")
	reason := "rate limit reached for " + b.whose + ": " + strconv.FormatInt(b.rate.Per, 10) + " " + b.what +
		" an hour (burst " + strconv.FormatInt(b.rate.Burst, 10) + "); try again in " + retry.String() + " (at " + at + ")"
	return policy.Rejected(b.rule, 450, "4.7.1", reason)
}

func ok() policy.Verdict { return policy.Verdict{Accept: true} }

// Connect decides a new MX connection: at most mx_connections_per_minute
// per client, refilled over the minute (421 4.7.0 before the greeting).
func (l *Limiter) Connect(ip netip.Addr) policy.Verdict {
	n := l.cfg.MXConnectionsPerMinute
	if n <= 0 || !ip.IsValid() {
		return ok()
	}
	r := state.Rate{Per: n, Period: time.Minute, Burst: n}
	allowed, retry := state.Allow(l.st, "cr:"+l.addrKey(ip), r, 1, l.Now())
	if allowed {
		return ok()
	}
	retry = retry.Round(time.Second) + time.Second
	return policy.Rejected("client.connection_rate", 421, "4.7.0", "too many connections from "+ip.String()+
		" ("+strconv.FormatInt(n, 10)+" a minute), try again in "+retry.String())
}
