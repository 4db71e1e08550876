package policy

import (
	"net/netip"
	"sync/atomic"

	"kanmon/internal/address"
	"kanmon/internal/batv"
)

// Listener roles, which decide some checks.
const (
	ListenerMX         = "mx"
	ListenerSubmission = "submission"
	ListenerSMTPS      = "smtps"
	ListenerLocal      = "local"
)

// Session is what the MAIL and RCPT checks may look at: facts the server
// established, plus the session's listener role.
type Session struct {
	Client   Client
	Listener string
	AuthUser string // account address when Client.Authenticated
	// Size is the message size the client announced with MAIL FROM
	// SIZE=, 0 when it gave none.
	Size int64
	// Conn is the connection id, for the log lines of checks that log.
	Conn string
	// NullSender is set at RCPT when the transaction's sender is <>.
	NullSender bool
}

// Directory answers the account questions the checks need.
type Directory interface {
	// Resolve maps a recipient to the account receiving it.
	Resolve(address string) (account string, ok bool)
	// MaySendAs reports whether account may use address as sender.
	MaySendAs(account, address string) bool
}

// MailCheck is one check of the MAIL FROM stage.
type MailCheck func(e *Engine, s *Session, from address.Addr) (Verdict, bool)

// Recipient is one RCPT TO being checked, with what the checks have
// learnt about it so far, so each fact is established once per
// recipient: the class before any check runs, the relay verdict by
// CheckRelay, the receiving account by CheckLocalRecipient.
type Recipient struct {
	Addr  address.Addr
	Class RcptClass
	// Relay is the relay rule's verdict; the zero Verdict (not yet
	// decided) refuses, so a list without CheckRelay fails closed.
	Relay Verdict
	// Account is the account receiving a local recipient ("" until
	// CheckLocalRecipient found it, and for other classes).
	Account string
	// Verified is how a relay-domain recipient was verified
	// (CheckRelayRecipient), for the queue; "" otherwise.
	Verified string
	// Attrs is evidence for the decision's log line (key, value pairs).
	Attrs []any
	// Findings are refusals a check found but did not enforce (action
	// log), each logged as a decision line of its own.
	Findings []Finding
}

// Finding is a refusal a check would have given (mode log): the
// decision line names its rule, with action "log" and the reply it
// would have sent.
type Finding struct {
	Verdict
	Attrs []any
}

// RcptCheck is one check of the RCPT TO stage. It returns the verdict and
// whether it decided (false lets the next check run); it may record what
// it learnt in r for the checks after it.
type RcptCheck func(e *Engine, s *Session, r *Recipient) (Verdict, bool)

// RcptVerdict is the outcome of the RCPT stage and what was learnt on the
// way: the recipient's class and, for a local one, its account.
type RcptVerdict struct {
	Verdict
	Class    RcptClass
	Account  string
	Verified string
	// Addr is the recipient as it is delivered: the one given, less its
	// bounce address tag (CheckBATV).
	Addr     address.Addr
	Attrs    []any
	Findings []Finding
}

// Engine runs the checks of each SMTP stage in order; the first check
// that decides wins. Adding a check is one function and one line in a list.
type Engine struct {
	domains                 atomic.Pointer[Domains]
	Dir                     Directory
	RejectForgedLocalSender bool
	// Mailboxes answers the quota check; nil means no mailbox quotas.
	Mailboxes Mailboxes
	// Clients holds the relay rule's configured inputs (trusted
	// networks, POP-before-SMTP); see ClientOf.
	Clients Clients
	// Verifier checks relay-domain recipients (CheckRelayRecipient).
	Verifier RecipientVerifier
	// BATV checks bounce address tags (CheckBATV); nil: no check.
	BATV *batv.Guard
	// HeaderBinding configures the header From: binding (headerfrom.go).
	HeaderBinding HeaderBinding

	MailChecks []MailCheck
	RcptChecks []RcptCheck
}

// NewEngine returns an engine with kanmon's standard checks.
func NewEngine(d Domains, dir Directory, rejectForgedLocal bool) *Engine {
	e := &Engine{
		Dir: dir, RejectForgedLocalSender: rejectForgedLocal,
		MailChecks: []MailCheck{CheckAuthRequired, CheckSenderBinding, CheckForgedLocalSender},
		RcptChecks: []RcptCheck{CheckRelay, CheckBATV, CheckLocalRecipient, CheckMailboxQuota, CheckRelayRecipient},
	}
	e.SetDomains(d)
	return e
}

// Domains returns the domain lists in force.
func (e *Engine) Domains() Domains { return *e.domains.Load() }

// SetDomains replaces the domain lists (on reload); sessions in progress
// see either the old or the new lists, never a mix.
func (e *Engine) SetDomains(d Domains) { e.domains.Store(&d) }

