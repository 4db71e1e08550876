package audit

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// allCipherSuites offers every suite Go implements, insecure ones
// included, so the audit sees what the server accepts rather than what a
// careful client would offer.
func allCipherSuites() []uint16 {
	var ids []uint16
	for _, cs := range tls.CipherSuites() {
		ids = append(ids, cs.ID)
	}
	for _, cs := range tls.InsecureCipherSuites() {
		ids = append(ids, cs.ID)
	}
	return ids
}

// tlsConfig returns the client configuration for a probe. Verification
// is done by hand afterwards (checkCertificate) so that a bad certificate
// is a finding, not a failed handshake.
func (a *auditor) tlsConfig(minVersion, maxVersion uint16) *tls.Config {
	cfg := &tls.Config{
		InsecureSkipVerify: true, // verified in checkCertificate
		MinVersion:         minVersion,
		MaxVersion:         maxVersion,
		CipherSuites:       allCipherSuites(),
	}
	name := a.certName()
	if _, err := netip.ParseAddr(name); err != nil {
		cfg.ServerName = name
	}
	return cfg
}

// certName is the name the certificate must match.
func (a *auditor) certName() string {
	if a.opts.TLSServerName != "" {
		return a.opts.TLSServerName
	}
	return a.host
}

// authMechanismsExposing are SASL mechanisms that send the password itself.
var authMechanismsExposing = map[string]bool{"PLAIN": true, "LOGIN": true}

// checkAuthAndTLS takes the first session (after EHLO, before TLS): AUTH
// offered or started before TLS, STARTTLS offered and working, the
// negotiated version and the certificate. It closes s.
func (a *auditor) checkAuthAndTLS(ctx context.Context, s *session) {
	defer s.close()
	ehloEvidence := append([]string{"C: " + s.heloCmd}, prefixed("S: ", s.ehlo.Lines)...)

	mechs := strings.Fields(strings.ToUpper(s.ext["AUTH"]))
	a.cur.AuthBeforeTLS = mechs
	if _, ok := s.ext["AUTH"]; ok {
		sev, what := Medium, "challenge-response mechanisms only"
		for _, m := range mechs {
			if authMechanismsExposing[m] {
				sev, what = High, "the password itself travels in cleartext with "+m
				break
			}
		}
		a.add(Finding{
			ID:       "auth.offered-plaintext",
			Title:    "AUTH offered before TLS (" + what + ")",
			Severity: sev,
			Evidence: ehloEvidence,
			Fix: "Offer AUTH only after STARTTLS (or on implicit TLS, port 465), and only on the submission ports. " +
				"Postfix: smtpd_tls_auth_only = yes; kanmon requires TLS for AUTH by default.",
		})
	}
	// Start AUTH (offered or not) and cancel it: a 334 means the server
	// is ready to take credentials over the cleartext connection.
	mech := "PLAIN"
	if len(mechs) > 0 && !contains(mechs, "PLAIN") {
		mech = mechs[0]
		if contains(mechs, "LOGIN") {
			mech = "LOGIN"
		}
	}
	mark := s.mark()
	rep, err := s.cmd("AUTH " + mech)
	if err != nil {
		a.note("AUTH probe not finished: %v", err)
		return
	}
	if rep.Code == 334 {
		a.cur.LoginBeforeTLS = true
		_, _ = s.cmd("*") // cancel (RFC 4954 4): no credentials are sent
		sev := High
		if !authMechanismsExposing[mech] {
			sev = Medium
		}
		a.add(Finding{
			ID:       "auth.accepted-plaintext",
			Title:    "AUTH " + mech + " started before TLS: the server is ready to take credentials in cleartext",
			Severity: sev,
			Evidence: append([]string{"C: " + s.heloCmd}, s.evidence(mark)...),
			Fix: "Refuse AUTH before TLS with 538 5.7.11 (encryption required). " +
				"Postfix: smtpd_tls_auth_only = yes; kanmon refuses it by default.",
		})
	}
	if s.broken != nil {
		return
	}

	if _, ok := s.ext["STARTTLS"]; !ok {
		a.add(Finding{
			ID:       "tls.missing",
			Title:    "STARTTLS is not offered: mail and any credentials travel in cleartext",
			Severity: Medium,
			Evidence: ehloEvidence,
			Fix: "Install a certificate for the server's name and offer STARTTLS. " +
				"Postfix: smtpd_tls_cert_file, smtpd_tls_key_file, smtpd_tls_security_level = may; kanmon: cert and key in [tls].",
		})
		return
	}
	mark = s.mark()
	rep, err = s.startTLS(ctx, a.tlsConfig(tls.VersionTLS12, 0))
	switch {
	case err != nil && rep == nil:
		a.note("STARTTLS check not finished: %v", err)
		return
	case rep.Code != 220:
		a.cur.TLS = "offered but failing"
		a.add(Finding{
			ID:       "tls.starttls-refused",
			Title:    "STARTTLS is advertised but refused",
			Severity: Medium,
			Evidence: append(ehloEvidence, s.evidence(mark)...),
			Fix:      "Make STARTTLS work (certificate and key readable by the server) or stop advertising it.",
		})
		return
	case err != nil:
		a.cur.TLS = "offered but failing"
		a.add(Finding{
			ID:       "tls.handshake-failed",
			Title:    "STARTTLS handshake with TLS 1.2 or newer fails",
			Severity: Medium,
			Evidence: append(ehloEvidence, s.evidence(mark)...),
			Fix:      "Enable TLS 1.2 and 1.3 with current cipher suites; senders that require TLS cannot deliver.",
		})
		return
	}
	a.cur.TLS = "starttls"
	a.checkCertificate(s.tlsState, s.evidence(mark))
	// EHLO again over TLS, as a client must; AUTH may appear now.
	_ = s.hello(a.opts.HeloName)
}

