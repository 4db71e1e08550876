package policy

import (
	"kanmon/internal/batv"
)

// CheckBATV checks the bounce address tag of a local recipient
// (internal/batv) before anything looks the recipient up: a bounce
// (null sender) to an address without a valid tag answers mail we never
// sent and is refused with 550 5.7.1 (rule rcpt.batv), at the price of
// one HMAC, with no DNS, directory or queue work. A tag that parses is
// removed from the recipient for the checks after this one and for
// delivery, so the directory and the user see the plain address. In
// mode log, and during a domain's grace period, the refusal is only a
// Finding. Without a guard (tests of other checks) it does nothing.
func CheckBATV(e *Engine, s *Session, r *Recipient) (Verdict, bool) {
	if e.BATV == nil || r.Class != RcptLocal {
		return Verdict{}, false
	}
	given := r.Addr.String()
	res := e.BATV.Check(s.NullSender, r.Addr)
	r.Addr = res.Addr
	if res.Tagged || s.NullSender {
		r.Attrs = append(r.Attrs, "batv", string(res.Status), "batv_mode", string(res.Mode))
	}
	if res.Tagged {
		r.Attrs = append(r.Attrs, "tagged", given, "batv_key", res.Key)
	}
	if res.Action == batv.ActionAccept {
		return Verdict{}, false
	}
	v := Rejected("rcpt.batv", 550, "5.7.1", res.Reason(given))
	if res.Action == batv.ActionLog {
		attrs := []any{"addr", given, "batv", string(res.Status), "batv_mode", string(res.Mode)}
		if res.Grace {
			attrs = append(attrs, "grace_until", res.GraceUntil.Format("2006-01-02T15:04:05Z07:00"))
		}
		r.Findings = append(r.Findings, Finding{Verdict: v, Attrs: attrs})
		return Verdict{}, false
	}
	return v, true
}
