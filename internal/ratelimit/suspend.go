package ratelimit

import (
	"context"
	"fmt"
	"time"

	"kanmon/internal/policy"
	"kanmon/internal/state"
)

// suspended is the verdict for a suspended account: 550 5.7.1 at MAIL.
// Why not refuse the login instead: the owner must still read mail and
// be told plainly why sending fails; a 535 would read as a wrong
// password. The stored reason goes to the log, not to the client.
func (l *Limiter) suspended(s Sender) (policy.Verdict, bool) {
	if l.dir == nil {
		return policy.Verdict{}, false
	}
	reason, yes := l.dir.Suspended(s.Account)
	if !yes {
		return policy.Verdict{}, false
	}
	if s.Log != nil {
		s.Log.Info("account", "rule", "account.suspended", "user", s.Account, "suspended_because", reason)
	}
	return suspendedVerdict(s.Account), true
}

func suspendedVerdict(account string) policy.Verdict {
	return policy.Rejected("account.suspended", 550, "5.7.1",
		"account "+account+" is suspended and may not send: contact your postmaster")
}

// demandRate is the account's rate times suspend_factor: trying to send
// faster than that, for longer than the burst allows, suspends.
func demandRate(r state.Rate, factor float64) state.Rate {
	return state.Rate{Per: int64(float64(r.Per) * factor), Period: r.Period, Burst: int64(float64(r.Burst) * factor)}
}

// demand counts one attempt of kind toward the account's demand bucket;
// when that runs dry the account is suspended (cause "rate").
func (l *Limiter) demand(s Sender, kind string, r state.Rate, now time.Time) (policy.Verdict, bool) {
	f := l.cfg.SuspendFactor
	if f <= 0 {
		return policy.Verdict{}, false
	}
	if allowed, _ := state.Allow(l.st, "rl:x:"+kind+":"+s.Account, demandRate(r, f), 1, now); allowed {
		return policy.Verdict{}, false
	}
	reason := fmt.Sprintf("tried to send %s at more than %g times its limit (%d an hour, burst %d)", kind, f, r.Per, r.Burst)
	l.suspend(s, "rate", reason, now)
	return suspendedVerdict(s.Account), true
}

// suspend records a suspension in the directory, logs it and counts it.
// The account's buckets are refilled: the suspension is now what stops
// it, and an operator who lifts it has looked into the account.
func (l *Limiter) suspend(s Sender, cause, reason string, now time.Time) {
	if l.met != nil {
		l.met.Suspensions.WithLabelValues(cause).Inc()
	}
	var err error
	if l.dir != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = l.dir.Suspend(ctx, s.Account, cause+": "+reason)
		cancel()
	}
	attrs := []any{"rule", "account.suspend", "user", s.Account, "cause", cause, "reason", reason,
		"code", 550, "enhanced", "5.7.1"}
	if err != nil {
		attrs = append(attrs, "err", err.Error())
	}
	if s.Log != nil {
		s.Log.Warn("decision", attrs...)
	}
	for _, k := range []string{"rl:m:u:", "rl:r:u:", "rl:d:u:", "rl:x:messages:", "rl:x:recipients:"} {
		state.Reset(l.st, k+s.Account, now)
	}
}
