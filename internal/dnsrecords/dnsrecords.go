// Package dnsrecords knows the DNS records a kanmon domain should publish
// (MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT), writes them as zone-file
// lines, and compares them with what the DNS answers.
//
// SECURITY: live answers are untrusted text; they are only compared and
// printed (quoted), never acted on. Lookups go through the one resolver
// (internal/dnsresolve), bounded by its timeout.
package dnsrecords

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"kanmon/internal/dkim"
	"kanmon/internal/dnsresolve"
)

// Record is one record kanmon expects.
type Record struct {
	// Kind names the record for people: MX, SPF, DKIM, DMARC, MTA-STS,
	// TLS-RPT.
	Kind string
	// Name is the owner name without the final dot.
	Name string
	// Type is "MX" or "TXT".
	Type string
	// Value is the MX host (without the final dot) or the TXT text.
	Value string
	// Note is said in a comment above the record.
	Note string
	// prefix recognises a live TXT record of the same kind ("v=spf1").
	prefix string
}

// Options are the choices a domain's records carry.
type Options struct {
	// Hostname is the MX host (the config's hostname).
	Hostname string
	// ReportTo receives DMARC aggregate and TLS-RPT reports (default
	// postmaster@DOMAIN).
	ReportTo string
	// MTASTSMode is the MTA-STS policy mode: "testing" (default) or
	// "enforce" (only with a certificate other servers trust).
	MTASTSMode string
}

// Expected returns every record domain should publish, the DKIM keys'
// included (active and pending, so a new key is published before it
// signs).
func Expected(domain string, keys []*dkim.Key, o Options) ([]Record, error) {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	if o.ReportTo == "" {
		o.ReportTo = "postmaster@" + domain
	}
	if o.MTASTSMode == "" {
		o.MTASTSMode = "testing"
	}
	mx := strings.TrimSuffix(strings.ToLower(o.Hostname), ".")
	recs := []Record{
		{Kind: "MX", Name: domain, Type: "MX", Value: mx, Note: "mail for " + domain + " goes to this server"},
		{Kind: "SPF", Name: domain, Type: "TXT", Value: "v=spf1 mx -all", prefix: "v=spf1",
			Note: "only the domain's MX hosts send its mail; everything else fails"},
	}
	for _, k := range keys {
		v, err := k.Record()
		if err != nil {
			return nil, fmt.Errorf("dnsrecords: %s: %w", domain, err)
		}
		note := "DKIM " + k.Algo + " key, signing"
		if k.State == dkim.StatePending {
			note = "DKIM " + k.Algo + " key, pending: publish, then kanmon dkim activate " + domain + " " + k.Selector
		}
		recs = append(recs, Record{Kind: "DKIM", Name: k.Name(), Type: "TXT", Value: v, prefix: "v=DKIM1", Note: note})
	}
	policy := MTASTSPolicy(mx, o.MTASTSMode)
	sum := sha256.Sum256([]byte(policy))
	recs = append(recs,
		Record{Kind: "DMARC", Name: "_dmarc." + domain, Type: "TXT", Value: "v=DMARC1; p=reject; rua=mailto:" + o.ReportTo, prefix: "v=DMARC1",
			Note: "receivers refuse mail that fails both SPF and DKIM for " + domain + ", and report to " + o.ReportTo},
		Record{Kind: "MTA-STS", Name: "_mta-sts." + domain, Type: "TXT", Value: "v=STSv1; id=" + hex.EncodeToString(sum[:6]), prefix: "v=STSv1",
			Note: "serve this policy at https://mta-sts." + domain + "/.well-known/mta-sts.txt:\n" + policy},
		Record{Kind: "TLS-RPT", Name: "_smtp._tls." + domain, Type: "TXT", Value: "v=TLSRPTv1; rua=mailto:" + o.ReportTo, prefix: "v=TLSRPTv1",
			Note: "senders report TLS failures reaching " + domain},
	)
	return recs, nil
}

// MTASTSPolicy is the policy file (RFC 8461) for one MX host.
func MTASTSPolicy(mx, mode string) string {
	return "version: STSv1\nmode: " + mode + "\nmx: " + mx + "\nmax_age: 604800\n"
}

