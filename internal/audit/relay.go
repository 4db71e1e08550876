package audit

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// relayVariant is one way of asking the server to relay.
type relayVariant struct {
	id    string
	title string
	helo  string // EHLO name; "" means Options.HeloName
	from  string // MAIL FROM argument, exactly as sent
	rcpt  string // RCPT TO argument, exactly as sent
	// localForm: the address's own domain is the local domain (or it has
	// none), but it encodes a foreign destination. A server may accept it
	// as an unknown local user and bounce later, or route it away.
	localForm bool
	// confirm: the message would reach the foreign address (ConfirmTo)
	// if relayed, so DATA may be sent with --confirm-to.
	confirm bool
	// plainLocal: no routing at all, just a local part; accepting it is
	// the accept-then-bounce finding when unknown local users are accepted.
	plainLocal bool
}

// rejectionsPerSession is how many rejected relay attempts one connection
// carries before the audit reconnects, to stay under error limits and
// tarpits (Postfix slows down after 10 errors, kanmon closes after a few).
const rejectionsPerSession = 4

// relayVariants builds the battery. local is the server's domain, user and
// foreign the foreign recipient, server the server's address literal and
// from the outside sender.
func relayVariants(local, user, foreign, server, from, helo string) []relayVariant {
	to := user + "@" + foreign
	mixed := mixCase(foreign)
	fromUser, _, _ := strings.Cut(from, "@")
	v := []relayVariant{
		{id: "plain", title: "outside sender to outside recipient",
			from: "<" + from + ">", rcpt: "<" + to + ">", confirm: true},
		{id: "null-sender", title: "null sender (bounce) to outside recipient",
			from: "<>", rcpt: "<" + to + ">", confirm: true},
		{id: "local-sender", title: "forged local sender to outside recipient",
			from: "<postmaster@" + local + ">", rcpt: "<" + to + ">", confirm: true},
		{id: "local-sender-helo", title: "forged local sender and HELO with the local domain",
			helo: local, from: "<postmaster@" + local + ">", rcpt: "<" + to + ">", confirm: true},
		{id: "recipient-domain-sender", title: "sender in the recipient's domain",
			from: "<" + fromUser + "@" + foreign + ">", rcpt: "<" + to + ">", confirm: true},
		{id: "server-literal-sender", title: "sender at the server's own IP literal",
			from: "<" + fromUser + "@" + server + ">", rcpt: "<" + to + ">", confirm: true},
		{id: "unqualified-sender", title: "unqualified sender to outside recipient",
			from: "<" + fromUser + ">", rcpt: "<" + to + ">", confirm: true},
		{id: "no-brackets", title: "recipient without angle brackets",
			from: "<" + from + ">", rcpt: to, confirm: true},
		{id: "space-after-colon", title: "space between RCPT TO: and the address",
			from: "<" + from + ">", rcpt: " <" + to + ">", confirm: true},
		{id: "trailing-dot", title: "recipient domain with a trailing dot",
			from: "<" + from + ">", rcpt: "<" + to + ".>", confirm: true},
		{id: "mixed-case", title: "recipient domain in mixed case",
			from: "<" + from + ">", rcpt: "<" + user + "@" + mixed + ">", confirm: true},
		{id: "ip-literal", title: "recipient at an IP address literal",
			from: "<" + from + ">", rcpt: "<" + user + "@[192.0.2.1]>"},
		{id: "source-route", title: "source route through the local domain",
			from: "<" + from + ">", rcpt: "<@" + local + ":" + to + ">", confirm: true},
		{id: "source-route-literal", title: "source route through the server's IP literal",
			from: "<" + from + ">", rcpt: "<@" + server + ",@" + local + ":" + to + ">", confirm: true},
		// Not confirmable: relayed, it goes to the local part
		// "user@local" at the foreign domain, not to the operator.
		{id: "multiple-at-foreign", title: "several @, foreign domain last",
			from: "<" + from + ">", rcpt: "<" + user + "@" + local + "@" + foreign + ">"},
		{id: "lookalike-suffix", title: "domain ending in the local domain's name without a dot",
			from: "<" + from + ">", rcpt: "<" + user + "@kanmon-audit-" + local + ">"},
		{id: "lookalike-prefix", title: "domain starting with the local domain",
			from: "<" + from + ">", rcpt: "<" + user + "@" + local + "." + foreign + ">"},

		// Local-looking forms that encode a foreign destination.
		{id: "percent-hack", title: "percent hack (user%foreign@local)", localForm: true,
			from: "<" + from + ">", rcpt: "<" + user + "%" + foreign + "@" + local + ">", confirm: true},
		{id: "percent-hack-literal", title: "percent hack at the server's IP literal", localForm: true,
			from: "<" + from + ">", rcpt: "<" + user + "%" + foreign + "@" + server + ">", confirm: true},
		{id: "percent-hack-localhost", title: "percent hack at localhost", localForm: true,
			from: "<" + from + ">", rcpt: "<" + user + "%" + foreign + "@localhost>", confirm: true},
		{id: "percent-hack-unqualified", title: "unqualified percent hack (user%foreign)", localForm: true,
			from: "<" + from + ">", rcpt: "<" + user + "%" + foreign + ">", confirm: true},
		{id: "bang-path", title: "UUCP bang path (foreign!user@local)", localForm: true,
			from: "<" + from + ">", rcpt: "<" + foreign + "!" + user + "@" + local + ">", confirm: true},
		{id: "bang-path-unqualified", title: "unqualified bang path (foreign!user)", localForm: true,
			from: "<" + from + ">", rcpt: "<" + foreign + "!" + user + ">", confirm: true},
		{id: "quoted-at", title: `quoted local part containing @ ("user@foreign")`, localForm: true,
			from: "<" + from + ">", rcpt: `<"` + to + `">`, confirm: true},
		{id: "quoted-at-local", title: `quoted local part containing @ at the local domain ("user@foreign"@local)`, localForm: true,
			from: "<" + from + ">", rcpt: `<"` + to + `"@` + local + ">", confirm: true},
		{id: "quoted-percent-local", title: `quoted percent hack ("user%foreign"@local)`, localForm: true,
			from: "<" + from + ">", rcpt: `<"` + user + "%" + foreign + `"@` + local + ">", confirm: true},
		{id: "multiple-at-local", title: "several @, local domain last (user@foreign@local)", localForm: true,
			from: "<" + from + ">", rcpt: "<" + to + "@" + local + ">", confirm: true},
		{id: "unqualified-recipient", title: "unqualified recipient", localForm: true, plainLocal: true,
			from: "<" + from + ">", rcpt: "<" + user + ">"},
	}
	for i := range v {
		if v[i].helo == "" {
			v[i].helo = helo
		}
	}
	return v
}

