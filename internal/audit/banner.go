package audit

import (
	"context"
	"net/netip"
	"regexp"
	"strings"
)

// mtaNames are software names worth spotting in a banner.
var mtaNames = regexp.MustCompile(`(?i)\b(postfix|sendmail|exim|qmail|netqmail|microsoft|exchange|haraka|opensmtpd|courier|zimbra|mdaemon|hmailserver|kerio|ironport|maddy|chasquid|mox|kanmon|smail|mercury|argosoft|communigate|axigen|icewarp|surgemail|cyrus|dovecot|debian|ubuntu|centos|red ?hat|freebsd|windows)\b`)

// versionToken matches a version number such as 3.7.11, 8.9.3/8.9.3 parts,
// v4.96 or 8.5.9600.16384.
var versionToken = regexp.MustCompile(`^v?\d+(\.\d+){1,3}([a-z]|[-+~_][\w.]+)?$`)

// checkBanner looks at the greeting and the EHLO reply for software names
// and version numbers.
func (a *auditor) checkBanner(s *session) {
	var lines []string
	if s.greeting != nil {
		for _, l := range s.greeting.Lines {
			lines = append(lines, "S: "+sanitize(l))
		}
	}
	if s.ehlo != nil && len(s.ehlo.Lines) > 0 {
		lines = append(lines, "C: "+s.heloCmd, "S: "+sanitize(s.ehlo.Lines[0]))
	}
	var versions, names []string
	for _, l := range lines {
		if !strings.HasPrefix(l, "S: ") {
			continue
		}
		text := l[3:]
		if len(text) > 4 {
			text = text[4:]
		}
		// The first word is the server's host name (RFC 5321 4.2, 4.3.1):
		// not a disclosure, and it may well contain "kanmon" or "exchange".
		if _, rest, ok := strings.Cut(strings.TrimSpace(text), " "); ok {
			text = rest
		} else {
			continue
		}
		for _, tok := range strings.FieldsFunc(text, func(r rune) bool {
			return r == ' ' || r == '/' || r == '(' || r == ')' || r == ';' || r == ',' || r == '[' || r == ']' || r == '\t'
		}) {
			tok = strings.TrimSuffix(tok, ".")
			if _, err := netip.ParseAddr(tok); err == nil {
				continue
			}
			if versionToken.MatchString(strings.ToLower(tok)) {
				versions = append(versions, tok)
			}
		}
		names = append(names, mtaNames.FindAllString(text, -1)...)
	}
	switch {
	case len(versions) > 0:
		a.add(Finding{
			ID:       "banner.version",
			Title:    "Banner discloses a software version (" + strings.Join(dedupe(versions), ", ") + ")",
			Severity: Low,
			Evidence: lines,
			Fix: "Greet with the host name and \"ESMTP\" only, so scanners cannot match the version against known vulnerabilities. " +
				"Postfix: smtpd_banner = $myhostname ESMTP; sendmail: SmtpGreetingMessage=$j; kanmon never shows a version.",
		})
	case len(names) > 0:
		a.add(Finding{
			ID:       "banner.software",
			Title:    "Banner names the server software (" + strings.Join(dedupe(names), ", ") + ")",
			Severity: Info,
			Evidence: lines,
			Fix:      "Optional: greet with the host name and \"ESMTP\" only (Postfix: smtpd_banner = $myhostname ESMTP).",
		})
	}
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if k := strings.ToLower(s); !seen[k] {
			seen[k] = true
			out = append(out, s)
		}
	}
	return out
}

// checkEarlyTalker sends EHLO before the greeting, as spam bots do. A
// server that waits a moment before greeting and rejects clients that
// talk first (kanmon, Postfix's postscreen) turns most of them away.
func (a *auditor) checkEarlyTalker(ctx context.Context) {
	s, err := dial(ctx, a.addr, a.opts.Timeout)
	if err != nil {
		a.note("early-talker check not run: %v", err)
		return
	}
	defer s.close()
	line := "EHLO " + a.opts.HeloName
	if err := s.sendRaw(line+"\r\n", []string{line + "   (sent before the greeting)"}); err != nil {
		a.note("early-talker check not run: %v", err)
		return
	}
	greet, err := s.read()
	if err != nil || greet.Code != 220 {
		return // refused: what we want
	}
	rep, err := s.read()
	if err != nil || !rep.Positive() {
		return
	}
	a.add(Finding{
		ID:       "smtp.early-talker",
		Title:    "Accepts a client that talks before the greeting (early talker)",
		Severity: Info,
		Evidence: s.evidence(0),
		Fix: "Informational. Delay the greeting a few seconds on the MX port and drop clients that send anything first: legitimate MTAs wait for 220, spam bots often do not. " +
			"Postfix: postscreen with postscreen_greet_action = enforce; kanmon: its early-talker check on the MX listener.",
	})
}

// checkPipelining sends a batch of commands in one write to a server that
// does not advertise PIPELINING (RFC 2920); answering all of them is
// informational.
func (a *auditor) checkPipelining(ctx context.Context) {
	s, err := a.open(ctx, a.opts.HeloName)
	if err != nil {
		a.note("pipelining check not run: %v", err)
		return
	}
	defer s.close()
	if _, ok := s.ext["PIPELINING"]; ok {
		return
	}
	mark := s.mark()
	if err := s.sendRaw("RSET\r\nNOOP\r\nNOOP\r\n", []string{"RSET", "NOOP", "NOOP   (three commands in one write)"}); err != nil {
		return
	}
	for range 3 {
		rep, err := s.read()
		if err != nil || !rep.Positive() {
			return
		}
	}
	a.add(Finding{
		ID:       "smtp.pipelining",
		Title:    "Answers pipelined commands without advertising PIPELINING",
		Severity: Info,
		Evidence: append(append([]string{"C: " + s.heloCmd}, prefixed("S: ", s.ehlo.Lines)...), s.evidence(mark)...),
		Fix:      "Informational. A server that does not advertise PIPELINING may reject clients that pipeline anyway (Postfix: smtpd_forbid_unauth_pipelining), a cheap spam-bot signal.",
	})
}
