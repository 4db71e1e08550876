package msgauth

import (
	"context"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"

	"kanmon/internal/config"
)

// decide weighs the complete message: the header From:, then DMARC, and
// builds the header fields that go on top of it.
func (st *Stream) decide() Result {
	addr, from, problem := FromDomain(st.fields)
	if problem != "" {
		if r, refused := st.fromHeader(problem); refused {
			return r
		}
	}
	st.logDKIM()
	var out Result
	dm := ""
	if from != "" && st.c.cfg.DMARC != config.ActionOff {
		o := st.dmarc(from)
		dm = o.Result
		if o.Result == "fail" {
			r, refused := st.dmarcFail(from, addr, o)
			if refused {
				return r
			}
			out.Quarantine = r.Quarantine
		} else {
			st.note("dmarc."+o.Result, config.ActionLog, "DMARC "+o.Result+" recorded: "+o.Reason, "",
				"domain", from, "policy", string(o.Policy))
		}
	}
	spfFrom := ""
	if at := strings.LastIndexByte(st.s.MailFrom, '@'); at >= 0 {
		spfFrom = strings.ToLower(st.s.MailFrom[at+1:])
	}
	out.Prepend = FormatAuthResults(st.c.authservID, st.s.SPF, spfFrom, st.s.Helo, st.sigs, dm, from)
	if out.Quarantine {
		out.Prepend = append(out.Prepend, QuarantineField+": dmarc\r\n"...)
	}
	return out
}

// fromHeader decides a header From: that does not hold exactly one
// address: refused (550 5.6.0) unless the action or the client says
// only to record it.
func (st *Stream) fromHeader(problem string) (Result, bool) {
	action := st.c.cfg.FromHeader
	if action == config.ActionOff {
		return Result{}, false
	}
	if !st.s.Enforce {
		action = config.ActionLog
	}
	code, enh := 550, "5.6.0"
	if action == config.ActionTempfail {
		code, enh = 451, "4.6.0"
	}
	reason := problem + ": it must hold exactly one address (RFC 5322)"
	if action == config.ActionLog {
		st.note(RuleFromHeader, action, reason, "550 5.6.0")
		return Result{}, false
	}
	st.count(RuleFromHeader, action)
	return st.refuse(RuleFromHeader, code, enh, reason, "action", action), true
}

// dmarc looks the policy up and evaluates the message against it.
func (st *Stream) dmarc(from string) Outcome {
	ctx, cancel := context.WithTimeout(st.ctx, st.c.Budget)
	defer cancel()
	rec, org, err := st.c.lookupPolicy(ctx, from)
	spfDomain := st.s.Helo
	if at := strings.LastIndexByte(st.s.MailFrom, '@'); at >= 0 {
		spfDomain = st.s.MailFrom[at+1:]
	}
	return Evaluate(Inputs{From: from, Record: rec, OrgRecord: org, LookupErr: err,
		SPF: st.s.SPF, SPFDomain: spfDomain, DKIM: st.sigs})
}

// dmarcFail applies the domain's policy to a failing message: refused
// for p=reject, quarantined for p=quarantine, recorded otherwise (and
// always when dmarc = "log" or for a client on the allow list).
func (st *Stream) dmarcFail(from, addr string, o Outcome) (Result, bool) {
	enforce := st.s.Enforce && st.c.cfg.DMARC == config.DMARCEnforce
	reason := "message fails the DMARC policy of " + from + " (p=" + string(o.Policy) + "): " + o.Reason
	attrs := []any{"domain", from, "from", addr, "policy", string(o.Policy)}
	switch {
	case enforce && o.Policy == dmarc.PolicyReject:
		st.count(RuleDMARC, config.ActionReject)
		return st.refuse(RuleDMARC, 550, "5.7.1", reason, append([]any{"action", config.ActionReject}, attrs...)...), true
	case enforce && o.Policy == dmarc.PolicyQuarantine:
		st.note(RuleDMARC, "quarantine", reason+"; delivered into the Junk folder", "250 2.0.0", attrs...)
		return Result{Quarantine: true}, false
	}
	would := "250 2.0.0"
	if o.Policy == dmarc.PolicyReject {
		would = "550 5.7.1"
	}
	st.note(RuleDMARC, config.ActionLog, reason, would, attrs...)
	return Result{}, false
}

// logDKIM writes one decision line with the signatures' results.
func (st *Stream) logDKIM() {
	if len(st.sigs) == 0 {
		return
	}
	res := make([]string, len(st.sigs))
	for i, d := range st.sigs {
		res[i] = d.Result + " d=" + d.Domain + " s=" + d.Selector
		if d.Reason != "" {
			res[i] += " (" + d.Reason + ")"
		}
	}
	st.note(RuleDKIM, config.ActionLog, "DKIM recorded", "", "dkim", strings.Join(res, "; "))
}

// note records a finding that does not refuse: one decision line and
// the metric.
func (st *Stream) note(rule, action, reason, would string, attrs ...any) {
	st.count(rule, action)
	a := []any{"rule", rule, "action", action, "reason", reason}
	if would != "" {
		a = append(a, "would", would)
	}
	st.s.Log.Info("decision", append(a, attrs...)...)
}

// count bumps kanmon_inbound_checks_total.
func (st *Stream) count(rule, action string) {
	if st.c.met != nil {
		st.c.met.Inbound.WithLabelValues(rule, action).Inc()
	}
}