// mixCase alternates the case of the letters of s ("ExAmPlE.CoM").
func mixCase(s string) string {
	b := []byte(strings.ToLower(s))
	up := true
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			if up {
				b[i] = c - 'a' + 'A'
			}
			up = !up
		}
	}
	return string(b)
}

// relayOutcome is what happened to one variant.
type relayOutcome int

const (
	relayRejected relayOutcome = iota
	relayAccepted
	relayTemporary   // 4xx to RCPT: inconclusive
	relayMailRefused // MAIL FROM refused: RCPT never asked
	relayNotTested   // connection problems
)

// checkRelay runs the relay battery: for each variant a fresh transaction
// (RSET, MAIL, RCPT), a fresh connection after a few rejections or when
// the server closes, and never DATA unless ConfirmTo is set.
func (a *auditor) checkRelay(ctx context.Context) {
	user, foreign := "kanmon-relay-test", a.opts.ForeignDomain
	if a.opts.ConfirmTo != "" {
		at := strings.LastIndexByte(a.opts.ConfirmTo, '@')
		user, foreign = a.opts.ConfirmTo[:at], a.opts.ConfirmTo[at+1:]
	}
	variants := relayVariants(a.opts.Domain, user, foreign, ipLiteral(a.ip), a.opts.From, a.opts.HeloName)

	var (
		s           *session
		rejections  int
		temporary   []string
		mailRefused []string
		untested    []string
	)
	defer func() { s.close() }()
	for _, v := range variants {
		if ctx.Err() != nil {
			return
		}
		outcome, evidence := relayNotTested, []string(nil)
		for attempt := 0; attempt < 2 && outcome == relayNotTested; attempt++ {
			if s == nil || s.broken != nil || rejections >= rejectionsPerSession || s.helo != v.helo {
				s.close()
				s, rejections = nil, 0
				ns, err := a.open(ctx, v.helo)
				if err != nil {
					untested = append(untested, fmt.Sprintf("%s (%v)", v.id, err))
					break
				}
				s = ns
			}
			outcome, evidence = a.tryRelay(s, v)
		}
		switch outcome {
		case relayAccepted:
			if v.plainLocal && a.unknownLocal != nil && a.unknownLocal.Positive() {
				continue // already reported as backscatter.accept-unknown
			}
			a.add(a.relayFinding(v, evidence))
		case relayRejected:
			rejections++
		case relayTemporary:
			rejections++
			temporary = append(temporary, v.id)
		case relayMailRefused:
			rejections++
			mailRefused = append(mailRefused, v.id)
		}
	}
	if len(temporary) > 0 {
		a.note("relay variants answered with a temporary (4xx) reply, so not proven closed (greylisting or a deferred relay rule): %s", strings.Join(temporary, ", "))
	}
	if len(mailRefused) > 0 {
		a.note("relay variants not tested because MAIL FROM was refused: %s", strings.Join(mailRefused, ", "))
	}
	if len(untested) > 0 {
		a.note("relay variants not tested because of connection problems: %s", strings.Join(untested, "; "))
	}
}

