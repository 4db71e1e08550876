package config

import (
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/idna"
)

// Submission is the [submission] section: what our own users may put in
// the header of the mail they submit (internal/policy/headerfrom.go).
type Submission struct {
	// FromBinding is what happens to a message whose From: or Sender:
	// names an address its sender does not own: "reject" (553 5.7.1 at
	// the end of DATA, the default), "log" (logged, accepted) or "off".
	FromBinding string `toml:"from_binding"`
	// Delegate gives accounts every address of further domains.
	Delegate []Delegate `toml:"delegate"`
	// TrustedFrom gives trusted networks the domains they may use in
	// From:; a trusted network without an entry is not checked.
	TrustedFrom []TrustedFrom `toml:"trusted_from"`
}

// Delegate is one [[submission.delegate]] entry.
type Delegate struct {
	Account string   `toml:"account"`
	Domains []string `toml:"domains"`
}

// TrustedFrom is one [[submission.trusted_from]] entry.
type TrustedFrom struct {
	Network string   `toml:"network"`
	Domains []string `toml:"domains"`
}

// DefaultSubmission is the [submission] section's defaults: the binding
// enforced, nothing delegated, trusted networks unchecked.
func DefaultSubmission() Submission {
	return Submission{FromBinding: "reject", Delegate: []Delegate{}, TrustedFrom: []TrustedFrom{}}
}

func (c *Config) validateSubmission(raw []byte, e *Errors) {
	s := c.Submission
	switch s.FromBinding {
	case "reject", "log", "off":
	default:
		e.add(raw, "submission.from_binding", fmt.Sprintf("%q is not one of reject, log, off", s.FromBinding))
	}
	for i, d := range s.Delegate {
		line := arrayEntryLine(raw, "submission.delegate", i)
		if l, dom, ok := strings.Cut(d.Account, "@"); !ok || l == "" || strings.ContainsAny(l, " \t<>@\"") || !validHostname(dom) {
			e.List = append(e.List, FieldError{Key: "submission.delegate.account", Line: line, Msg: fmt.Sprintf("%q is not an address like user@example.org", d.Account)})
		}
		c.validateFromDomains(e, "submission.delegate.domains", line, d.Domains)
	}
	for i, t := range s.TrustedFrom {
		line := arrayEntryLine(raw, "submission.trusted_from", i)
		p, err := netip.ParsePrefix(t.Network)
		switch {
		case err != nil:
			e.List = append(e.List, FieldError{Key: "submission.trusted_from.network", Line: line, Msg: fmt.Sprintf("%q is not a network like 10.0.0.0/8", t.Network)})
		case !c.coveredByTrusted(p):
			e.List = append(e.List, FieldError{Key: "submission.trusted_from.network", Line: line, Msg: fmt.Sprintf("%s is not inside trusted_networks: only trusted clients can be given From: domains", t.Network)})
		}
		c.validateFromDomains(e, "submission.trusted_from.domains", line, t.Domains)
	}
}

func (c *Config) validateFromDomains(e *Errors, key string, line int, doms []string) {
	if len(doms) == 0 {
		e.List = append(e.List, FieldError{Key: key, Line: line, Msg: "must name at least one domain"})
	}
	for _, d := range doms {
		if _, err := idna.Lookup.ToASCII(strings.TrimSuffix(d, ".")); err != nil || !validHostname(asciiDomain(d)) {
			e.List = append(e.List, FieldError{Key: key, Line: line, Msg: fmt.Sprintf("%q is not a valid domain", d)})
		}
	}
}

// coveredByTrusted reports whether p lies inside one of trusted_networks
// (c.Trusted, parsed by then).
func (c *Config) coveredByTrusted(p netip.Prefix) bool {
	p = unmapPrefix(p)
	for _, t := range c.Trusted {
		if t.Bits() <= p.Bits() && t.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// unmapPrefix masks p and writes an IPv4-mapped network as IPv4.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	p = p.Masked()
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
	}
	return p
}

// asciiDomain is d lower-cased in its A-label form (d itself when it
// cannot be converted).
func asciiDomain(d string) string {
	d = strings.TrimSuffix(d, ".")
	if a, err := idna.Lookup.ToASCII(d); err == nil {
		d = a
	}
	return strings.ToLower(d)
}

// TrustedFromPrefix returns a trusted_from entry's network, masked, an
// IPv4 network as IPv4 (the entries are validated by then).
func (t TrustedFrom) TrustedFromPrefix() netip.Prefix {
	p, err := netip.ParsePrefix(t.Network)
	if err != nil {
		return netip.Prefix{}
	}
	return unmapPrefix(p)
}

// FromDomains returns domains in their canonical (A-label, lower-case)
// form, as the header binding compares them.
func FromDomains(doms []string) []string {
	out := make([]string, 0, len(doms))
	for _, d := range doms {
		out = append(out, asciiDomain(d))
	}
	return out
}

// arrayEntryLine finds the line of the n-th (from 0) [[table]] header in
// raw, or 0.
func arrayEntryLine(raw []byte, table string, n int) int {
	seen := 0
	for i, line := range strings.Split(string(raw), "\n") {
		t, _, _ := strings.Cut(line, "#")
		t = strings.TrimSpace(t)
		if strings.HasPrefix(t, "[[") && strings.HasSuffix(t, "]]") && strings.TrimSpace(t[2:len(t)-2]) == table {
			if seen == n {
				return i + 1
			}
			seen++
		}
	}
	return 0
}