// Mail runs the MAIL FROM checks.
func (e *Engine) Mail(s *Session, from address.Addr) Verdict {
	for _, c := range e.MailChecks {
		if v, decided := c(e, s, from); decided {
			return v
		}
	}
	return Verdict{Accept: true, Rule: "mail.ok", Code: 250, Enhanced: "2.1.0", Reason: "sender OK"}
}

// ClientOf establishes the relay facts of a client (Clients.ClientOf).
func (e *Engine) ClientOf(ip netip.Addr, listener, authUser string) Client {
	return e.Clients.ClientOf(ip, listener, authUser)
}

// Rcpt runs the RCPT TO checks; the first that decides wins. An accepted
// local recipient gets rule "rcpt.local" and its account; any other
// accepted recipient the relay rule's own rule ("relay.authenticated",
// "relay.relay_domain", ...). If a check that establishes a fact was left
// out of the list, the recipient is refused (temporarily), never waved
// through.
func (e *Engine) Rcpt(s *Session, rcpt address.Addr) RcptVerdict {
	r := &Recipient{Addr: rcpt, Class: e.Domains().Classify(rcpt)}
	out := func(v Verdict) RcptVerdict {
		return RcptVerdict{Verdict: v, Class: r.Class, Account: r.Account, Verified: r.Verified, Addr: r.Addr, Attrs: r.Attrs, Findings: r.Findings}
	}
	for _, c := range e.RcptChecks {
		if v, decided := c(e, s, r); decided {
			return out(v)
		}
	}
	if !r.Relay.Accept || r.Class == RcptLocal && r.Account == "" {
		// A check that establishes one of these facts is missing from
		// the list: fail closed.
		return RcptVerdict{Verdict: Rejected("policy.incomplete", 451, "4.3.0", "local error in processing, try again later"), Class: r.Class, Addr: r.Addr}
	}
	v := Verdict{Accept: true, Rule: r.Relay.Rule, Code: 250, Enhanced: "2.1.5", Reason: "recipient OK"}
	if r.Class == RcptLocal {
		v.Rule = "rcpt.local"
	}
	return out(v)
}

// CheckAuthRequired: the submission and smtps listeners accept mail only
// from authenticated users (RFC 6409).
func CheckAuthRequired(e *Engine, s *Session, from address.Addr) (Verdict, bool) {
	if (s.Listener == ListenerSubmission || s.Listener == ListenerSMTPS) && !s.Client.Authenticated {
		return Rejected("sender.auth_required", 530, "5.7.0", "authentication required: log in with AUTH before MAIL on this port"), true
	}
	return Verdict{}, false
}

// CheckSenderBinding: an authenticated user may send only as its own
// address or one of its aliases, so one account cannot forge another's.
func CheckSenderBinding(e *Engine, s *Session, from address.Addr) (Verdict, bool) {
	if !s.Client.Authenticated {
		return Verdict{}, false
	}
	if from.IsNull() {
		return Rejected("sender.binding", 553, "5.7.1", "authenticated users may not send with the null sender <>"), true
	}
	if !e.Dir.MaySendAs(s.AuthUser, from.Local+"@"+from.Domain) {
		return Rejected("sender.binding", 553, "5.7.1", "sender address <"+from.String()+"> is not owned by user "+s.AuthUser), true
	}
	return Verdict{}, false
}

// CheckForgedLocalSender: on the MX listener, a client that is neither
// authenticated nor trusted may not claim one of our own domains as the
// envelope sender: our users send through submission, so such mail is
// forged (seed 000).
func CheckForgedLocalSender(e *Engine, s *Session, from address.Addr) (Verdict, bool) {
	if !e.RejectForgedLocalSender || from.IsNull() || s.Client.Authenticated || s.Client.Trusted || s.Client.PopBeforeSMTP {
		return Verdict{}, false
	}
	if e.Domains().Local[from.Domain] {
		return Rejected("sender.forged_local", 550, "5.7.1",
			"sender <"+from.String()+"> is in a domain hosted here: our users must authenticate on the submission port"), true
	}
	return Verdict{}, false
}

// CheckRelay applies the relay rule (relay.go), records its verdict for
// the stage's outcome, and decides only when it refuses.
func CheckRelay(e *Engine, s *Session, r *Recipient) (Verdict, bool) {
	r.Relay = RelayRule(s.Client, e.Domains(), r.Addr)
	return r.Relay, !r.Relay.Accept
}

// CheckLocalRecipient refuses unknown local recipients at RCPT (law 3:
// never accept and bounce later) and records the receiving account of a
// known one (aliases resolved).
func CheckLocalRecipient(e *Engine, s *Session, r *Recipient) (Verdict, bool) {
	if r.Class != RcptLocal {
		return Verdict{}, false
	}
	account, ok := e.Dir.Resolve(r.Addr.Local + "@" + r.Addr.Domain)
	if !ok {
		return Rejected("rcpt.unknown", 550, "5.1.1", "<"+r.Addr.String()+">: no such user here"), true
	}
	r.Account = account
	return Verdict{}, false
}
