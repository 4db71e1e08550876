package audit

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"kanmon/internal/dnsresolve"
)

// Bounds on what the identity checks take from DNS answers: the answers
// come from the network (law 5).
const (
	maxPTRNames     = 5  // reverse names checked per address
	maxIdentityAddr = 10 // addresses of the host name checked
)

// dynamicTokens are words that large receivers' heuristics (and
// blocklists of "dynamic" space) read as an access network, not a mail
// server, when they appear as a part of a reverse name's label.
var dynamicTokens = map[string]bool{
	"dyn": true, "dynamic": true, "dhcp": true, "ppp": true, "pppoe": true,
	"pool": true, "dsl": true, "adsl": true, "vdsl": true, "xdsl": true,
	"cable": true, "client": true, "clients": true, "dialup": true,
	"dial": true, "cpe": true, "broadband": true, "dip": true,
}

// checkIdentity checks the server's own DNS identity: the reverse name
// (PTR) of each address the target resolves to, whether that name
// resolves back (FCrDNS) and whether it looks like an access network's
// generic name; then the domain's MTA-STS and TLS-RPT records and, with
// Options.DKIMSelector, the DKIM key record.
func (a *auditor) checkIdentity(ctx context.Context) {
	for _, ip := range a.addrs {
		if ctx.Err() != nil {
			return
		}
		a.checkReverse(ctx, ip)
	}
	a.checkMTASTS(ctx)
	a.checkTLSRPT(ctx)
	if a.opts.DKIMSelector != "" {
		a.checkDKIM(ctx, a.opts.DKIMSelector)
	}
}

// checkReverse reports a missing PTR, a PTR that does not resolve back,
// and a reverse name that looks dynamic, for one address.
func (a *auditor) checkReverse(ctx context.Context, ip netip.Addr) {
	if !publicAddr(ip) {
		// Receivers never see this address; the one the server sends
		// from (after NAT) is what they judge.
		a.note("reverse DNS of %s not checked: not a public address (audit the address the server sends from)", ip)
		return
	}
	r := a.opts.Resolver
	names, err := r.LookupAddr(ctx, ip)
	switch {
	case dnsresolve.IsNotFound(err) || err == nil && len(names) == 0:
		a.add(Finding{
			ID:       "dns.ptr-missing",
			Title:    "The server's address " + ip.String() + " has no reverse name (PTR)",
			Severity: High,
			Evidence: []string{"DNS: PTR " + ip.String() + ": no such record"},
			Fix:      "Ask whoever holds the address block (the hosting or access provider) to set a PTR record for " + ip.String() + " naming the server (e.g. mx." + a.opts.Domain + "), a name that resolves back to " + ip.String() + ". Large receivers refuse mail from addresses without one.",
		})
		return
	case err != nil:
		a.note("PTR lookup for %s failed: %v", ip, err)
		return
	}
	if len(names) > maxPTRNames {
		names = names[:maxPTRNames]
	}
	ev := []string{}
	for _, n := range names {
		ev = append(ev, "DNS: PTR "+ip.String()+": "+sanitize(n))
	}
	confirmed := ""
	for _, n := range names {
		back, err := r.LookupIP(ctx, n)
		switch {
		case err == nil:
			ev = append(ev, fmt.Sprintf("DNS: A/AAAA %s: %v", sanitize(n), back))
			if slices.Contains(back, ip) && confirmed == "" {
				confirmed = n
			}
		case dnsresolve.IsNotFound(err):
			ev = append(ev, "DNS: A/AAAA "+sanitize(n)+": no such record")
		default:
			a.note("forward lookup of %s (reverse name of %s) failed: %v", sanitize(n), ip, err)
			return
		}
	}
	if confirmed == "" {
		a.add(Finding{
			ID:       "dns.fcrdns-mismatch",
			Title:    "The reverse name of " + ip.String() + " does not resolve back to it (no forward-confirmed reverse DNS)",
			Severity: High,
			Evidence: ev,
			Fix:      "Make the PTR name's A/AAAA record contain " + ip.String() + " (or change the PTR to a name that does). Receivers treat a reverse name that does not resolve back like none.",
		})
		return
	}
	if why := genericName(confirmed, ip); why != "" {
		a.add(Finding{
			ID:       "dns.ptr-generic",
			Title:    "The reverse name " + sanitize(confirmed) + " of " + ip.String() + " looks like a dynamic or generic address (" + why + ")",
			Severity: Medium,
			Evidence: ev,
			Fix:      "Have the PTR set to the server's own name (mx." + a.opts.Domain + ", resolving back to " + ip.String() + "). Receivers and blocklists treat names with embedded addresses or words like dyn, dhcp, pool, dsl as end-user access lines and refuse or junk their mail.",
		})
	}
}

