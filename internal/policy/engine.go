package policy

import (
	"sync/atomic"

	"kanmon/internal/address"
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

// RcptCheck is one check of the RCPT TO stage. It returns the verdict and
// whether it decided (false lets the next check run).
type RcptCheck func(e *Engine, s *Session, rcpt address.Addr) (Verdict, bool)

// Engine runs the checks of each SMTP stage in order; the first check
// that decides wins. Adding a check is one function and one line in a list.
type Engine struct {
	domains                 atomic.Pointer[Domains]
	Dir                     Directory
	RejectForgedLocalSender bool
	// Mailboxes answers the quota check; nil means no mailbox quotas.
	Mailboxes Mailboxes

	MailChecks []MailCheck
	RcptChecks []RcptCheck
}

// NewEngine returns an engine with kanmon's standard checks.
func NewEngine(d Domains, dir Directory, rejectForgedLocal bool) *Engine {
	e := &Engine{
		Dir: dir, RejectForgedLocalSender: rejectForgedLocal,
		MailChecks: []MailCheck{CheckAuthRequired, CheckSenderBinding, CheckForgedLocalSender},
		RcptChecks: []RcptCheck{CheckRelay, CheckLocalRecipient, CheckMailboxQuota},
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

// Rcpt runs the RCPT TO checks. On acceptance of a local recipient the
// verdict's Rule is "rcpt.local" and account is the receiving account.
func (e *Engine) Rcpt(s *Session, rcpt address.Addr) (Verdict, string) {
	for _, c := range e.RcptChecks {
		if v, decided := c(e, s, rcpt); decided {
			return v, ""
		}
	}
	if e.Domains().Classify(rcpt) == RcptLocal {
		account, _ := e.Dir.Resolve(rcpt.Local + "@" + rcpt.Domain)
		return Verdict{Accept: true, Rule: "rcpt.local", Code: 250, Enhanced: "2.1.5", Reason: "recipient OK"}, account
	}
	v := RelayRule(s.Client, e.Domains(), rcpt)
	v.Code, v.Enhanced, v.Reason = 250, "2.1.5", "recipient OK"
	return v, ""
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

// CheckRelay applies the relay rule (relay.go) and decides only when it
// refuses.
func CheckRelay(e *Engine, s *Session, rcpt address.Addr) (Verdict, bool) {
	v := RelayRule(s.Client, e.Domains(), rcpt)
	return v, !v.Accept
}

// CheckLocalRecipient refuses unknown local recipients at RCPT (law 3:
// never accept and bounce later).
func CheckLocalRecipient(e *Engine, s *Session, rcpt address.Addr) (Verdict, bool) {
	if e.Domains().Classify(rcpt) != RcptLocal {
		return Verdict{}, false
	}
	if _, ok := e.Dir.Resolve(rcpt.Local + "@" + rcpt.Domain); !ok {
		return Rejected("rcpt.unknown", 550, "5.1.1", "<"+rcpt.String()+">: no such user here"), true
	}
	return Verdict{}, false
}
