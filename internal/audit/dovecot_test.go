package audit

import (
	"context"
	"strconv"
	"testing"
	"time"

	"kanmon/internal/testutil/dovecot"
)

// auditDovecot audits the four listeners of a private Dovecot.
func auditDovecot(t *testing.T, inst *dovecot.Instance) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Options{
		Target: dovecot.Host, Domain: "dovecot.test", Timeout: 20 * time.Second, SkipDNS: true,
		Ports:   []PortSpec{{inst.POP3, RolePOP3}, {inst.POP3S, RolePOP3S}, {inst.IMAP, RoleIMAP}, {inst.IMAPS, RoleIMAPS}},
		RootCAs: inst.CertPool, TLSServerName: "mail.dovecot.test",
	})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, inst.Log())
	}
	t.Logf("audit:\n%s", dump(rep))
	return rep
}

func port(p int, r Role) string { return strconv.Itoa(p) + "/" + string(r) }

// mustFindAt is mustFind for one port.
func mustFindAt(t *testing.T, rep *Report, id, at string, sev Severity) {
	t.Helper()
	f := rep.FindAt(id, at)
	if f == nil {
		t.Errorf("finding %s on %s missing; got %v", id, at, idsAt(rep))
		return
	}
	if f.Severity != sev {
		t.Errorf("finding %s on %s: severity %s, want %s", id, at, f.Severity, sev)
	}
	if len(f.Evidence) == 0 || f.Fix == "" {
		t.Errorf("finding %s on %s lacks evidence or fix", id, at)
	}
}

func idsAt(rep *Report) []string {
	var out []string
	for _, f := range rep.Findings {
		out = append(out, f.ID+"@"+f.Port+"("+f.Severity.String()+")")
	}
	return out
}

// TestDovecotSecure: ssl = required, no login before TLS, TLS 1.2+: every
// port open, TLS working everywhere, nothing above low.
func TestDovecotSecure(t *testing.T) {
	inst := dovecot.Start(t, dovecot.Options{})
	rep := auditDovecot(t, inst)
	for _, f := range rep.Findings {
		if f.Severity > Low {
			t.Errorf("finding %s on %s (%s) against a secure Dovecot", f.ID, f.Port, f.Severity)
		}
	}
	for _, p := range rep.Ports {
		if !p.Open || p.LoginBeforeTLS || (p.TLS != "starttls" && p.TLS != "implicit") {
			t.Errorf("port %d/%s: open %v, TLS %q, login before TLS %v", p.Port, p.Role, p.Open, p.TLS, p.LoginBeforeTLS)
		}
		if len(p.TLSVersions) == 0 || p.TLSVersions[0] != "TLS 1.2" || p.Certificate == "" {
			t.Errorf("port %d/%s: TLS versions %v, certificate %q", p.Port, p.Role, p.TLSVersions, p.Certificate)
		}
	}
}

// TestDovecotWeak: disable_plaintext_auth = no, ssl = yes and TLS 1.0
// allowed: plaintext POP3 and IMAP login, old TLS on each port.
func TestDovecotWeak(t *testing.T) {
	inst := dovecot.Start(t, dovecot.Options{Config: `
disable_plaintext_auth = no
ssl = yes
ssl_min_protocol = TLSv1
ssl_cipher_list = DEFAULT:@SECLEVEL=0
`})
	rep := auditDovecot(t, inst)
	mustFindAt(t, rep, "pop3.login-plaintext", port(inst.POP3, RolePOP3), High)
	mustFindAt(t, rep, "imap.login-plaintext", port(inst.IMAP, RoleIMAP), High)
	for _, p := range []string{port(inst.POP3, RolePOP3), port(inst.POP3S, RolePOP3S), port(inst.IMAP, RoleIMAP), port(inst.IMAPS, RoleIMAPS)} {
		mustFindAt(t, rep, "tls.old-version", p, Medium)
	}
	if !rep.HasHigh() {
		t.Error("HasHigh false for plaintext logins")
	}
}
