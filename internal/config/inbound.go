package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Actions a check of incoming mail may take (inbound.*): refuse with its
// permanent reply, refuse temporarily, only log what it found, or not run.
const (
	ActionReject   = "reject"
	ActionTempfail = "tempfail"
	ActionLog      = "log"
	ActionOff      = "off"
)

// DMARCEnforce applies the sender domain's DMARC policy (inbound.dmarc).
const DMARCEnforce = "enforce"

// DNSBLZone is one DNS blocklist of inbound.dnsbl.
type DNSBLZone struct {
	// Zone is the list's DNS zone, e.g. "bl.example.org".
	Zone string `toml:"zone"`
	// Weight is added to the client's score when it is listed.
	Weight float64 `toml:"weight"`
	// Codes are the answers (127.0.0.x) that count as listed; empty:
	// any answer in 127.0.0.0/8.
	Codes []string `toml:"codes"`
	// URL, when set, is put in the refusal so the sender can look the
	// address up, e.g. "https://bl.example.org/lookup?ip=".
	URL string `toml:"url"`
}

// Inbound configures the checks of mail arriving on the MX listener
// (connection and MAIL FROM stages; internal/inbound). Submission,
// SMTPS, trusted networks and the sendmail socket are exempt. The DATA
// stage's checks (the header From:, DKIM and DMARC: internal/msgauth)
// are configured here too.
type Inbound struct {
	// GreetDelay is the pause before the greeting on the MX listener; a
	// client that talks first is an early talker. 0 turns it off.
	GreetDelay Duration `toml:"greet_delay"`
	// EarlyTalker is the action for a client that talks before the
	// greeting.
	EarlyTalker string `toml:"early_talker"`
	// GreetRemember is how long a client that waited is greeted at once.
	GreetRemember Duration `toml:"greet_remember"`
	// Allow and Deny are access lists: an address ("192.0.2.1"), a
	// network ("192.0.2.0/24"), a host name ("mx.example.com") or a
	// domain pattern (".example.com" or "*.example.com": names under it).
	Allow []string `toml:"allow"`
	Deny  []string `toml:"deny"`
	// DynamicClient is the action for a generic or dynamic reverse name.
	DynamicClient string `toml:"dynamic_client"`
	// DynamicLabels extend the built-in list of labels that mark a
	// reverse name as dynamic (dyn, dhcp, ppp, pool, dsl, cable, ...).
	DynamicLabels []string `toml:"dynamic_labels"`
	// PolicyBlockZones are PBL-style zones listing addresses that should
	// not send mail directly; PolicyBlock is the action when listed.
	PolicyBlockZones []string `toml:"policy_block_zones"`
	PolicyBlock      string   `toml:"policy_block"`
	// MissingPTR is the action for a client without a reverse name.
	MissingPTR string `toml:"missing_ptr"`
	// FCrDNSMismatch is the action for a reverse name that does not
	// resolve back to the client's address.
	FCrDNSMismatch string `toml:"fcrdns_mismatch"`
	// DNSBL are the blocklists; a client whose listed weights add up to
	// DNSBLThreshold gets DNSBLListed.
	DNSBL          []DNSBLZone `toml:"dnsbl"`
	DNSBLThreshold float64     `toml:"dnsbl_threshold"`
	DNSBLListed    string      `toml:"dnsbl_listed"`
	// DNSBLTimeout bounds each blocklist lookup; a list that does not
	// answer in time counts as not listing the client.
	DNSBLTimeout Duration `toml:"dnsbl_timeout"`
	// DNSBLCache is the longest a blocklist answer is kept: each answer
	// is kept for its TTL (a "not listed" one for the zone's negative
	// caching time), at least a minute and at most this; 0 turns the
	// cache off.
	DNSBLCache Duration `toml:"dnsbl_cache"`
	// SenderDomain is the action for a MAIL FROM domain that does not
	// exist (NXDOMAIN) or publishes a null MX.
	SenderDomain string `toml:"sender_domain"`
	// SPFFail is the action for an SPF "fail"; SPFTempError for an SPF
	// "temperror" (never a permanent refusal).
	SPFFail      string `toml:"spf_fail"`
	SPFTempError string `toml:"spf_temperror"`
	// Greylisting is greylist and its keys (ratelimit.go).
	Greylisting
	// DMARC is what the DATA stage does with a DMARC failure (RFC 7489):
	// "enforce" (the sender domain's policy: reject, quarantine into
	// the recipient's Junk folder, or none), "log" (recorded only) or
	// "off" (no DKIM verification, no DMARC).
	DMARC string `toml:"dmarc"`
	// FromHeader is the action for a message whose header From: does not
	// hold exactly one valid address.
	FromHeader string `toml:"from_header"`
	// AuthservID names us in the Authentication-Results header we add
	// (RFC 8601); empty: the hostname.
	AuthservID string `toml:"authserv_id"`

	// AllowParsed and DenyParsed are Allow and Deny parsed.
	AllowParsed AccessList `toml:"-"`
	DenyParsed  AccessList `toml:"-"`
}

