package audit

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	"kanmon/internal/testutil/postfix"
)

// postfixPorts are the three SMTP listeners of inst in their roles.
func postfixPorts(t *testing.T, inst *postfix.Instance) (smtp, sub, smtps PortSpec) {
	t.Helper()
	p := func(addr string, r Role) PortSpec {
		_, port, err := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(port)
		if err != nil || n == 0 {
			t.Fatalf("bad address %q", addr)
		}
		return PortSpec{n, r}
	}
	return p(inst.Addr, RoleSMTP), p(inst.SubmissionAddr, RoleSubmission), p(inst.SMTPSAddr, RoleSMTPS)
}

// idsByPort maps each port ("PORT/ROLE", "" for the host) to its finding
// ids with severities, sorted.
func idsByPort(rep *Report) map[string][]string {
	m := map[string][]string{}
	for _, f := range rep.Findings {
		m[f.Port] = append(m[f.Port], f.ID+"("+f.Severity.String()+")")
	}
	for _, v := range m {
		slices.Sort(v)
	}
	return m
}

// assertPortFindings compares the findings on each port exactly.
func assertPortFindings(t *testing.T, rep *Report, want map[string][]string) {
	t.Helper()
	got := idsByPort(rep)
	for port, w := range want {
		if w == nil {
			w = []string{}
		}
		g := got[port]
		if g == nil {
			g = []string{}
		}
		if !slices.Equal(g, w) {
			t.Errorf("findings on %q:\n got  %v\n want %v", port, g, w)
		}
	}
	for port := range got {
		if _, ok := want[port]; !ok {
			t.Errorf("findings on unexpected port %q: %v", port, got[port])
		}
	}
}

// TestPostfixWeakEveryPort audits a Postfix with the weak setup on all
// three SMTP ports: AUTH offered and started in clear on port 25, TLS 1.0
// and 1.1 accepted everywhere (Debian 12's OpenSSL needs @SECLEVEL=0 for
// them), unknown users accepted (accept-then-bounce).
func TestPostfixWeakEveryPort(t *testing.T) {
	inst := postfix.Start(t, postfix.Options{
		TLS: true, SASL: true, Submission: true, SMTPS: true,
		MainCF: `
smtpd_tls_auth_only = no
smtpd_tls_protocols = >=TLSv1
smtpd_tls_mandatory_protocols = >=TLSv1
tls_medium_cipherlist = DEFAULT:@SECLEVEL=0
tls_high_cipherlist = DEFAULT:@SECLEVEL=0
local_recipient_maps =
smtpd_banner = $myhostname ESMTP
`,
	})
	smtp, sub, smtps := postfixPorts(t, inst)
	rep := auditPostfixWith(t, inst, func(o *Options) {
		o.Target = "127.0.0.1"
		o.Ports = []PortSpec{smtp, sub, smtps}
	})
	// VRFY is Postfix's default (on); with no recipient table it
	// confirms every name, so it discloses nothing, which is the low
	// finding.
	assertPortFindings(t, rep, map[string][]string{
		smtp.String(): {"auth.accepted-plaintext(high)", "auth.offered-plaintext(high)", "backscatter.accept-unknown(medium)",
			"disclosure.vrfy-answers-all(low)", "smtp.early-talker(info)", "tls.old-version(medium)"},
		sub.String():   {"tls.old-version(medium)"},
		smtps.String(): {"tls.old-version(medium)"},
	})
	if !rep.HasHigh() {
		t.Error("HasHigh false for AUTH in clear")
	}
	if f := rep.FindAt("tls.old-version", smtps.String()); f == nil || !strings.Contains(f.Title, "TLS 1.0") {
		t.Errorf("tls.old-version on smtps: %+v", f)
	}
}

// TestPostfixSecureEveryPort audits a Postfix with the secure setup on all
// three SMTP ports: relay only for SASL clients, VRFY off, AUTH only
// after TLS, TLS 1.2 or newer, unknown users refused at RCPT, submission
// only for authenticated clients. Nothing above low on any port.
func TestPostfixSecureEveryPort(t *testing.T) {
	inst := postfix.Start(t, postfix.Options{
		TLS: true, SASL: true, Submission: true, SMTPS: true,
		MainCF: `
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
disable_vrfy_command = yes
smtpd_tls_auth_only = yes
smtpd_banner = $myhostname ESMTP
allow_percent_hack = no
swap_bangpath = no
`,
	})
	smtp, sub, smtps := postfixPorts(t, inst)
	rep := auditPostfixWith(t, inst, func(o *Options) {
		o.Target = "127.0.0.1"
		o.Ports = []PortSpec{smtp, sub, smtps}
	})
	assertPortFindings(t, rep, map[string][]string{smtp.String(): {"smtp.early-talker(info)"}})
	for _, p := range rep.Ports {
		if !p.Open || p.TLS == "none" {
			t.Errorf("port %d/%s: open %v, TLS %s", p.Port, p.Role, p.Open, p.TLS)
		}
	}
}
