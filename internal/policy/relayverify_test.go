package policy_test

import (
	"context"
	"strings"
	"testing"

	"kanmon/internal/policy"
	"kanmon/internal/rcptverify"
)

// fixedVerifier answers every relay-domain question with res and counts them.
type fixedVerifier struct {
	res   rcptverify.Result
	calls int
}

func (f *fixedVerifier) Verify(ctx context.Context, conn, local, domain string) rcptverify.Result {
	f.calls++
	return f.res
}

// TestRelayRecipientVerified: a relay-domain recipient the partner
// refuses is refused at RCPT with the partner's code and words; one that
// cannot be verified gets 450 4.1.1 unless the domain accepts unverified
// recipients; a valid one is accepted and carries how it was verified.
// Local and remote recipients are never verified.
func TestRelayRecipientVerified(t *testing.T) {
	e, _ := newCountingEngine()
	s := &policy.Session{Listener: policy.ListenerMX, Conn: "c1"}
	f := &fixedVerifier{}
	e.Verifier = f

	f.res = rcptverify.Result{Outcome: rcptverify.Invalid, Method: "probe", Source: "probe", Code: 550, Enhanced: "5.1.1",
		Text: "<user@backup.example.net>: Recipient address rejected: User unknown", Host: "mx.backup.example.net"}
	v := e.Rcpt(s, mustParse(t, relayRcpt))
	checkVerdict(t, v.Verdict, false, "rcpt.relay_unknown", 550, "5.1.1")
	if !strings.Contains(v.Reason, "User unknown") {
		t.Errorf("refusal does not pass on the partner's words: %q", v.Reason)
	}

	f.res = rcptverify.Result{Outcome: rcptverify.Unverified, Method: "probe", Source: "probe", Reason: "connection refused"}
	v = e.Rcpt(s, mustParse(t, relayRcpt))
	checkVerdict(t, v.Verdict, false, "rcpt.relay_unverified", 450, "4.1.1")
	f.res.AcceptUnverified = true
	v = e.Rcpt(s, mustParse(t, relayRcpt))
	checkVerdict(t, v.Verdict, true, "relay.relay_domain", 250, "2.1.5")

	f.res = rcptverify.Result{Outcome: rcptverify.Valid, Method: "probe", Source: "cache", Code: 250, Enhanced: "2.1.5", Host: "mx.backup.example.net"}
	v = e.Rcpt(s, mustParse(t, relayRcpt))
	checkVerdict(t, v.Verdict, true, "relay.relay_domain", 250, "2.1.5")
	if v.Verified != "probe valid 250 2.1.5 via mx.backup.example.net (cache)" {
		t.Errorf("verdict Verified = %q", v.Verified)
	}

	f.res = rcptverify.Result{Outcome: rcptverify.Invalid, Method: "list", Source: "list"}
	v = e.Rcpt(s, mustParse(t, relayRcpt))
	checkVerdict(t, v.Verdict, false, "rcpt.relay_unknown", 550, "5.1.1")

	calls := f.calls
	e.Rcpt(s, mustParse(t, localRcpt))
	s.Client.Authenticated = true
	e.Rcpt(s, mustParse(t, remoteRcpt))
	if f.calls != calls {
		t.Errorf("local or remote recipients were verified (%d calls)", f.calls-calls)
	}
}
