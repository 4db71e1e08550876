package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"strings"

	"kanmon/internal/dnsresolve"
)

// checkDKIM judges the key record of the DKIM selector the server signs
// with (RFC 6376 3.6.1): it must exist, be one record, carry a public key
// a verifier can use, and not be in test mode.
func (a *auditor) checkDKIM(ctx context.Context, selector string) {
	name := selector + "._domainkey." + a.opts.Domain
	txt, err := a.opts.Resolver.LookupTXT(ctx, name)
	if err != nil && !dnsresolve.IsNotFound(err) {
		a.note("TXT lookup for %s failed: %v", name, err)
		return
	}
	fixKey := "Publish the selector's public key: \"" + name + ". IN TXT \\\"v=DKIM1; k=rsa; p=BASE64KEY\\\"\" (the key the signer uses, RSA 2048 bits or Ed25519)."
	switch len(txt) {
	case 0:
		a.add(Finding{
			ID:       "dns.dkim-missing",
			Title:    "No DKIM key at " + name + ": every message signed with selector " + selector + " fails DKIM",
			Severity: High,
			Evidence: []string{"DNS: TXT " + name + ": no such record"},
			Fix:      fixKey,
		})
		return
	case 1:
	default:
		a.add(Finding{
			ID:       "dns.dkim-multiple",
			Title:    "Several TXT records at " + name + ": verifiers may pick the wrong one and fail",
			Severity: High,
			Evidence: prefixed("DNS: TXT "+name+": ", txt),
			Fix:      "Keep exactly one key record per selector; use a new selector for a new key.",
		})
		return
	}
	ev := prefixed("DNS: TXT "+name+": ", txt)
	problem, sev, id := dkimKeyProblem(txt[0])
	if problem == "" {
		return
	}
	fix := fixKey
	if id == "dns.dkim-testing" {
		fix = "Remove t=y once signatures verify: in test mode receivers treat signed mail as unsigned."
	}
	a.add(Finding{
		ID:       id,
		Title:    "DKIM key at " + name + ": " + problem,
		Severity: sev,
		Evidence: ev,
		Fix:      fix,
	})
}

// dkimKeyProblem returns what is wrong with a DKIM key record, its
// severity and finding id, or "" when the record is usable.
func dkimKeyProblem(rec string) (string, Severity, string) {
	tt := tags(rec)
	if v, ok := tag(tt, "v"); ok && (v != "DKIM1" || tt[0][0] != "v") {
		return "v= must be DKIM1 and come first", High, "dns.dkim-invalid"
	}
	p, ok := tag(tt, "p")
	if !ok {
		return "no p= (public key) tag", High, "dns.dkim-invalid"
	}
	p = strings.Join(strings.Fields(p), "")
	if p == "" {
		return "the key is revoked (empty p=): signatures with this selector fail", High, "dns.dkim-revoked"
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return "p= is not base64", High, "dns.dkim-invalid"
	}
	k, _ := tag(tt, "k")
	switch strings.ToLower(k) {
	case "", "rsa":
		pub, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			// Some signers publish the bare PKCS#1 key.
			rk, err2 := x509.ParsePKCS1PublicKey(der)
			if err2 != nil {
				return "p= is not an RSA public key", High, "dns.dkim-invalid"
			}
			pub = rk
		}
		rk, isRSA := pub.(*rsa.PublicKey)
		if !isRSA {
			return "k=rsa but p= is not an RSA key", High, "dns.dkim-invalid"
		}
		switch bits := rk.N.BitLen(); {
		case bits < 1024:
			return fmt.Sprintf("RSA key of %d bits: verifiers reject keys under 1024 bits", bits), High, "dns.dkim-weak-key"
		case bits < 2048:
			return fmt.Sprintf("RSA key of %d bits: 2048 is the recommended minimum", bits), Low, "dns.dkim-weak-key"
		}
	case "ed25519":
		if len(der) != ed25519.PublicKeySize {
			return "k=ed25519 but p= is not a 32-byte key", High, "dns.dkim-invalid"
		}
	default:
		return "unknown key type k=" + k, High, "dns.dkim-invalid"
	}
	if t, ok := tag(tt, "t"); ok {
		for _, flag := range strings.Split(t, ":") {
			if strings.TrimSpace(flag) == "y" {
				return "test mode (t=y): receivers treat signed mail as unsigned", Low, "dns.dkim-testing"
			}
		}
	}
	return "", Info, ""
}
