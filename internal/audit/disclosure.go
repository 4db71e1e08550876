package audit

import (
	"context"
	"strings"
)

// commonNames are local parts that exist on most mail servers; asking for
// them beside the known user finds a disclosure even when the operator
// named no real account.
var commonNames = []string{"postmaster", "root", "admin", "abuse", "info"}

// maxVerbErrors is how many VRFY or EXPN commands one connection carries
// before the audit reconnects, to stay under error limits (kanmon closes
// after a few rejections; Postfix slows down after ten).
const maxVerbErrors = 6

// checkDisclosure compares the answers for known and unknown users to
// VRFY, EXPN and RCPT. Different VRFY or EXPN answers disclose accounts
// (harvesting, seed 004). Different RCPT answers are fine (that is
// rejecting at RCPT), but accepting the unknown user means a bounce later:
// accept-then-bounce, the source of backscatter (seed 002).
func (a *auditor) checkDisclosure(ctx context.Context) {
	for _, verb := range []string{"VRFY", "EXPN"} {
		if ctx.Err() != nil {
			return
		}
		a.checkVerb(ctx, verb)
	}
	a.checkAcceptUnknown(ctx)
}

// verbProbe is one question of the VRFY or EXPN battery and its answer.
type verbProbe struct {
	arg      string
	reply    *Reply
	evidence []string
}

// checkVerb asks verb in both forms a server may answer differently (the
// bare local part, and the full address in the audited domain) for a
// made-up name and for the known and common names, and compares each
// answer with the made-up name's answer in the same form. Postfix, for
// one, answers 504 to every bare name but tells accounts apart once the
// domain is given.
func (a *auditor) checkVerb(ctx context.Context, verb string) {
	names := dedupe(append([]string{a.localPart(a.opts.KnownUser)}, commonNames...))
	var s *session
	errs := 0
	defer func() { s.close() }()
	ask := func(arg string) *verbProbe {
		if s == nil || s.broken != nil || errs >= maxVerbErrors {
			s.close()
			s, errs = nil, 0
			ns, err := a.open(ctx, a.opts.HeloName)
			if err != nil {
				return nil
			}
			s = ns
		}
		mark := s.mark()
		rep, err := s.cmd(verb + " " + arg)
		if err != nil {
			return nil
		}
		if !rep.Positive() {
			errs++
		}
		return &verbProbe{arg: arg, reply: rep, evidence: s.evidence(mark)}
	}
	var disclosed, answersAll []string
	for _, form := range []func(string) string{
		func(n string) string { return n },
		func(n string) string { return n + "@" + a.opts.Domain },
	} {
		made := ask(form(a.unknown))
		if made == nil {
			a.note("%s check not finished: no answer for %s", verb, form(a.unknown))
			return
		}
		if made.reply.Positive() && strings.Contains(strings.ToLower(made.reply.String()), strings.ToLower(a.unknown)) {
			answersAll = append(answersAll, made.evidence...)
		}
		for _, n := range names {
			if ctx.Err() != nil {
				return
			}
			p := ask(form(n))
			if p == nil {
				a.note("%s check not finished for %s", verb, form(n))
				break
			}
			if discloses(p.reply, made.reply) {
				disclosed = append(disclosed, made.evidence...)
				disclosed = append(disclosed, p.evidence...)
				break // one pair per form proves it; spare the server the rest
			}
		}
	}
	switch {
	case len(disclosed) > 0:
		a.add(Finding{
			ID:       "disclosure." + strings.ToLower(verb),
			Title:    verb + " tells an existing account from a missing one (address harvesting)",
			Severity: Medium,
			Evidence: disclosed,
			Fix: "Make " + verb + " disclose nothing: answer 252 (cannot verify) for every name, or 502 (disabled). " +
				"Postfix: disable_vrfy_command = yes (Postfix has no EXPN); sendmail: PrivacyOptions=goaway; kanmon does this by default.",
		})
	case len(answersAll) > 0:
		a.add(Finding{
			ID:       "disclosure." + strings.ToLower(verb) + "-answers-all",
			Title:    verb + " is enabled and confirms any name, even a made-up one",
			Severity: Low,
			Evidence: answersAll,
			Fix: "Nothing is disclosed today, but the command is on: answer 252 without echoing the name, or disable it " +
				"(Postfix: disable_vrfy_command = yes), so a later change to the recipient tables cannot start disclosing accounts.",
		})
	}
}

// discloses reports whether the answers for an existing-looking name and
// a made-up name tell them apart: different codes where at least one is
// positive (250 or 252 against 550). Two refusals (504 and 504, or 502)
// say nothing.
func discloses(name, made *Reply) bool {
	return name.Code != made.Code && (name.Positive() || made.Positive())
}

// localPart strips a domain from a user given as an address.
func (a *auditor) localPart(user string) string {
	if at := strings.LastIndexByte(user, '@'); at > 0 {
		return user[:at]
	}
	return user
}

// checkAcceptUnknown asks RCPT for the known and a made-up local user.
func (a *auditor) checkAcceptUnknown(ctx context.Context) {
	s, err := a.open(ctx, a.opts.HeloName)
	if err != nil {
		a.note("accept-then-bounce check not run: %v", err)
		return
	}
	defer s.close()
	known, unknown := a.opts.KnownUser, a.unknown
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
