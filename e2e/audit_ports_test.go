package e2e

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
)

// TestAuditEveryListener: `kanmon audit` against kanmon with every
// listener on (MX, submission, SMTPS, POP3, POP3S) audits each port in
// its role and finds nothing above low.
func TestAuditEveryListener(t *testing.T) {
	t.Parallel()
	p := startPOP3Server(t, nil)
	port := func(a string) string { _, pt, _ := net.SplitHostPort(a); return pt }
	ports := strings.Join([]string{
		port(p.MX) + "/smtp", port(p.Submission) + "/submission", port(p.SMTPS) + "/smtps",
		port(p.POP3) + "/pop3", port(p.POP3S) + "/pop3s",
	}, ",")
	out, code := runKanmon(t, p.Dir, "", "audit", "127.0.0.1", "--ports", ports, "--domain", domain,
		"--known-user", "alice", "--tls-name", hostname, "--no-dns", "--insecure-tls-ok", "--json")
	if code != 0 {
		t.Fatalf("audit exit %d, want 0:\n%s", code, out)
	}
	var rep struct {
		Findings []struct {
			ID, Severity, Port string
		} `json:"findings"`
		Ports []struct {
			Port            int
			Role            string
			Open            bool
			TLS             string
			TLSVersions     []string `json:"tls_versions"`
			LoginBeforeTLS  bool     `json:"login_before_tls"`
			MailWithoutAuth string   `json:"mail_without_auth"`
		} `json:"ports"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &rep); err != nil {
		t.Fatalf("audit --json output: %v\n%s", err, out)
	}
	for _, f := range rep.Findings {
		if f.Severity != "info" && f.Severity != "low" {
			t.Errorf("finding %s on %s of severity %s against kanmon", f.ID, f.Port, f.Severity)
		}
	}
	if len(rep.Ports) != 5 {
		t.Fatalf("%d ports in the report, want 5:\n%s", len(rep.Ports), out)
	}
	for _, pr := range rep.Ports {
		if !pr.Open || pr.LoginBeforeTLS || len(pr.TLSVersions) == 0 || pr.TLSVersions[0] != "TLS 1.2" {
			t.Errorf("port %d/%s: open %v, TLS %s %v, login before TLS %v", pr.Port, pr.Role, pr.Open, pr.TLS, pr.TLSVersions, pr.LoginBeforeTLS)
		}
		if (pr.Role == "submission" || pr.Role == "smtps") && pr.MailWithoutAuth != "refused" {
			t.Errorf("port %d/%s: mail without AUTH %q, want refused", pr.Port, pr.Role, pr.MailWithoutAuth)
		}
	}
}