// publicAddr reports whether ip could be seen by a receiver on the
// Internet.
func publicAddr(ip netip.Addr) bool {
	return ip.IsValid() && ip.IsGlobalUnicast() && !ip.IsPrivate()
}

// genericName says why name looks like an access network's generic
// reverse name for ip (the address embedded in it, or a dynamic word in
// one of its labels), or "" when it does not.
func genericName(name string, ip netip.Addr) string {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if embedsAddr(name, ip) {
		return "it contains the address"
	}
	for _, label := range strings.Split(name, ".") {
		for _, tok := range strings.FieldsFunc(label, func(c rune) bool { return c < 'a' || c > 'z' }) {
			if dynamicTokens[tok] {
				return "label " + strconv.Quote(label) + " contains " + strconv.Quote(tok)
			}
		}
	}
	return ""
}

// embedsAddr reports whether an IPv4 address appears in name, as its four
// numbers in order or reversed ("192-0-2-10", "10.2.0.192") or as eight
// hex digits ("c000020a").
func embedsAddr(name string, ip netip.Addr) bool {
	if !ip.Is4() {
		return false
	}
	b := ip.As4()
	if strings.Contains(name, fmt.Sprintf("%02x%02x%02x%02x", b[0], b[1], b[2], b[3])) {
		return true
	}
	var nums []int
	for _, run := range strings.FieldsFunc(name, func(c rune) bool { return c < '0' || c > '9' }) {
		n, err := strconv.Atoi(run)
		if err != nil || len(run) > 3 {
			n = -1 // too long to be an octet; breaks a sequence
		}
		nums = append(nums, n)
	}
	fwd := []int{int(b[0]), int(b[1]), int(b[2]), int(b[3])}
	rev := []int{int(b[3]), int(b[2]), int(b[1]), int(b[0])}
	for i := 0; i+4 <= len(nums); i++ {
		if slices.Equal(nums[i:i+4], fwd) || slices.Equal(nums[i:i+4], rev) {
			return true
		}
	}
	return false
}

// lookupTagRecords returns the TXT records at name whose text starts with
// version (case-insensitive); ok is false when the lookup failed for a
// reason other than "no such record" (then a note says so).
func (a *auditor) lookupTagRecords(ctx context.Context, name, version string) (recs []string, ok bool) {
	txt, err := a.opts.Resolver.LookupTXT(ctx, name)
	if err != nil && !dnsresolve.IsNotFound(err) {
		a.note("TXT lookup for %s failed: %v", name, err)
		return nil, false
	}
	for _, t := range txt {
		if strings.HasPrefix(strings.ToLower(strings.TrimSpace(t)), strings.ToLower(version)) {
			recs = append(recs, t)
		}
	}
	return recs, true
}

// tags parses a "k=v; k=v" record into its tags (keys lower-cased, in
// order); a later duplicate is kept as a separate pair.
func tags(rec string) [][2]string {
	var out [][2]string
	for _, part := range strings.Split(rec, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		out = append(out, [2]string{strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)})
	}
	return out
}

func tag(tt [][2]string, k string) (string, bool) {
	for _, t := range tt {
		if t[0] == k {
			return t[1], true
		}
	}
	return "", false
}

