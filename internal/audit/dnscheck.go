package audit

import (
	"context"
	"fmt"
	"strings"

	"kanmon/internal/dnsresolve"
)

// checkDNS checks the domain's MX, SPF and DMARC records, looks the
// server's address up in the configured DNSBLs and checks the server's own
// identity (identity.go), all through the resolver.
func (a *auditor) checkDNS(ctx context.Context) {
	if a.opts.SkipDNS {
		return
	}
	r, d := a.opts.Resolver, a.opts.Domain

	mx, err := r.LookupMX(ctx, d)
	switch {
	case dnsresolve.IsNotFound(err):
		a.add(Finding{
			ID:       "dns.mx-missing",
			Title:    "No MX record for " + d,
			Severity: Medium,
			Evidence: []string{"DNS: MX " + d + ": no such record"},
			Fix:      "Publish an MX record naming the server (\"" + d + ". IN MX 10 mx." + d + ".\"); without it senders fall back to the domain's address record, or give up.",
		})
	case err != nil:
		a.note("MX lookup for %s failed: %v", d, err)
	case dnsresolve.IsNullMX(mx):
		a.add(Finding{
			ID:       "dns.null-mx",
			Title:    "The domain publishes a null MX: it declares it receives no mail",
			Severity: Info,
			Evidence: []string{"DNS: MX " + d + ": 0 ."},
			Fix:      "Intended for domains that never receive mail; remove it if " + d + " should receive mail.",
		})
	}

	txt, err := r.LookupTXT(ctx, d)
	var spf []string
	if err == nil {
		for _, t := range txt {
			if l := strings.ToLower(strings.TrimSpace(t)); l == "v=spf1" || strings.HasPrefix(l, "v=spf1 ") {
				spf = append(spf, t)
			}
		}
	} else if !dnsresolve.IsNotFound(err) {
		a.note("TXT lookup for %s failed: %v", d, err)
	}
	if err == nil || dnsresolve.IsNotFound(err) {
		a.checkSPF(d, spf)
	}

	dmarcName := "_dmarc." + d
	txt, err = r.LookupTXT(ctx, dmarcName)
	var dmarc []string
	if err == nil {
		for _, t := range txt {
			if strings.HasPrefix(strings.ToLower(strings.TrimSpace(t)), "v=dmarc1") {
				dmarc = append(dmarc, t)
			}
		}
	} else if !dnsresolve.IsNotFound(err) {
		a.note("TXT lookup for %s failed: %v", dmarcName, err)
	}
	if err == nil || dnsresolve.IsNotFound(err) {
		a.checkDMARC(dmarcName, dmarc)
	}

	for _, zone := range a.opts.DNSBLs {
		listed, answers, reason, err := dnsresolve.LookupDNSBL(ctx, r, a.ip, zone)
		if err != nil {
			a.note("DNSBL %s: %v", zone, err)
			continue
		}
		if !listed {
			continue
		}
		ev := []string{fmt.Sprintf("DNS: A %s: %v", dnsresolve.DNSBLName(a.ip, zone), answers)}
		if reason != "" {
			ev = append(ev, "DNS: TXT "+dnsresolve.DNSBLName(a.ip, zone)+": "+sanitize(reason))
		}
		a.add(Finding{
			ID:       "dnsbl.listed." + zone,
			Title:    "The server's address " + a.ip.String() + " is listed in " + zone,
			Severity: High,
			Evidence: ev,
			Fix:      "Find out why (an open relay, a compromised account, a forwarding loop) and stop it first, then request delisting from the list's operator.",
		})
	}
	a.checkIdentity(ctx)
}

// checkSPF judges the domain's SPF records.
func (a *auditor) checkSPF(d string, spf []string) {
	ev := []string{}
	for _, s := range spf {
		ev = append(ev, "DNS: TXT "+d+": "+sanitize(s))
	}
	switch len(spf) {
	case 0:
		a.add(Finding{
			ID:       "dns.spf-missing",
			Title:    "No SPF record for " + d,
			Severity: Medium,
			Evidence: []string{"DNS: TXT " + d + ": no v=spf1 record"},
			Fix:      "Publish SPF naming the hosts that send for the domain, ending in -all (\"v=spf1 mx -all\"), so receivers can reject forgeries of your domain.",
		})
		return
	case 1:
	default:
		a.add(Finding{
			ID:       "dns.spf-multiple",
			Title:    "Several SPF records for " + d + " (a permanent error: SPF is ignored)",
			Severity: Medium,
			Evidence: ev,
			Fix:      "Merge them into one v=spf1 record.",
		})
		return
	}
	for _, term := range strings.Fields(strings.ToLower(spf[0]))[1:] {
		switch term {
		case "all", "+all":
			a.add(Finding{
				ID:       "dns.spf-pass-all",
				Title:    "SPF for " + d + " ends in " + term + ": every host on the Internet may send as the domain",
				Severity: High,
				Evidence: ev,
				Fix:      "End the record in -all (or ~all while testing) after listing the real senders.",
			})
		case "?all":
			a.add(Finding{
				ID:       "dns.spf-neutral",
				Title:    "SPF for " + d + " ends in ?all: forgeries get no verdict",
				Severity: Low,
				Evidence: ev,
				Fix:      "End the record in -all (or ~all) once the senders are listed.",
			})
		}
	}
}

// checkDMARC judges the domain's DMARC record.
func (a *auditor) checkDMARC(name string, dmarc []string) {
	switch len(dmarc) {
	case 0:
		a.add(Finding{
			ID:       "dns.dmarc-missing",
			Title:    "No DMARC record at " + name,
			Severity: Medium,
			Evidence: []string{"DNS: TXT " + name + ": no v=DMARC1 record"},
			Fix:      "Publish \"v=DMARC1; p=quarantine; rua=mailto:dmarc@...\" (p=reject once reports are clean) so receivers act on forgeries of your domain and tell you about them.",
		})
		return
	case 1:
	default:
		a.add(Finding{
			ID:       "dns.dmarc-multiple",
			Title:    "Several DMARC records at " + name + " (DMARC is ignored)",
			Severity: Medium,
			Evidence: prefixed("DNS: TXT "+name+": ", dmarc),
			Fix:      "Keep exactly one v=DMARC1 record.",
		})
		return
	}
	for _, tag := range strings.Split(dmarc[0], ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(tag), "=")
		if strings.EqualFold(strings.TrimSpace(k), "p") && strings.EqualFold(strings.TrimSpace(v), "none") {
			a.add(Finding{
				ID:       "dns.dmarc-none",
				Title:    "DMARC policy at " + name + " is p=none: forgeries are reported but not stopped",
				Severity: Low,
				Evidence: prefixed("DNS: TXT "+name+": ", dmarc),
				Fix:      "Move to p=quarantine, then p=reject, once the aggregate reports show only legitimate senders.",
			})
		}
	}
}
