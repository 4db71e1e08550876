package policy

import (
	"net/netip"
	"slices"

	"kanmon/internal/address"
)

// This file is THE relay rule of kanmon (law 2 of the design): relay is
// granted by who the client is, never by what it says.

// Client is what the server has established about the SMTP client. Nothing
// here comes from what the client said: not HELO, not MAIL FROM, not the
// recipient's syntax.
type Client struct {
	Authenticated bool // SMTP AUTH succeeded in this session
	Trusted       bool // client address is in a configured trusted network
	PopBeforeSMTP bool // client address recently logged in over POP3 (when enabled)
}

// PopBefore answers whether an address recently logged in over POP3
// (internal/popbefore).
type PopBefore interface {
	Allowed(ip netip.Addr) bool
}

// Clients is everything a Client is computed from besides the session's
// own facts: the configured trusted networks and POP-before-SMTP. The
// zero value trusts nobody and has POP-before-SMTP off (law 7).
type Clients struct {
	// Trusted are the trusted_networks, already parsed and masked; an
	// IPv4 network is written as IPv4 (config turns ::ffff:a.b.c.d/n
	// into a.b.c.d/(n-96)).
	Trusted []netip.Prefix
	// PopBefore, when not nil, grants relay to addresses that logged in
	// over POP3 recently (pop3.pop_before_smtp).
	PopBefore PopBefore
	// PopBeforeOnMX extends POP-before-SMTP to the MX listener
	// (pop3.pop_before_smtp_on_mx); without it only submission, smtps
	// and the local socket honour it.
	PopBeforeOnMX bool
}

// ClientOf establishes what the relay rule may know about a client: its
// address ip as the socket gave it (invalid for the local socket), the
// listener role it came in on, and the account it authenticated as (""
// when none). Nothing the client said is an input.
func (cs Clients) ClientOf(ip netip.Addr, listener, authUser string) Client {
	ip = ip.Unmap()
	c := Client{Authenticated: authUser != ""}
	if ip.IsValid() {
		for _, p := range cs.Trusted {
			if p.Contains(ip) {
				c.Trusted = true
				break
			}
		}
		if cs.PopBefore != nil && (listener != ListenerMX || cs.PopBeforeOnMX) {
			c.PopBeforeSMTP = cs.PopBefore.Allowed(ip)
		}
	}
	return c
}

// Domains is the configured domain data. Keys are in the canonical form
// address.Addr.Domain holds (address.ParseDomain gives it): lower-case, no
// trailing dot, "[192.0.2.1]" or "[IPv6:2001:db8::1]" for address literals.
type Domains struct {
	Local map[string]bool // domains (and address literals like "[127.0.0.1]") we receive mail for; keys lower-case
	Relay map[string]bool // relay_domains: backup-MX partner domains we accept and forward
}

// RcptClass says where a recipient goes.
type RcptClass int

// Recipient classes, from most to least ours.
const (
	// RcptLocal is a recipient in one of our own domains.
	RcptLocal RcptClass = iota
	// RcptRelayDomain is a recipient in a relay_domains partner domain.
	RcptRelayDomain
	// RcptRemote is any other recipient: relaying it needs a privileged client.
	RcptRemote
)

// String names the class for logs.
func (c RcptClass) String() string {
	switch c {
	case RcptLocal:
		return "local"
	case RcptRelayDomain:
		return "relay_domain"
	case RcptRemote:
		return "remote"
	}
	return "unknown"
}

// Classify returns the class of the recipient's domain. The match is exact: a subdomain or a look-alike
// ("example.org.evil.com") of a local domain is remote, and an address
// literal is local only when listed in Local itself.
func (d Domains) Classify(a address.Addr) RcptClass {
	switch {
	case a.Domain == "":
		return RcptRemote
	case d.Local[a.Domain]:
		return RcptLocal
	case d.Relay[a.Domain]:
		return RcptRelayDomain
	}
	return RcptRemote
}

// RelayRule decides whether this client may send to this recipient. It is THE
// relay rule of kanmon: a newcomer finds it here.
//
//  1. A local part carrying a routing trick ('%', '!', or an '@' hidden in a
//     quoted local part) is refused for every client, authenticated or not:
//     kanmon never does percent or bang routing, and a downstream system that
//     did would turn a local recipient into an open relay. A quoted local part
//     without such characters ("john smith") is fine.
//  2. Recipients in our local domains and in relay_domains are accepted from
//     anyone: that is what receiving mail means.
//  3. Any other recipient, including every address literal not listed in
//     Local, is accepted only from an authenticated session, a trusted
//     network, or a POP-before-SMTP client.
//
// The sender address is deliberately NOT an input, nor is HELO: a forged
// local MAIL FROM cannot grant relay, because the rule cannot see it. Source
// routes have already been dropped by the parser, so the recipient's own
// domain is the one that counts.
func RelayRule(c Client, d Domains, rcpt address.Addr) Verdict {
	if rcpt.IsNull() {
		// Parse never yields this for a recipient; refuse a caller's bug
		// rather than classify an empty domain.
		return Rejected("relay.null_recipient", 501, "5.1.3", "the null address <> is not a valid recipient")
	}
	if hasRoutingTrick(rcpt) {
		return Rejected("relay.routing", 550, "5.7.1",
			"routing characters (%, !, @) in the local part are not accepted")
	}
	switch d.Classify(rcpt) {
	case RcptLocal:
		return Accepted("relay.local")
	case RcptRelayDomain:
		return Accepted("relay.relay_domain")
	}
	switch {
	case c.Authenticated:
		return Accepted("relay.authenticated")
	case c.Trusted:
		return Accepted("relay.trusted_network")
	case c.PopBeforeSMTP:
		return Accepted("relay.pop_before_smtp")
	}
	return Rejected("relay.denied", 554, "5.7.1",
		"relay access denied: authenticate on the submission port to send to other domains")
}

// hasRoutingTrick reports whether the local part carries a trick that routes
// mail elsewhere. "quoted" alone is not one.
func hasRoutingTrick(a address.Addr) bool {
	return slices.ContainsFunc(a.Tricks(), func(t string) bool {
		return t == address.TrickPercent || t == address.TrickBang || t == address.TrickAt
	})
}
