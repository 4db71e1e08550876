package e2e

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/foxcpp/go-mockdns"
)

// zoneFromDNSRecords reads the zone lines `kanmon dns-records` printed
// into fixture zones: what the operator would paste is what is served.
func zoneFromDNSRecords(t *testing.T, out string) map[string]mockdns.Zone {
	t.Helper()
	zones := map[string]mockdns.Zone{}
	quoted := regexp.MustCompile(`"((?:[^"\\]|\\.)*)"`)
	for _, line := range strings.Split(out, "\n") {
		if line == "" || strings.HasPrefix(line, ";") {
			continue
		}
		f := strings.SplitN(line, "\t", 5)
		if len(f) != 5 {
			t.Fatalf("dns-records printed a line that is not NAME TTL IN TYPE VALUE: %q", line)
		}
		name, typ, val := strings.ToLower(f[0]), f[3], f[4]
		z := zones[name]
		switch typ {
		case "MX":
			pref, host, _ := strings.Cut(val, " ")
			p, _ := strconv.Atoi(pref)
			z.MX = append(z.MX, net.MX{Host: host, Pref: uint16(p)})
		case "TXT":
			var txt strings.Builder
			for _, m := range quoted.FindAllString(val, -1) {
				s, err := strconv.Unquote(m)
				if err != nil {
					t.Fatalf("TXT part %s: %v", m, err)
				}
				txt.WriteString(s)
			}
			z.TXT = append(z.TXT, txt.String())
		default:
			t.Fatalf("unexpected record type %q in %q", typ, line)
		}
		zones[name] = z
	}
	return zones
}

// dkimpyVerify is a small program for python3-dkim (dkimpy, an independent
// implementation): it verifies every DKIM-Signature of the message on
// stdin, asking the fixture DNS server (argv[1], port argv[2]) for the
// keys, and prints one "ALGO ok|fail" line per signature.
const dkimpyVerify = `
import sys, dkim, dns.resolver
r = dns.resolver.Resolver(configure=False)
r.nameservers = [sys.argv[1]]
r.port = int(sys.argv[2])
r.lifetime = 5
def txt(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    try:
        a = r.resolve(name, 'TXT')
    except Exception:
        return None
    return b"".join(list(a)[0].strings)
msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg)
n = sum(1 for k, v in d.headers if k.lower() == b'dkim-signature')
for i in range(n):
    try:
        ok = d.verify(idx=i, dnsfunc=txt)
    except dkim.ValidationError:
        ok = False
    print(d.signature_fields.get(b'a', b'?').decode(), 'ok' if ok else 'fail')
`

// dkimpy runs the verifier with the python that has the dkim module:
// the one dkimverify (python3-dkim) was installed for.
func dkimpy(t *testing.T, dnsAddr string, msg []byte) string {
	t.Helper()
	bin := needTool(t, "dkimverify")
	raw, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(raw), "\n")
	interp := strings.Fields(strings.TrimPrefix(first, "#!"))
	host, port, _ := net.SplitHostPort(dnsAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append(interp[1:], "-c", dkimpyVerify, host, port)
	cmd := exec.CommandContext(ctx, interp[0], args...)
	cmd.Stdin = bytes.NewReader(msg)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dkimpy: %v\n%s", err, out)
	}
	return string(out)
}

// TestDKIMSignedMailVerifiesIndependently: alice sends through
// submission; the message leaves with an ed25519-sha256 and an
// rsa-sha256 signature, and python3-dkim verifies both against a fixture
// DNS server serving exactly the records `kanmon dns-records` printed.
// The same message with one body byte changed fails, so the verifier
// really checked.
func TestDKIMSignedMailVerifiesIndependently(t *testing.T) {
	t.Parallel()
	needTool(t, "swaks")
	needTool(t, "dkimverify")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan string, 4)
	sinkSMTP(t, ln, got)
	s := startServer(t, options{set: map[string]string{
		"delivery.routes": `{ "remote.test" = "` + ln.Addr().String() + `" }`,
	}})
	zones := zoneFromDNSRecords(t, mustKanmon(t, s.Dir, "", "dns-records", domain, "--config", s.Config))
	dnsSrv, err := mockdns.NewServerWithLogger(zones, &dnsTrace{}, false)
	if err != nil {
		t.Fatalf("fixture DNS server: %v", err)
	}
	t.Cleanup(func() { dnsSrv.Close() })

	msgID := newMessageID(t)
	out, code := swaks(t, "--server", s.Submission, "-tls", "--auth", "PLAIN", "--auth-user", alice, "--auth-password", alicePassword,
		"--from", alice, "--to", "friend@remote.test", "--header", "Message-Id: "+msgID,
		"--header", "Subject: signed", "--body", "Hello from kanmon.\r\n\r\n  spaced   line  \r\n")
	if code != 0 {
		t.Fatalf("swaks exit %d:\n%s", code, out)
	}
	var m string
	select {
	case m = <-got:
	case <-time.After(30 * time.Second):
		t.Fatalf("the message never arrived\n%s", s.LogTail(30))
	}
	if !strings.HasPrefix(m, "DKIM-Signature:") {
		t.Fatalf("the message does not start with a DKIM-Signature:\n%s", m)
	}
	res := dkimpy(t, dnsSrv.LocalAddr().String(), []byte(m))
	for _, want := range []string{"ed25519-sha256 ok", "rsa-sha256 ok"} {
		if !strings.Contains(res, want) {
			t.Errorf("python3-dkim: want %q, got:\n%s\nmessage:\n%s", want, res, m)
		}
	}
	tampered := strings.Replace(m, "Hello from kanmon.", "Hello from kanmoN.", 1)
	if res := dkimpy(t, dnsSrv.LocalAddr().String(), []byte(tampered)); strings.Contains(res, " ok") {
		t.Errorf("a changed body still verifies:\n%s", res)
	}
	s.WaitLog(t, "dkim signed line", func(l logLine) bool {
		return l.str("msg") == "dkim" && l.str("op") == "signed" && l.str("domain") == domain && l.str("queue_id") != ""
	})
}

