package policy

import (
	"context"
	"strconv"

	"kanmon/internal/rcptverify"
)

// RecipientVerifier says whether a recipient of a relay domain exists at
// the partner (internal/rcptverify).
type RecipientVerifier interface {
	Verify(ctx context.Context, conn, local, domain string) rcptverify.Result
}

// CheckRelayRecipient refuses, at RCPT, a recipient of a relay domain
// that the partner does not have: accepted, it could only be dropped
// later (mail from outside is never bounced), and the sender would never
// know. The partner's own permanent answer is passed on; when no answer
// can be had the recipient gets 450 4.1.1 (the sender retries), unless
// the operator chose unverified = "accept" for the domain. Without a
// Verifier (tests of other checks) it does nothing; the server always
// sets one.
func CheckRelayRecipient(e *Engine, s *Session, r *Recipient) (Verdict, bool) {
	if r.Class != RcptRelayDomain || e.Verifier == nil || !r.Relay.Accept {
		return Verdict{}, false
	}
	res := e.Verifier.Verify(context.Background(), s.Conn, r.Addr.Local, r.Addr.Domain)
	r.Verified = res.Summary()
	who := "<" + r.Addr.String() + ">"
	switch res.Outcome {
	case rcptverify.Valid:
		return Verdict{}, false
	case rcptverify.Invalid:
		if res.Method == rcptverify.MethodList {
			return Rejected("rcpt.relay_unknown", 550, "5.1.1", who+": no such user at "+r.Addr.Domain), true
		}
		code, enh := res.Code, res.Enhanced
		if code/100 != 5 {
			code = 550
		}
		if enh == "" || enh[0] != '5' {
			enh = "5.1.1"
		}
		said := strconv.Itoa(res.Code)
		if res.Enhanced != "" {
			said += " " + res.Enhanced
		}
		if res.Text != "" {
			said += " " + res.Text
		}
		return Rejected("rcpt.relay_unknown", code, enh,
			who+": refused by the mail server of "+r.Addr.Domain+" ("+said+")"), true
	}
	if res.AcceptUnverified {
		return Verdict{}, false
	}
	return Rejected("rcpt.relay_unverified", 450, "4.1.1",
		who+": cannot verify this recipient with the mail server of "+r.Addr.Domain+" now, try again later"), true
}