// tryRelay runs one variant on s. The evidence is the EHLO command that
// opened the session followed by the transaction.
func (a *auditor) tryRelay(s *session, v relayVariant) (relayOutcome, []string) {
	if _, err := s.cmd("RSET"); err != nil {
		return relayNotTested, nil
	}
	mark := s.mark()
	ev := func() []string { return append([]string{"C: " + s.heloCmd}, s.evidence(mark)...) }
	rep, err := s.cmd("MAIL FROM:" + v.from)
	if err != nil {
		return relayNotTested, nil
	}
	if !rep.Positive() {
		return relayMailRefused, ev()
	}
	rep, err = s.cmd("RCPT TO:" + v.rcpt)
	if err != nil {
		return relayNotTested, nil
	}
	switch {
	case rep.Positive():
	case rep.Temporary():
		return relayTemporary, ev()
	default:
		return relayRejected, ev()
	}
	if a.opts.ConfirmTo != "" && v.confirm {
		a.sendConfirmation(s, v)
	}
	return relayAccepted, ev()
}

// sendConfirmation sends the one test message of a variant to ConfirmTo.
func (a *auditor) sendConfirmation(s *session, v relayVariant) {
	rep, err := s.cmd("DATA")
	if err != nil || rep.Code != 354 {
		return
	}
	now := time.Now().UTC()
	body := []string{
		"From: kanmon audit <" + a.opts.From + ">",
		"To: <" + a.opts.ConfirmTo + ">",
		"Subject: kanmon audit: " + a.opts.Target + " relayed variant " + v.id,
		"Date: " + now.Format(time.RFC1123Z),
		"Message-ID: <kanmon-audit." + v.id + "." + a.unknown + "@" + a.opts.HeloName + ">",
		"X-Kanmon-Audit: relay-variant=" + v.id,
		"",
		"This message was sent by \"kanmon audit\" through " + a.opts.Target + ",",
		"which accepted the relay variant \"" + v.id + "\" (" + v.title + "):",
		"  MAIL FROM:" + v.from,
		"  RCPT TO:" + v.rcpt,
		"Its arrival proves that the server relays mail for outsiders.",
	}
	for _, l := range body {
		if strings.HasPrefix(l, ".") {
			l = "." + l
		}
		if err := s.send(l); err != nil {
			return
		}
	}
	if rep, err := s.cmd("."); err == nil && rep.Positive() {
		s.record("-- ", "test message sent to "+a.opts.ConfirmTo+": if it arrives, the relay is confirmed")
	}
}

// relayFinding turns an accepted variant into a finding.
func (a *auditor) relayFinding(v relayVariant, evidence []string) Finding {
	f := Finding{
		ID:       "relay." + v.id,
		Evidence: evidence,
	}
	if !v.localForm {
		f.Severity = Critical
		f.Title = "Open relay: accepted " + v.title
		f.Fix = "Grant relay only by who the client is: authenticated sessions (SMTP AUTH over TLS) and explicitly trusted networks. " +
			"Never by MAIL FROM, HELO or the form of the address; parse the recipient per RFC 5321 (the domain after the last @, source routes ignored) " +
			"and reject any non-local domain with 554 5.7.1 at RCPT. Postfix: smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination with a narrow mynetworks; " +
			"kanmon: keep trusted_networks to your own LAN."
		if a.opts.ConfirmTo != "" && v.confirm {
			f.Title += " (a test message was sent to " + a.opts.ConfirmTo + ")"
		}
		return f
	}
	f.Severity = Medium
	f.Title = "Accepted a local-looking address that routes elsewhere: " + v.title
	f.Fix = "Reject addresses with sender-specified routing (%, !, quoted @, several @) at RCPT, or treat them as plain unknown local users and reject those at RCPT. " +
		"Accepting them either relays (if the server honours the routing) or creates a bounce later (backscatter). " +
		"Postfix: allow_percent_hack = no, swap_bangpath = no, and keep reject_unauth_destination (kanmon never honours such routing)."
	if a.unknownLocal != nil && a.unknownLocal.Permanent() {
		// The server rejects unknown local users at RCPT, so it did not take
		// this for one: it most likely routes it to the foreign domain.
		f.Severity = High
		f.Title += " (unknown local users are rejected, so this is likely relayed)"
	}
	if a.opts.ConfirmTo != "" && v.confirm {
		f.Title += "; a test message was sent to " + a.opts.ConfirmTo + ": if it arrives, this is an open relay"
	} else {
		f.Title += "; run with --confirm-to to prove whether it relays"
	}
	return f
}
