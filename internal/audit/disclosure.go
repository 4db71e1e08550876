package audit

import (
	"context"
	"strings"
)

// checkDisclosure compares the answers for a known and an unknown user to
// VRFY, EXPN and RCPT. Different VRFY or EXPN answers disclose accounts
// (harvesting, seed 004). Different RCPT answers are fine (that is
// rejecting at RCPT), but accepting the unknown user means a bounce later:
// accept-then-bounce, the source of backscatter (seed 002).
func (a *auditor) checkDisclosure(ctx context.Context) {
	s, err := a.open(ctx, a.opts.HeloName)
	if err != nil {
		a.note("account disclosure checks not run: %v", err)
		return
	}
	defer s.close()
	known, unknown := a.opts.KnownUser, a.unknown
	for _, verb := range []string{"VRFY", "EXPN"} {
		mark := s.mark()
		kr, err := s.cmd(verb + " " + known)
		if err != nil {
			a.note("%s check not run: %v", verb, err)
			return
		}
		ur, err := s.cmd(verb + " " + unknown)
		if err != nil {
			a.note("%s check not run: %v", verb, err)
			return
		}
		if kr.Positive() && kr.Code != ur.Code {
			a.add(Finding{
				ID:       "disclosure." + strings.ToLower(verb),
				Title:    verb + " tells an existing account from a missing one (address harvesting)",
				Severity: Medium,
				Evidence: s.evidence(mark),
				Fix: "Make " + verb + " disclose nothing: answer 252 (cannot verify) for every name, or 502 (disabled). " +
					"Postfix: disable_vrfy_command = yes (Postfix has no EXPN); sendmail: PrivacyOptions=goaway; kanmon does this by default.",
			})
		}
	}

	if _, err := s.cmd("RSET"); err != nil {
		a.note("accept-then-bounce check not run: %v", err)
		return
	}
	mark := s.mark()
	rep, err := s.cmd("MAIL FROM:<" + a.opts.From + ">")
	if err != nil || !rep.Positive() {
		a.note("accept-then-bounce check not run: MAIL FROM:<%s> was not accepted", a.opts.From)
		return
	}
	knownAddr := known
	if !strings.Contains(knownAddr, "@") {
		knownAddr += "@" + a.opts.Domain
	}
	if _, err := s.cmd("RCPT TO:<" + knownAddr + ">"); err != nil {
		a.note("accept-then-bounce check not run: %v", err)
		return
	}
	ur, err := s.cmd("RCPT TO:<" + unknown + "@" + a.opts.Domain + ">")
	if err != nil {
		a.note("accept-then-bounce check not run: %v", err)
		return
	}
	a.unknownLocal = ur
	switch {
	case ur.Positive():
		a.add(Finding{
			ID:       "backscatter.accept-unknown",
			Title:    "Accepts mail for a local user that does not exist (accept-then-bounce: backscatter risk)",
			Severity: Medium,
			Evidence: s.evidence(mark),
			Fix: "Reject unknown recipients at RCPT with 550 5.1.1 instead of accepting and bouncing: every bounce of spam with a forged sender goes to an innocent third party. " +
				"Postfix: keep local_recipient_maps (and relay_recipient_maps for relay domains) populated; kanmon always checks recipients at RCPT. " +
				"A deliberate catch-all domain is the exception: then filter before accepting, never bounce.",
		})
	case ur.Temporary():
		a.note("RCPT for an unknown local user got a temporary reply (%s): accept-then-bounce not decided", ur.Lines[0])
	}
}
