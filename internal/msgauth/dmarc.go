package msgauth

import (
	"context"
	"errors"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"
)

// OrgDomain returns the organizational domain of d (RFC 7489 3.2: the
// public suffix plus one label); a public suffix itself, or a name the
// list cannot place, is its own.
func OrgDomain(d string) string {
	d = strings.ToLower(strings.TrimSuffix(d, "."))
	org, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return org
}

// Aligned reports whether the authenticated domain id is aligned with
// the header From: domain from (RFC 7489 3.1): equal in strict mode, the
// same organizational domain in relaxed mode.
func Aligned(id, from string, mode dmarc.AlignmentMode) bool {
	id = strings.ToLower(strings.TrimSuffix(id, "."))
	from = strings.ToLower(strings.TrimSuffix(from, "."))
	if id == "" || from == "" {
		return false
	}
	if mode == dmarc.AlignmentStrict {
		return id == from
	}
	return OrgDomain(id) == OrgDomain(from)
}

// DKIMResult is one verified signature.
type DKIMResult struct {
	// Result is pass, fail, neutral, temperror or permerror (RFC 8601).
	Result   string
	Domain   string // d=
	Selector string // s=
	// Identifier is i= ("" when the signature has none).
	Identifier string
	// Reason says why it did not pass.
	Reason string
}

// Inputs are the facts a DMARC evaluation weighs.
type Inputs struct {
	// From is the header From: domain.
	From string
	// Record is the policy found (nil: none); OrgRecord says it was
	// found at the organizational domain rather than at From.
	Record    *dmarc.Record
	OrgRecord bool
	// LookupErr is the policy lookup's failure, when it failed.
	LookupErr error
	// SPF is the SPF result for SPFDomain (MAIL FROM's domain, or the
	// HELO name for the null sender).
	SPF, SPFDomain string
	DKIM           []DKIMResult
}

// Outcome is a DMARC evaluation.
type Outcome struct {
	// Result is pass, fail, none, temperror or permerror.
	Result string
	// Policy is what the domain asks for a failing message (none,
	// quarantine or reject), after sp= and pct=; "" without a record.
	Policy dmarc.Policy
	// Reason says how the result came about, for logs.
	Reason string
}

// Evaluate applies RFC 7489 section 6.6 to in. A message passes when SPF
// or a DKIM signature passes for a domain aligned with From. DNS trouble
// never turns into a failure: a policy that could not be looked up, or an
// aligned identifier that could not be checked, gives temperror.
//
// pct= is honoured loosely and never harshly: below 100 the whole of the
// domain's mail gets the next milder policy (reject → quarantine,
// quarantine → none), so the domain's request is never exceeded and the
// result does not depend on chance.
func Evaluate(in Inputs) Outcome {
	switch {
	case in.LookupErr != nil && dmarc.IsTempFail(in.LookupErr):
		return Outcome{Result: "temperror", Reason: "policy lookup failed: " + in.LookupErr.Error()}
	case in.LookupErr != nil && !errors.Is(in.LookupErr, dmarc.ErrNoPolicy):
		return Outcome{Result: "permerror", Reason: "policy unusable: " + in.LookupErr.Error()}
	case in.Record == nil:
		return Outcome{Result: "none", Reason: "no policy published"}
	}
	rec := in.Record
	p := rec.Policy
	if in.OrgRecord && rec.SubdomainPolicy != "" {
		p = rec.SubdomainPolicy
	}
	if rec.Percent != nil && *rec.Percent < 100 {
		switch p {
		case dmarc.PolicyReject:
			p = dmarc.PolicyQuarantine
		case dmarc.PolicyQuarantine:
			p = dmarc.PolicyNone
		}
	}
	out := Outcome{Policy: p}
	temp := false
	for _, d := range in.DKIM {
		if !Aligned(d.Domain, in.From, rec.DKIMAlignment) {
			continue
		}
		switch d.Result {
		case "pass":
			out.Result, out.Reason = "pass", "DKIM d="+d.Domain+" aligned"
			return out
		case "temperror":
			temp = true
		}
	}
	if Aligned(in.SPFDomain, in.From, rec.SPFAlignment) {
		switch in.SPF {
		case "pass":
			out.Result, out.Reason = "pass", "SPF "+in.SPFDomain+" aligned"
			return out
		case "temperror":
			temp = true
		}
	}
	if temp {
		out.Result, out.Reason = "temperror", "an aligned identifier could not be checked (DNS)"
		return out
	}
	out.Result, out.Reason = "fail", "neither SPF nor DKIM passed for a domain aligned with "+in.From
	return out
}

// lookupPolicy finds the DMARC record for from, or for its
// organizational domain when from has none (RFC 7489 6.6.3).
func (c *Checker) lookupPolicy(ctx context.Context, from string) (*dmarc.Record, bool, error) {
	opts := &dmarc.LookupOptions{LookupTXT: c.lookupTXT(ctx)}
	rec, err := dmarc.LookupWithOptions(from, opts)
	if !errors.Is(err, dmarc.ErrNoPolicy) {
		return rec, false, err
	}
	org := OrgDomain(from)
	if org == from {
		return nil, false, err
	}
	rec, err = dmarc.LookupWithOptions(org, opts)
	return rec, true, err
}