// ZoneLine renders r as one zone-file line (TXT text split into quoted
// strings of at most 255 octets).
func (r Record) ZoneLine() string {
	if r.Type == "MX" {
		return r.Name + ".\t3600\tIN\tMX\t10 " + r.Value + "."
	}
	return r.Name + ".\t3600\tIN\tTXT\t" + quoteTXT(r.Value)
}

func quoteTXT(v string) string {
	var parts []string
	for len(v) > 255 {
		parts = append(parts, strconv.Quote(v[:255]))
		v = v[255:]
	}
	parts = append(parts, strconv.Quote(v))
	return strings.Join(parts, " ")
}

// Zone renders the records as a commented zone-file fragment.
func Zone(recs []Record) string {
	var b strings.Builder
	for _, r := range recs {
		for _, l := range strings.Split(strings.TrimRight(r.Note, "\n"), "\n") {
			b.WriteString("; " + l + "\n")
		}
		b.WriteString(r.ZoneLine() + "\n")
	}
	return b.String()
}

// Check results.
const (
	Present   = "present"
	Missing   = "missing"
	Different = "different"
	Failed    = "error" // the lookup failed (timeout, SERVFAIL): unknown
)

// Status is the live state of one expected record.
type Status struct {
	Record
	Result string
	// Live holds the live values of the same kind (MX hosts, or TXT
	// records with the same version tag).
	Live []string
	Err  error
}

// Check looks every record up through r.
func Check(ctx context.Context, r dnsresolve.Resolver, recs []Record) []Status {
	out := make([]Status, 0, len(recs))
	for _, rec := range recs {
		st := Status{Record: rec}
		var live []string
		var err error
		if rec.Type == "MX" {
			var mxs []*netMX
			mxs, err = lookupMX(ctx, r, rec.Name)
			for _, m := range mxs {
				live = append(live, m.host)
			}
		} else {
			var txts []string
			txts, err = r.LookupTXT(ctx, rec.Name)
			for _, t := range txts {
				if strings.HasPrefix(strings.ToLower(t), strings.ToLower(rec.prefix)) {
					live = append(live, t)
				}
			}
		}
		st.Live = live
		switch {
		case err != nil && !dnsresolve.IsNotFound(err):
			st.Result, st.Err = Failed, err
		case len(live) == 0:
			st.Result = Missing
		case contains(live, rec):
			st.Result = Present
		default:
			st.Result = Different
		}
		out = append(out, st)
	}
	return out
}

type netMX struct{ host string }

func lookupMX(ctx context.Context, r dnsresolve.Resolver, name string) ([]*netMX, error) {
	mxs, err := r.LookupMX(ctx, name)
	var out []*netMX
	for _, m := range mxs {
		out = append(out, &netMX{host: strings.TrimSuffix(strings.ToLower(m.Host), ".")})
	}
	return out, err
}

func contains(live []string, rec Record) bool {
	for _, l := range live {
		if normalize(l) == normalize(rec.Value) {
			return true
		}
	}
	return false
}

// normalize makes tag lists compare equal whatever their spacing
// ("v=DKIM1;k=rsa" and "v=DKIM1; k=rsa").
func normalize(v string) string {
	v = strings.ToLower(strings.TrimSpace(v))
	v = strings.Join(strings.Fields(v), " ")
	return strings.ReplaceAll(strings.ReplaceAll(v, "; ", ";"), " ;", ";")
}

// Report renders check results, one line per record (and the live
// values when they differ).
func Report(sts []Status) string {
	var b strings.Builder
	for _, s := range sts {
		fmt.Fprintf(&b, "%-9s  %-7s  %s\n", s.Result, s.Kind, s.ZoneLine())
		switch s.Result {
		case Different:
			for _, l := range s.Live {
				if s.Type == "MX" {
					fmt.Fprintf(&b, "           live:    %s.\t3600\tIN\tMX\t%s.\n", s.Name, l)
				} else {
					fmt.Fprintf(&b, "           live:    %s.\t3600\tIN\tTXT\t%s\n", s.Name, quoteTXT(l))
				}
			}
		case Failed:
			fmt.Fprintf(&b, "           lookup failed: %v\n", s.Err)
		}
	}
	return b.String()
}