// checkMTASTS judges the _mta-sts TXT record (RFC 8461 3.1). The policy
// file itself is not fetched: that needs HTTPS to mta-sts.DOMAIN.
func (a *auditor) checkMTASTS(ctx context.Context) {
	name := "_mta-sts." + a.opts.Domain
	recs, ok := a.lookupTagRecords(ctx, name, "v=STSv1")
	if !ok {
		return
	}
	switch len(recs) {
	case 0:
		a.add(Finding{
			ID:       "dns.mta-sts-missing",
			Title:    "No MTA-STS record at " + name + ": senders cannot insist on TLS to this domain",
			Severity: Low,
			Evidence: []string{"DNS: TXT " + name + ": no v=STSv1 record"},
			Fix:      "Publish a policy at https://mta-sts." + a.opts.Domain + "/.well-known/mta-sts.txt (mode: enforce, mx: names of the MX hosts) and \"" + name + ". IN TXT \\\"v=STSv1; id=20250101\\\"\" (change id whenever the policy changes).",
		})
		return
	case 1:
	default:
		a.add(Finding{
			ID:       "dns.mta-sts-multiple",
			Title:    "Several MTA-STS records at " + name + " (senders then ignore MTA-STS)",
			Severity: Medium,
			Evidence: prefixed("DNS: TXT "+name+": ", recs),
			Fix:      "Keep exactly one v=STSv1 record.",
		})
		return
	}
	tt := tags(recs[0])
	id, hasID := tag(tt, "id")
	if tt[0] != [2]string{"v", "STSv1"} || !hasID || !validSTSID(id) {
		a.add(Finding{
			ID:       "dns.mta-sts-invalid",
			Title:    "The MTA-STS record at " + name + " is malformed (senders ignore it)",
			Severity: Medium,
			Evidence: prefixed("DNS: TXT "+name+": ", recs),
			Fix:      "Write it as \"v=STSv1; id=ID\": v=STSv1 first, exactly that case, and an id of 1 to 32 letters and digits that changes with every policy change.",
		})
	}
}

// validSTSID: 1*32(ALPHA / DIGIT) (RFC 8461 3.1).
func validSTSID(id string) bool {
	if id == "" || len(id) > 32 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// checkTLSRPT judges the _smtp._tls TXT record (RFC 8460 3).
func (a *auditor) checkTLSRPT(ctx context.Context) {
	name := "_smtp._tls." + a.opts.Domain
	recs, ok := a.lookupTagRecords(ctx, name, "v=TLSRPTv1")
	if !ok {
		return
	}
	switch len(recs) {
	case 0:
		a.add(Finding{
			ID:       "dns.tlsrpt-missing",
			Title:    "No TLS-RPT record at " + name + ": nobody tells you when senders fail TLS to this domain",
			Severity: Low,
			Evidence: []string{"DNS: TXT " + name + ": no v=TLSRPTv1 record"},
			Fix:      "Publish \"" + name + ". IN TXT \\\"v=TLSRPTv1; rua=mailto:tlsrpt@" + a.opts.Domain + "\\\"\" to receive daily reports of failed TLS connections.",
		})
		return
	case 1:
	default:
		a.add(Finding{
			ID:       "dns.tlsrpt-multiple",
			Title:    "Several TLS-RPT records at " + name + " (senders then send no reports)",
			Severity: Low,
			Evidence: prefixed("DNS: TXT "+name+": ", recs),
			Fix:      "Keep exactly one v=TLSRPTv1 record.",
		})
		return
	}
	tt := tags(recs[0])
	rua, hasRUA := tag(tt, "rua")
	good := tt[0] == [2]string{"v", "TLSRPTv1"} && hasRUA && rua != ""
	for _, u := range strings.Split(rua, ",") {
		u = strings.ToLower(strings.TrimSpace(u))
		if !strings.HasPrefix(u, "mailto:") && !strings.HasPrefix(u, "https://") || len(u) <= len("mailto:") {
			good = false
		}
	}
	if !good {
		a.add(Finding{
			ID:       "dns.tlsrpt-invalid",
			Title:    "The TLS-RPT record at " + name + " is malformed (senders send no reports)",
			Severity: Low,
			Evidence: prefixed("DNS: TXT "+name+": ", recs),
			Fix:      "Write it as \"v=TLSRPTv1; rua=mailto:tlsrpt@" + a.opts.Domain + "\" (rua: one or more mailto: or https: addresses, comma-separated).",
		})
	}
}
