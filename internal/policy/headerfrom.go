package policy

import (
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/idna"

	"kanmon/internal/address"
)

// This file is the header binding: a user who may send only as itself by
// the envelope (CheckSenderBinding) may not put another address in the
// From: or Sender: header either, which is what mail programs show.

// Actions of the header binding (submission.from_binding).
const (
	BindingReject = "reject" // refuse the message at the end of DATA
	BindingLog    = "log"    // log what would be refused, accept
	BindingOff    = "off"    // no check
)

// RuleFromBinding names the header binding's decisions.
const RuleFromBinding = "data.from_binding"

// HeaderBinding is the configured input of the header binding.
type HeaderBinding struct {
	// Action is BindingReject, BindingLog or BindingOff; "" is reject.
	Action string
	// Delegates maps an account (lower-case) to the domains (canonical,
	// address.CanonicalDomain) whose every address it may use in From:.
	Delegates map[string][]string
	// TrustedFrom gives networks among the trusted networks the domains
	// they may use in From:; a trusted client in none is not checked.
	TrustedFrom []TrustedFrom
}

// TrustedFrom is one submission.trusted_from entry.
type TrustedFrom struct {
	Network netip.Prefix
	Domains []string // canonical
}

// Originators is what the DATA stage saw of a message's originator fields.
type Originators struct {
	From   []string // unfolded value of each From: field, in order
	Sender []string // the same for Sender:
	// Unread is set when the header section could not be read whole
	// (over its bound, or a field line too long): nothing can be vouched.
	Unread string
}

// HeaderFrom decides whether the session may submit a message with these
// originator fields. It returns applies=false when the binding does not
// concern the session (mail from outside, a trusted network without a
// trusted_from entry, a sendmail-socket user whose address is no account,
// the check turned off).
func (e *Engine) HeaderFrom(s *Session, ip netip.Addr, h Originators) (v Verdict, applies bool) {
	b := e.HeaderBinding
	if b.Action == BindingOff {
		return Verdict{}, false
	}
	owns, who, ok := e.bindingOwner(s, ip)
	if !ok {
		return Verdict{}, false
	}
	refuse := func(code int, enh, format string, a ...any) (Verdict, bool) {
		return Rejected(RuleFromBinding, code, enh, fmt.Sprintf(format, a...)), true
	}
	if h.Unread != "" {
		return Rejected("data.header_size", 552, "5.3.4", h.Unread+": the From: header of a submitted message must be checked"), true
	}
	switch {
	case len(h.From) == 0:
		return refuse(553, "5.7.1", "the message has no From: header: add one with your address %s", who)
	case len(h.From) > 1:
		return refuse(553, "5.7.1", "the message has %d From: headers: give exactly one, with your address", len(h.From))
	case len(h.Sender) > 1:
		return refuse(553, "5.7.1", "the message has %d Sender: headers: give at most one, with your address", len(h.Sender))
	}
	fields := []struct{ name, value string }{{"From", h.From[0]}}
	if len(h.Sender) == 1 {
		fields = append(fields, struct{ name, value string }{"Sender", h.Sender[0]})
	}
	for _, f := range fields {
		o, err := address.ParseOriginator(f.name, f.value)
		if err != nil {
			return refuse(553, "5.7.1", "header %v; send with your own address %s only", err, who)
		}
		if !owns(o.Addr) {
			return refuse(553, "5.7.1", "header %s: <%s> is not an address of %s: you may send only as yourself", f.name, o.Addr, who)
		}
	}
	return Verdict{Accept: true, Rule: RuleFromBinding, Code: 250, Enhanced: "2.6.0", Reason: "originator OK"}, true
}

// bindingOwner returns who the session sends as ("user A", "network N")
// and what that owner may use in From:, or ok=false when the binding does
// not apply to the session.
func (e *Engine) bindingOwner(s *Session, ip netip.Addr) (owns func(address.Addr) bool, who string, ok bool) {
	b := e.HeaderBinding
	switch {
	case s.Client.Authenticated && s.Listener == ListenerLocal:
		// The sendmail socket's address is bound only when it is an
		// account (or an alias of one): cron's root@host stays free.
		account, found := e.Dir.Resolve(s.AuthUser)
		if !found {
			return nil, "", false
		}
		return e.accountOwns(account), "user " + account, true
	case s.Client.Authenticated:
		account := strings.ToLower(s.AuthUser)
		return e.accountOwns(account), "user " + account, true
	case s.Client.Trusted:
		var doms []string
		var nets []string
		for _, t := range b.TrustedFrom {
			if ip.IsValid() && t.Network.Contains(ip.Unmap()) {
				doms = append(doms, t.Domains...)
				nets = append(nets, t.Network.String())
			}
		}
		if len(nets) == 0 {
			return nil, "", false
		}
		return func(a address.Addr) bool { return inDomains(a.Domain, doms) }, "trusted network " + strings.Join(nets, ", "), true
	}
	return nil, "", false
}

// accountOwns gives what an account may use in From:: its address, its
// aliases (the directory's MaySendAs, the envelope binding's own rule),
// and the domains delegated to it.
func (e *Engine) accountOwns(account string) func(address.Addr) bool {
	delegated := e.HeaderBinding.Delegates[account]
	return func(a address.Addr) bool {
		if inDomains(a.Domain, delegated) {
			return true
		}
		for _, d := range domainForms(a.Domain) {
			if e.Dir.MaySendAs(account, a.Local+"@"+d) {
				return true
			}
		}
		return false
	}
}

// domainForms is a canonical domain as the directory may hold it: its
// A-label form, and its U-label form when it differs.
func domainForms(d string) []string {
	forms := []string{d}
	if u, err := idna.Lookup.ToUnicode(d); err == nil && u != d {
		forms = append(forms, u)
	}
	return forms
}

func inDomains(d string, list []string) bool {
	for _, x := range list {
		if x == d {
			return true
		}
	}
	return false
}
