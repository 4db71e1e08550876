package audit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
)

// auditPort runs the checks of the current port's role. An error means
// the port could not be audited at all (closed, no greeting).
func (a *auditor) auditPort(ctx context.Context) error {
	switch a.port.Role.family() {
	case "pop3":
		return a.auditPOP3(ctx)
	case "imap":
		return a.auditIMAP(ctx)
	}
	return a.auditSMTP(ctx)
}

// auditSMTP audits an smtp, submission or smtps port. The relay battery,
// account disclosure, pipelining and early-talker checks belong to the MX
// role (smtp); the submission roles are asked whether they take mail
// without AUTH instead.
func (a *auditor) auditSMTP(ctx context.Context) error {
	first, err := a.open(ctx, a.opts.HeloName)
	if err != nil {
		if a.port.Role.implicitTLS() && !errors.Is(err, errDial) {
			return a.implicitTLSFailed(ctx, err)
		}
		return err
	}
	a.cur.Open = true
	if first.greeting != nil {
		a.cur.Greeting = sanitize(first.greeting.Lines[0])
	}
	a.checkBanner(first)
	if a.port.Role.implicitTLS() {
		a.cur.TLS = "implicit"
		a.checkCertificate(first.tlsState, first.evidence(0))
		first.close()
	} else {
		a.checkAuthAndTLS(ctx, first)
	}
	checks := []func(context.Context){a.checkTLSVersions}
	if a.port.Role == RoleSMTP {
		checks = append(checks, a.checkDisclosure, a.checkPipelining, a.checkEarlyTalker, a.checkRelay)
	} else {
		checks = append(checks, a.checkMailWithoutAuth)
	}
	for _, check := range checks {
		if ctx.Err() != nil {
			break
		}
		check(ctx)
	}
	return nil
}

// implicitTLSFailed reports an implicit-TLS port that accepts the
// connection but not a TLS 1.2 or newer handshake.
func (a *auditor) implicitTLSFailed(ctx context.Context, err error) error {
	a.cur.Open = true
	a.cur.TLS = "offered but failing"
	a.add(Finding{
		ID:       "tls.implicit-failed",
		Title:    "Implicit TLS port accepts connections but no TLS 1.2 or newer handshake",
		Severity: Medium,
		Evidence: []string{"-- connected to " + a.addr, "-- " + sanitize(err.Error())},
		Fix:      "Configure a certificate and TLS 1.2 and 1.3 on this port, or close it; clients of an implicit-TLS port (RFC 8314) cannot fall back to cleartext.",
	})
	a.checkTLSVersions(ctx)
	return nil
}

// errDial marks a connection that could not be opened (as opposed to one
// opened and then failing).
var errDial = errors.New("connection failed")

// tlsVersions are offered one at a time to learn which the server takes.
var tlsVersions = []uint16{tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13}

// checkTLSVersions offers each TLS version alone on a fresh connection
// (Go's client still speaks TLS 1.0 and 1.1 when asked to explicitly) and
// reports a port accepting versions older than 1.2 (RFC 8996). On the
// POP3 and IMAP ports it also checks the certificate, which the SMTP
// ports check in checkAuthAndTLS.
func (a *auditor) checkTLSVersions(ctx context.Context) {
	if a.cur.TLS == "none" {
		return
	}
	var accepted, old, ev []string
	// The SMTP and implicit-TLS ports had their certificate checked already.
	certDone := a.port.Role.family() == "smtp" || a.port.Role.implicitTLS()
	for _, v := range tlsVersions {
		if ctx.Err() != nil {
			return
		}
		s, err := a.openTLS(ctx, v, v)
		if s == nil {
			if err != nil && !errors.Is(err, errRefusedTLS) {
				a.note("%s: %s probe not run: %v", a.port, tls.VersionName(v), err)
			}
			continue
		}
		if s.tlsState != nil {
			name := tls.VersionName(s.tlsState.Version)
			accepted = append(accepted, name)
			if v < tls.VersionTLS12 {
				old = append(old, name)
				ev = append(ev, s.evidence(0)...)
			} else if !certDone {
				certDone = true
				a.checkCertificate(s.tlsState, s.evidence(0))
			}
		}
		s.close()
	}
	a.cur.TLSVersions = accepted
	if !certDone && a.cur.TLS != "offered but failing" {
		a.cur.TLS = "offered but failing"
		a.add(Finding{
			ID:       "tls.handshake-failed",
			Title:    "TLS handshake with TLS 1.2 or newer fails",
			Severity: Medium,
			Evidence: ev,
			Fix:      "Enable TLS 1.2 and 1.3 with current cipher suites; clients that require TLS cannot connect.",
		})
	}
	if len(old) > 0 {
		a.add(Finding{
			ID:       "tls.old-version",
			Title:    "Accepts " + strings.Join(old, ", ") + " (older than TLS 1.2)",
			Severity: Medium,
			Evidence: ev,
			Fix: "Disable TLS 1.0 and 1.1 (RFC 8996). Postfix: smtpd_tls_protocols = >=TLSv1.2 and smtpd_tls_mandatory_protocols = >=TLSv1.2; " +
				"Dovecot: ssl_min_protocol = TLSv1.2; kanmon accepts TLS 1.2 and newer only.",
		})
	}
}

