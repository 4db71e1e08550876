package audit

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
)

// The POP3 and IMAP ports are audited for what seed 004 names: a password
// that can travel in clear, TLS missing or old, and the greeting's
// disclosure. The audit never sends a password: a made-up name shows
// whether the server would take one (POP3 USER), and an AUTHENTICATE or
// AUTH exchange is cancelled with "*" before any credentials.

// maxListLines bounds a multi-line POP3 or IMAP response.
const maxListLines = 100

// openMailbox connects to the current POP3 or IMAP port (TLS first on
// pop3s and imaps) and reads the greeting, which must be positive.
func (a *auditor) openMailbox(ctx context.Context) (*session, error) {
	var (
		s   *session
		err error
	)
	if a.port.Role.implicitTLS() {
		s, err = dialTLS(ctx, a.addr, a.opts.Timeout, a.tlsConfig(tls.VersionTLS12, 0))
		if err != nil && s != nil {
			s.stop()
			_ = s.conn.Close()
		}
	} else {
		s, err = dial(ctx, a.addr, a.opts.Timeout)
	}
	if err != nil {
		return nil, err
	}
	s.proto = a.port.Role.family()
	l, err := s.line()
	if err != nil {
		s.close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if !strings.HasPrefix(l, "+OK") && !strings.HasPrefix(strings.ToUpper(l), "* OK") {
		s.broken = fmt.Errorf("server refused the session: %s", sanitize(l))
		s.close()
		return nil, s.broken
	}
	return s, nil
}

// cmdLine sends a POP3 command and reads its one-line answer.
func (s *session) cmdLine(cmd string) (string, error) {
	if err := s.send(cmd); err != nil {
		return "", err
	}
	return s.line()
}

// pop3List sends a POP3 command with a multi-line answer (CAPA) and
// returns the lines after "+OK", without the final ".".
func (s *session) pop3List(cmd string) ([]string, bool) {
	l, err := s.cmdLine(cmd)
	if err != nil || !strings.HasPrefix(l, "+OK") {
		return nil, false
	}
	var out []string
	for range maxListLines {
		l, err := s.line()
		if err != nil || l == "." {
			break
		}
		out = append(out, l)
	}
	return out, true
}

// imapCmd sends a tagged IMAP command (the tag is its first word) and
// reads until the tagged answer; ok is true for a tagged OK.
func (s *session) imapCmd(cmd string) (ok bool, untagged []string) {
	tag, _, _ := strings.Cut(cmd, " ")
	if err := s.send(cmd); err != nil {
		return false, nil
	}
	for range maxListLines {
		l, err := s.line()
		if err != nil {
			return false, untagged
		}
		if strings.HasPrefix(l, tag+" ") {
			return strings.HasPrefix(strings.ToUpper(l[len(tag)+1:]), "OK"), untagged
		}
		untagged = append(untagged, l)
	}
	return false, untagged
}

// auditPOP3 audits a pop3 or pop3s port.
func (a *auditor) auditPOP3(ctx context.Context) error {
	s, err := a.openMailbox(ctx)
	if err != nil {
		if a.port.Role.implicitTLS() && !strings.Contains(err.Error(), errDial.Error()) && !strings.HasPrefix(err.Error(), "greeting") {
			return a.implicitTLSFailed(ctx, err)
		}
		return err
	}
	a.cur.Open = true
	a.cur.Greeting = sanitize(strings.TrimPrefix(s.transcript[len(s.transcript)-1], "S: "))
	a.checkGreeting(s.transcript[len(s.transcript)-1])
	if a.port.Role.implicitTLS() {
		a.cur.TLS = "implicit"
		a.checkCertificate(s.tlsState, s.evidence(0))
		s.close()
		a.checkTLSVersions(ctx)
		return nil
	}
	defer s.close()
	capa, _ := s.pop3List("CAPA")
	stls := false
	for _, c := range capa {
		kw, rest, _ := strings.Cut(strings.ToUpper(strings.TrimSpace(c)), " ")
		switch kw {
		case "STLS":
			stls = true
		case "USER":
			a.cur.AuthBeforeTLS = append(a.cur.AuthBeforeTLS, "USER")
		case "SASL":
			a.cur.AuthBeforeTLS = append(a.cur.AuthBeforeTLS, strings.Fields(rest)...)
		}
	}
	// A made-up name, never a real one and never a password: "+OK" means
	// the server would take PASS on this cleartext connection.
	mark := s.mark()
	userReply, err := s.cmdLine("USER " + a.unknown)
	if err == nil && strings.HasPrefix(userReply, "+OK") {
		a.cur.LoginBeforeTLS = true
		ev := append([]string{"C: CAPA"}, prefixed("S: ", capa)...)
		a.add(Finding{
			ID:       "pop3.login-plaintext",
			Title:    "POP3 takes USER/PASS before TLS: passwords travel in cleartext",
			Severity: High,
			Evidence: append(ev, s.evidence(mark)...),
			Fix: "Refuse login before STLS (RFC 2595): Dovecot: disable_plaintext_auth = yes (ssl = required); " +
				"kanmon refuses USER and AUTH before STLS on its POP3 listener.",
		})
		_, _ = s.cmdLine("RSET") // forget the name; no PASS is sent
	}
	a.tlsOffered(stls, "STLS", append([]string{"C: CAPA"}, prefixed("S: ", capa)...))
	a.checkTLSVersions(ctx)
	return nil
}

// tlsOffered records whether STARTTLS or STLS is offered and reports a
// port without it.
func (a *auditor) tlsOffered(offered bool, verb string, ev []string) {
	if offered {
		a.cur.TLS = "starttls"
		return
	}
	a.add(Finding{
		ID:       "tls.missing",
		Title:    verb + " is not offered: mail and passwords travel in cleartext",
		Severity: Medium,
		Evidence: ev,
		Fix:      "Install a certificate and offer " + verb + " (Dovecot: ssl = required with ssl_cert and ssl_key), or close this port and keep only its implicit-TLS twin.",
	})
}

// auditIMAP audits an imap or imaps port.
func (a *auditor) auditIMAP(ctx context.Context) error {
	s, err := a.openMailbox(ctx)
	if err != nil {
		if a.port.Role.implicitTLS() && !strings.Contains(err.Error(), errDial.Error()) && !strings.HasPrefix(err.Error(), "greeting") {
			return a.implicitTLSFailed(ctx, err)
		}
		return err
	}
	a.cur.Open = true
	greeting := s.transcript[len(s.transcript)-1]
	a.cur.Greeting = sanitize(strings.TrimPrefix(greeting, "S: "))
	a.checkGreeting(greeting)
	if a.port.Role.implicitTLS() {
		a.cur.TLS = "implicit"
		a.checkCertificate(s.tlsState, s.evidence(0))
		s.close()
		a.checkTLSVersions(ctx)
		return nil
	}
	defer s.close()
	mark := s.mark()
	_, untagged := s.imapCmd("A1 CAPABILITY")
	caps := map[string]bool{}
	for _, l := range untagged {
		if f := strings.Fields(strings.ToUpper(l)); len(f) > 2 && f[0] == "*" && f[1] == "CAPABILITY" {
			for _, c := range f[2:] {
				caps[c] = true
				if m, ok := strings.CutPrefix(c, "AUTH="); ok {
					a.cur.AuthBeforeTLS = append(a.cur.AuthBeforeTLS, m)
				}
			}
		}
	}
	capEv := s.evidence(mark)
	if !caps["LOGINDISABLED"] {
		a.cur.LoginBeforeTLS = true
		a.cur.AuthBeforeTLS = dedupe(append(a.cur.AuthBeforeTLS, "LOGIN"))
		a.add(Finding{
			ID:       "imap.login-plaintext",
			Title:    "IMAP takes LOGIN before TLS (no LOGINDISABLED): passwords travel in cleartext",
			Severity: High,
			Evidence: capEv,
			Fix: "Refuse login before STARTTLS and advertise LOGINDISABLED (RFC 3501, RFC 8314): " +
				"Dovecot: disable_plaintext_auth = yes (ssl = required).",
		})
	}
	a.tlsOffered(caps["STARTTLS"], "STARTTLS", capEv)
	a.checkTLSVersions(ctx)
	return nil
}

// checkGreeting looks for software names and versions in a POP3 or IMAP
// greeting line ("S: +OK Dovecot ready.").
func (a *auditor) checkGreeting(line string) {
	text := strings.TrimPrefix(line, "S: ")
	if i := strings.IndexByte(text, ']'); i >= 0 && strings.Contains(text[:i], "[CAPABILITY") {
		text = text[i+1:] // the capability list is not a disclosure
	}
	var versions []string
	for _, tok := range strings.FieldsFunc(text, func(r rune) bool { return strings.ContainsRune(" /();,[]\t", r) }) {
		if tok = strings.TrimSuffix(tok, "."); versionToken.MatchString(strings.ToLower(tok)) {
			versions = append(versions, tok)
		}
	}
	names := mtaNames.FindAllString(text, -1)
	switch {
	case len(versions) > 0:
		a.add(Finding{
			ID: "banner.version", Title: "Greeting discloses a software version (" + strings.Join(dedupe(versions), ", ") + ")",
			Severity: Low, Evidence: []string{line},
			Fix: "Greet without a version (Dovecot: login_greeting = Ready.).",
		})
	case len(names) > 0:
		a.add(Finding{
			ID: "banner.software", Title: "Greeting names the server software (" + strings.Join(dedupe(names), ", ") + ")",
			Severity: Info, Evidence: []string{line},
			Fix: "Optional: greet without naming the software (Dovecot: login_greeting = Ready.).",
		})
	}
}