// TestDKIMNotForStrangers: mail from outside (MX, no AUTH) is never
// signed, even when its envelope sender claims our own domain (here let
// through by turning reject_forged_local_sender off): only who the
// client is grants a signature, never what it says.
func TestDKIMNotForStrangers(t *testing.T) {
	t.Parallel()
	needTool(t, "swaks")
	s := startServer(t, options{set: map[string]string{"policy.reject_forged_local_sender": "false"}})
	msgID := newMessageID(t)
	out, code := swaks(t, "--server", s.MX, "--from", "ceo@"+domain, "--to", alice, "--header", "Message-Id: "+msgID)
	if code != 0 {
		t.Fatalf("swaks exit %d:\n%s", code, out)
	}
	raw := waitMaildir(t, s.Maildir(alice), msgID)
	if !strings.Contains(raw, "Message-Id: "+msgID) {
		t.Fatalf("not the message sent:\n%s", raw)
	}
	if strings.Contains(raw, "DKIM-Signature:") {
		t.Errorf("inbound mail from a stranger was signed:\n%s", raw)
	}
}

// TestDNSRecordsCheck: `kanmon dns-records --check` asks the configured
// resolver and says, per record, present / missing / different (showing
// the live value next to the expected one), and exits 1 unless all are
// present.
func TestDNSRecordsCheck(t *testing.T) {
	t.Parallel()
	s := setupServer(t, options{})
	printed := mustKanmon(t, s.Dir, "", "dns-records", domain, "--config", s.Config)
	zones := zoneFromDNSRecords(t, printed)
	var dkimNames []string
	for name := range zones {
		if strings.HasSuffix(name, "._domainkey."+domain+".") {
			dkimNames = append(dkimNames, name)
		}
	}
	if len(dkimNames) != 2 {
		t.Fatalf("dns-records printed %d DKIM records, want 2 (ed25519 and rsa):\n%s", len(dkimNames), printed)
	}
	// Break the fixture: a different SPF, one DKIM key and the MTA-STS
	// record missing, a foreign TLS-RPT address.
	apex := zones[domain+"."]
	apex.TXT = []string{"v=spf1 a ~all", "google-site-verification=x"}
	zones[domain+"."] = apex
	delete(zones, dkimNames[0])
	delete(zones, "_mta-sts."+domain+".")
	zones["_smtp._tls."+domain+"."] = mockdns.Zone{TXT: []string{"v=TLSRPTv1; rua=mailto:other@remote.test"}}
	dnsSrv, err := mockdns.NewServerWithLogger(zones, &dnsTrace{}, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dnsSrv.Close() })
	editConfig(t, s.Config, map[string]string{"dns.server": `"` + dnsSrv.LocalAddr().String() + `"`})

	out, code := runKanmon(t, s.Dir, "", "dns-records", domain, "--config", s.Config, "--check")
	if code != 1 {
		t.Fatalf("--check with broken records: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^present +MX +` + regexp.QuoteMeta(domain) + `\.\s.*MX\s+10 ` + regexp.QuoteMeta(hostname) + `\.$`),
		regexp.MustCompile(`(?m)^different +SPF .*"v=spf1 mx -all"\n +live: .*"v=spf1 a ~all"$`),
		regexp.MustCompile(`(?m)^missing +DKIM +` + regexp.QuoteMeta(strings.TrimSuffix(dkimNames[0], "."))),
		regexp.MustCompile(`(?m)^present +DKIM +` + regexp.QuoteMeta(strings.TrimSuffix(dkimNames[1], "."))),
		regexp.MustCompile(`(?m)^present +DMARC +_dmarc\.` + regexp.QuoteMeta(domain) + `.*p=reject; rua=mailto:postmaster@`),
		regexp.MustCompile(`(?m)^missing +MTA-STS `),
		regexp.MustCompile(`(?m)^different +TLS-RPT .*\n +live: .*other@remote\.test`),
		regexp.MustCompile(`4 of 7 records are not as expected`),
	} {
		if !want.MatchString(out) {
			t.Errorf("--check output does not match %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "google-site-verification") {
		t.Errorf("an unrelated TXT record was shown as an SPF value:\n%s", out)
	}

	// With the records as printed, everything is present and the exit 0.
	good := zoneFromDNSRecords(t, printed)
	dnsGood, err := mockdns.NewServerWithLogger(good, &dnsTrace{}, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dnsGood.Close() })
	editConfig(t, s.Config, map[string]string{"dns.server": `"` + dnsGood.LocalAddr().String() + `"`})
	out, code = runKanmon(t, s.Dir, "", "dns-records", domain, "--config", s.Config, "--check")
	if code != 0 || strings.Count(out, "present ") != 7 {
		t.Fatalf("--check with the printed records: exit %d\n%s", code, out)
	}
}