// errRefusedTLS marks a server that refused to start TLS (not a
// connection problem).
var errRefusedTLS = errors.New("TLS refused")

// openTLS opens a connection to the current port and brings it to TLS
// limited to versions min..max: at once on implicit-TLS ports, else with
// STARTTLS or STLS. The session is returned (to be closed) whenever the
// connection opened; its tlsState is nil when TLS did not start.
func (a *auditor) openTLS(ctx context.Context, min, max uint16) (*session, error) {
	cfg := a.tlsConfig(min, max)
	if a.port.Role.implicitTLS() {
		s, err := dialTLS(ctx, a.addr, a.opts.Timeout, cfg)
		if s != nil && err != nil {
			s.stop()
			_ = s.conn.Close()
			return nil, errRefusedTLS
		}
		return s, err
	}
	switch a.port.Role.family() {
	case "pop3":
		s, err := a.openMailbox(ctx)
		if err != nil {
			return nil, err
		}
		if l, err := s.cmdLine("STLS"); err == nil && strings.HasPrefix(l, "+OK") {
			_ = s.upgrade(ctx, cfg)
		}
		return s, nil
	case "imap":
		s, err := a.openMailbox(ctx)
		if err != nil {
			return nil, err
		}
		if ok, _ := s.imapCmd("S1 STARTTLS"); ok {
			_ = s.upgrade(ctx, cfg)
		}
		return s, nil
	}
	s, err := a.open(ctx, a.opts.HeloName)
	if err != nil {
		return nil, err
	}
	_, _ = s.startTLS(ctx, cfg)
	return s, nil
}

// checkMailWithoutAuth asks a submission port to take mail from a client
// that has not authenticated (after STARTTLS when offered, so it is the
// missing AUTH that is tested, not the missing TLS): first for a foreign
// recipient, then for a local one. Never DATA.
func (a *auditor) checkMailWithoutAuth(ctx context.Context) {
	s, err := a.open(ctx, a.opts.HeloName)
	if err != nil {
		a.note("%s: mail-without-AUTH check not run: %v", a.port, err)
		return
	}
	defer s.close()
	if _, ok := s.ext["STARTTLS"]; ok && s.tlsState == nil {
		if rep, err := s.startTLS(ctx, a.tlsConfig(tls.VersionTLS12, 0)); err != nil || rep.Code != 220 {
			a.note("%s: mail-without-AUTH check not run: STARTTLS failed", a.port)
			return
		}
		if err := s.hello(a.opts.HeloName); err != nil {
			a.note("%s: mail-without-AUTH check not run: %v", a.port, err)
			return
		}
	}
	mark := s.mark()
	ev := func() []string { return append([]string{"C: " + s.heloCmd}, s.evidence(mark)...) }
	a.cur.MailWithoutAuth = "refused"
	if rep, err := s.cmd("MAIL FROM:<" + a.opts.From + ">"); err != nil || !rep.Positive() {
		return
	}
	if rep, err := s.cmd("RCPT TO:<kanmon-relay-test@" + a.opts.ForeignDomain + ">"); err == nil && rep.Positive() {
		a.cur.MailWithoutAuth = "relayed"
		a.add(Finding{
			ID:       "submission.relay-without-auth",
			Title:    "Submission port relays mail to outside recipients without AUTH: an open relay",
			Severity: Critical,
			Evidence: ev(),
			Fix: "Require AUTH before MAIL on the submission ports (RFC 6409). Postfix: -o smtpd_client_restrictions=permit_sasl_authenticated,reject " +
				"and -o smtpd_relay_restrictions=permit_sasl_authenticated,reject in master.cf; kanmon requires AUTH there by default.",
		})
		return
	}
	local := a.localPart(a.opts.KnownUser) + "@" + a.opts.Domain
	if rep, err := s.cmd("RCPT TO:<" + local + ">"); err == nil && rep.Positive() {
		a.cur.MailWithoutAuth = "accepted for a local recipient"
		a.add(Finding{
			ID:       "submission.mail-without-auth",
			Title:    "Submission port takes mail without AUTH (for local recipients): a way around the MX's checks",
			Severity: Medium,
			Evidence: ev(),
			Fix: "Require AUTH before MAIL on the submission ports (RFC 6409); mail from outsiders belongs on port 25 with its checks. " +
				"Postfix: -o smtpd_client_restrictions=permit_sasl_authenticated,reject in master.cf.",
		})
	}
}

// wrapDial marks err as a failure to connect.
func wrapDial(err error) error { return fmt.Errorf("%w: %w", errDial, err) }
