package batv

import (
	"strings"
	"sync/atomic"
	"time"

	"kanmon/internal/address"
)

// Mode is a domain's BATV switch.
type Mode string

// Modes: enforce refuses bounces without a valid tag, log accepts them
// and logs what it would have refused, off neither tags nor checks.
// Outgoing mail is tagged in enforce and log modes.
const (
	ModeEnforce Mode = "enforce"
	ModeLog     Mode = "log"
	ModeOff     Mode = "off"
)

// Actions of a Result.
const (
	ActionAccept = "accept"
	ActionReject = "reject"
	ActionLog    = "log" // would refuse; accepted (mode log, or the grace period)
)

// Guard tags our outgoing senders and checks the recipients of bounces.
// It is safe for concurrent use; SetDomains replaces the domains (on
// reload) atomically.
type Guard struct {
	keys    *Keyring
	domains atomic.Pointer[map[string]domain]
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// domain is one local domain's mode and record.
type domain struct {
	mode  Mode
	state DomainState
}

// NewGuard returns a guard over keys; it knows no domain until SetDomains.
func NewGuard(keys *Keyring) *Guard {
	g := &Guard{keys: keys}
	empty := map[string]domain{}
	g.domains.Store(&empty)
	return g
}

// SetDomains sets the local domains' modes and records (from Sync).
func (g *Guard) SetDomains(modes map[string]Mode, states map[string]DomainState) {
	m := make(map[string]domain, len(modes))
	for d, mode := range modes {
		m[strings.ToLower(d)] = domain{mode: mode, state: states[d]}
	}
	g.domains.Store(&m)
}

func (g *Guard) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}

// Mode is a local domain's mode (off for any other domain).
func (g *Guard) Mode(d string) Mode {
	if dm, ok := (*g.domains.Load())[strings.ToLower(d)]; ok {
		return dm.mode
	}
	return ModeOff
}

// Sender returns the envelope sender to send from to other servers:
// from tagged when it is an address of a local domain whose outgoing
// mail is tagged, else from unchanged (the null sender, other domains,
// an address already tagged).
func (g *Guard) Sender(from string) string {
	at := strings.LastIndexByte(from, '@')
	if at <= 0 || HasTag(from[:at]) {
		return from
	}
	local, dom := from[:at], from[at+1:]
	dm, ok := (*g.domains.Load())[strings.ToLower(dom)]
	if !ok || !dm.state.Tagging || dm.mode == ModeOff {
		return from
	}
	if strings.HasPrefix(local, `"`) {
		// A quoted local part cannot carry a tag inside its quotes
		// without changing what it means; it goes untagged.
		return from
	}
	now := g.now()
	k := g.keys.Active(now)
	return Make(k.Secret, k.Num, now, local, dom) + "@" + dom
}

// Result is the check of one local recipient.
type Result struct {
	// Addr is the recipient as delivered: its tag (if it had one that
	// parses) removed, so the directory and the user see the plain
	// address.
	Addr address.Addr
	// Tagged is set when the recipient had a tag that parses (Addr
	// differs from the recipient given).
	Tagged bool
	Status Status
	// Key is the tag's key number (-1 without a tag that parses).
	Key    int
	Mode   Mode
	Action string
	// Grace is set when an untagged bounce was accepted because the
	// domain's grace period runs (GraceUntil).
	Grace      bool
	GraceUntil time.Time
}

// Check judges a recipient in a local domain: nullSender says whether
// the transaction's sender is <>. Only a bounce needs a valid tag; any
// other mail to a tagged address (a reply to a bounce address) has the
// tag removed and goes on as mail to the plain address.
func (g *Guard) Check(nullSender bool, rcpt address.Addr) Result {
	now := g.now()
	dm := (*g.domains.Load())[strings.ToLower(rcpt.Domain)]
	r := Result{Addr: rcpt, Status: Missing, Key: -1, Mode: dm.mode, Action: ActionAccept}
	if r.Mode == "" {
		r.Mode = ModeOff
	}
	if HasTag(rcpt.Local) {
		t, ok := Parse(rcpt.Local)
		if !ok {
			r.Status = Malformed
		} else {
			r.Addr.Local, r.Tagged, r.Key = t.Local, true, t.Key
			r.Status = Check(t, g.keys.Secret(t.Key, now), rcpt.Domain, now)
		}
	}
	if !nullSender || r.Status == Valid {
		return r
	}
	switch r.Mode {
	case ModeOff:
	case ModeLog:
		r.Action = ActionLog
	default:
		r.Action = ActionReject
		if r.Status == Missing && now.Before(dm.state.GraceUntil) {
			// Mail sent before tagging began may still bounce.
			r.Action, r.Grace, r.GraceUntil = ActionLog, true, dm.state.GraceUntil
		}
	}
	return r
}

// Reason is the reply text for a refused (or, in mode log, would-be
// refused) bounce: what is wrong with the tag, in words a legitimate
// sender can act on.
func (r Result) Reason(rcpt string) string {
	why := map[Status]string{
		Missing:      "carries no bounce address tag",
		Malformed:    "has a broken bounce address tag",
		UnknownKey:   "has a bounce address tag with an unknown or retired key",
		Expired:      "has an expired bounce address tag",
		BadSignature: "has a bounce address tag that is not valid for it",
	}[r.Status]
	return "<" + rcpt + "> " + why + " (BATV): this bounce answers mail that was not sent from here"
}