// AccessList is a parsed inbound.allow or inbound.deny.
type AccessList struct {
	Prefixes []netip.Prefix
	// Names are exact host names; Suffixes are domain patterns as
	// ".example.com" (matching names under example.com). Lower case,
	// no trailing dot.
	Names    []string
	Suffixes []string
}

// Empty reports whether the list has no entry.
func (a AccessList) Empty() bool {
	return len(a.Prefixes) == 0 && len(a.Names) == 0 && len(a.Suffixes) == 0
}

// NeedsName reports whether matching needs the client's reverse name.
func (a AccessList) NeedsName() bool { return len(a.Names) > 0 || len(a.Suffixes) > 0 }

// DefaultInbound returns the production defaults of [inbound].
func DefaultInbound() Inbound {
	return Inbound{
		GreetDelay: Duration{2 * time.Second}, EarlyTalker: ActionReject,
		GreetRemember: Duration{24 * time.Hour},
		Allow:         []string{}, Deny: []string{},
		DynamicClient: ActionReject, DynamicLabels: []string{},
		PolicyBlockZones: []string{}, PolicyBlock: ActionReject,
		MissingPTR: ActionTempfail, FCrDNSMismatch: ActionLog,
		DNSBL: []DNSBLZone{}, DNSBLThreshold: 1, DNSBLListed: ActionReject,
		DNSBLTimeout: Duration{3 * time.Second}, DNSBLCache: Duration{time.Hour},
		SenderDomain: ActionReject, SPFFail: ActionReject, SPFTempError: ActionTempfail,
		Greylisting: DefaultGreylisting(),
		DMARC:       DMARCEnforce, FromHeader: ActionReject,
	}
}

// DNSChecksOff turns off every inbound check that asks DNS and the greet
// delay, leaving the access lists: for the demo mode, which asks nothing
// outside the machine.
func (in *Inbound) DNSChecksOff() {
	in.GreetDelay = Duration{}
	in.DynamicClient, in.PolicyBlock, in.MissingPTR, in.FCrDNSMismatch = ActionOff, ActionOff, ActionOff, ActionOff
	in.DNSBLListed, in.SenderDomain, in.SPFFail, in.SPFTempError = ActionOff, ActionOff, ActionOff, ActionOff
	in.DMARC = ActionOff
}

