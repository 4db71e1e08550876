package e2e

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/foxcpp/go-mockdns"
)

type quietDNSLog struct{}

func (quietDNSLog) Printf(string, ...any) {}

// TestAuditIdentityAndHTML: `kanmon audit` against kanmon, with every DNS
// question sent to a fixture DNS server on loopback: a malformed MTA-STS
// record, no TLS-RPT record and a revoked DKIM key each give their
// finding (exit 1 for the high one), and --html writes the same findings
// as one self-contained page while --json stays on stdout.
func TestAuditIdentityAndHTML(t *testing.T) {
	t.Parallel()
	dns, err := mockdns.NewServerWithLogger(map[string]mockdns.Zone{
		domain + ".":                       {MX: []net.MX{{Host: hostname + ".", Pref: 10}}, TXT: []string{"v=spf1 mx -all"}},
		"_dmarc." + domain + ".":           {TXT: []string{"v=DMARC1; p=reject"}},
		"_mta-sts." + domain + ".":         {TXT: []string{"v=STSv1; id=not-alnum!"}},
		"s2025._domainkey." + domain + ".": {TXT: []string{"v=DKIM1; k=rsa; p="}},
	}, quietDNSLog{}, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dns.Close() })
	s := startServer(t, options{})
	page := filepath.Join(s.Dir, "audit.html")
	out, code := runKanmon(t, s.Dir, "", "audit", s.MX, "--domain", domain, "--insecure-tls-ok", "--json",
		"--dns-server", dns.LocalAddr().String(), "--dkim-selector", "s2025", "--html", page)
	if code != 1 {
		t.Fatalf("audit exit %d, want 1 (a revoked DKIM key):\n%s", code, out)
	}
	var rep struct {
		Findings []struct{ ID, Severity, Port string } `json:"findings"`
		Notes    []string                              `json:"notes"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &rep); err != nil {
		t.Fatalf("audit --json output: %v\n%s", err, out)
	}
	var host []string
	for _, f := range rep.Findings {
		if f.Port == "" {
			host = append(host, f.ID+"("+f.Severity+")")
		} else if f.Severity == "high" || f.Severity == "critical" {
			t.Errorf("finding %s on %s of severity %s against kanmon", f.ID, f.Port, f.Severity)
		}
	}
	slices.Sort(host)
	if want := []string{"dns.dkim-revoked(high)", "dns.mta-sts-invalid(medium)", "dns.tlsrpt-missing(low)"}; !slices.Equal(host, want) {
		t.Errorf("host findings %v, want %v\n%s", host, want, out)
	}
	if !strings.Contains(strings.Join(rep.Notes, "\n"), "reverse DNS of 127.0.0.1 not checked") {
		t.Errorf("no note on the loopback address's reverse DNS: %q", rep.Notes)
	}

	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatalf("--html wrote no page: %v", err)
	}
	html := string(b)
	if !strings.HasPrefix(html, "<!DOCTYPE html>") || !strings.HasSuffix(strings.TrimSpace(html), "</html>") {
		t.Errorf("page is not one HTML document:\n%s", html)
	}
	for _, bad := range []string{"<script", "<link", "<img", "src=", "href="} {
		if strings.Contains(strings.ToLower(html), bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	if n := strings.Count(html, `<div class="finding `); n != len(rep.Findings) {
		t.Errorf("page shows %d findings, JSON has %d", n, len(rep.Findings))
	}
	for _, f := range rep.Findings {
		if !strings.Contains(html, `<span class="id">`+f.ID+`</span>`) {
			t.Errorf("page lacks finding %s", f.ID)
		}
	}
	if strings.Count(html, "<details>") != strings.Count(html, "</details>") || !strings.Contains(html, "<h2>Host and domain (DNS)</h2>") {
		t.Error("page structure: unbalanced <details> or no host section")
	}
}