// checkCertificate reports an expired, mismatched or untrusted
// certificate.
func (a *auditor) checkCertificate(st *tls.ConnectionState, dialogue []string) {
	if len(st.PeerCertificates) == 0 {
		return
	}
	leaf := st.PeerCertificates[0]
	if a.cur != nil {
		a.cur.Certificate = describeCert(leaf)
	}
	ev := append(dialogue, "-- certificate: "+describeCert(leaf))
	now := time.Now()
	if now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		a.add(Finding{
			ID:       "tls.cert-expired",
			Title:    fmt.Sprintf("Certificate is outside its validity period (%s to %s)", leaf.NotBefore.UTC().Format(time.DateOnly), leaf.NotAfter.UTC().Format(time.DateOnly)),
			Severity: Medium,
			Evidence: ev,
			Fix:      "Renew the certificate (automate it, e.g. ACME) and reload the server.",
		})
	}
	name := a.certName()
	if err := leaf.VerifyHostname(name); err != nil {
		a.add(Finding{
			ID:       "tls.cert-name",
			Title:    "Certificate does not match " + name,
			Severity: Medium,
			Evidence: append(ev, "-- "+sanitize(err.Error())),
			Fix:      "Use a certificate whose subject alternative names include the server's MX host name; senders using MTA-STS or DANE refuse a mismatch.",
		})
	}
	if a.opts.InsecureTLSOK {
		return
	}
	opts := x509.VerifyOptions{
		Roots:         a.opts.RootCAs,
		Intermediates: x509.NewCertPool(),
		CurrentTime:   now,
	}
	if now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		opts.CurrentTime = leaf.NotAfter.Add(-time.Second) // expiry is reported above
	}
	for _, c := range st.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := leaf.Verify(opts); err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return
		}
		a.add(Finding{
			ID:       "tls.cert-untrusted",
			Title:    "Certificate does not chain to a trusted root",
			Severity: Low,
			Evidence: append(ev, "-- "+sanitize(err.Error())),
			Fix:      "Use a certificate from a public CA (ACME works for mail servers too); self-signed certificates defeat MTA-STS and authenticated submission clients.",
		})
	}
}

// describeCert summarises a certificate for evidence.
func describeCert(c *x509.Certificate) string {
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	return sanitize(fmt.Sprintf("subject %q, names [%s], issuer %q, valid %s to %s",
		c.Subject.CommonName, strings.Join(names, " "), c.Issuer.CommonName,
		c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339)))
}

func prefixed(prefix string, lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = prefix + sanitize(l)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