func (c *Config) validateInbound(raw []byte, e *Errors) {
	in := &c.Inbound
	all := []string{ActionReject, ActionTempfail, ActionLog, ActionOff}
	for _, a := range []struct {
		key, v  string
		allowed []string
	}{
		{"inbound.early_talker", in.EarlyTalker, all},
		{"inbound.dynamic_client", in.DynamicClient, all},
		{"inbound.policy_block", in.PolicyBlock, all},
		{"inbound.missing_ptr", in.MissingPTR, all},
		{"inbound.fcrdns_mismatch", in.FCrDNSMismatch, all},
		{"inbound.dnsbl_listed", in.DNSBLListed, all},
		{"inbound.sender_domain", in.SenderDomain, all},
		{"inbound.spf_fail", in.SPFFail, all},
		// Our own DNS trouble never justifies a permanent refusal.
		{"inbound.spf_temperror", in.SPFTempError, all[1:]},
		{"inbound.from_header", in.FromHeader, all},
		{"inbound.dmarc", in.DMARC, []string{DMARCEnforce, ActionLog, ActionOff}},
	} {
		if !slices.Contains(a.allowed, a.v) {
			e.add(raw, a.key, fmt.Sprintf("unknown action %q (one of: %s)", a.v, strings.Join(a.allowed, ", ")))
		}
	}
	for _, d := range []struct {
		key       string
		d, lo, hi time.Duration
	}{
		{"inbound.greet_delay", in.GreetDelay.Duration, 0, 30 * time.Second},
		{"inbound.greet_remember", in.GreetRemember.Duration, 0, 30 * 24 * time.Hour},
		{"inbound.dnsbl_timeout", in.DNSBLTimeout.Duration, 100 * time.Millisecond, time.Minute},
		{"inbound.dnsbl_cache", in.DNSBLCache.Duration, 0, 24 * time.Hour},
	} {
		if d.d < d.lo || d.d > d.hi {
			e.add(raw, d.key, fmt.Sprintf("must be between %s and %s", d.lo, d.hi))
		}
	}
	for i, z := range in.PolicyBlockZones {
		if !validZone(z) {
			e.add(raw, "inbound.policy_block_zones", fmt.Sprintf("entry %d: %q is not a DNS zone", i+1, z))
		}
	}
	for i, z := range in.DNSBL {
		if !validZone(z.Zone) {
			e.add(raw, "inbound.dnsbl", fmt.Sprintf("entry %d: zone %q is not a DNS zone", i+1, z.Zone))
		}
		if z.Weight <= 0 {
			e.add(raw, "inbound.dnsbl", fmt.Sprintf("entry %d (%s): weight must be above 0", i+1, z.Zone))
		}
		for _, code := range z.Codes {
			if a, err := netip.ParseAddr(code); err != nil || !a.Is4() || !netip.MustParsePrefix("127.0.0.0/8").Contains(a) {
				e.add(raw, "inbound.dnsbl", fmt.Sprintf("entry %d (%s): code %q is not an address in 127.0.0.0/8", i+1, z.Zone, code))
			}
		}
	}
	if id := in.AuthservID; id != "" && !validHostname(strings.TrimSuffix(id, ".")) {
		e.add(raw, "inbound.authserv_id", fmt.Sprintf("%q is not a host name (empty: the hostname)", id))
	}
	if in.DNSBLThreshold <= 0 {
		e.add(raw, "inbound.dnsbl_threshold", "must be above 0")
	}
	for _, l := range in.DynamicLabels {
		if l == "" || strings.ContainsAny(l, ". ") {
			e.add(raw, "inbound.dynamic_labels", fmt.Sprintf("%q is not a single DNS label", l))
		}
	}
	in.AllowParsed = parseAccess(raw, "inbound.allow", in.Allow, e)
	in.DenyParsed = parseAccess(raw, "inbound.deny", in.Deny, e)
}

// validZone accepts a DNS name with at least two labels.
func validZone(z string) bool {
	z = strings.TrimSuffix(z, ".")
	return z != "" && strings.Contains(z, ".") && validHostname(z)
}

// parseAccess parses access list entries: address, network, host name or
// domain pattern (".example.com", "*.example.com").
func parseAccess(raw []byte, key string, entries []string, e *Errors) AccessList {
	var a AccessList
	for _, s := range entries {
		t := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), "."))
		if ip, err := netip.ParseAddr(t); err == nil {
			ip = ip.Unmap()
			a.Prefixes = append(a.Prefixes, netip.PrefixFrom(ip, ip.BitLen()))
			continue
		}
		if p, err := netip.ParsePrefix(t); err == nil {
			a.Prefixes = append(a.Prefixes, p.Masked())
			continue
		}
		suffix := strings.TrimPrefix(t, "*")
		if strings.HasPrefix(suffix, ".") && validHostname(suffix[1:]) {
			a.Suffixes = append(a.Suffixes, suffix)
			continue
		}
		if validHostname(t) {
			a.Names = append(a.Names, t)
			continue
		}
		e.add(raw, key, fmt.Sprintf("%q is not an address, network, host name or domain pattern (.example.com)", s))
	}
	return a
}
