package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"io"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/foxcpp/go-mockdns"

	"kanmon/internal/dnsresolve"
)

// identityZones is a well-kept mail host: mx.id.test at 192.0.2.10 and
// 2001:db8::25, each with a PTR naming it, MTA-STS, TLS-RPT and an Ed25519
// DKIM key for selector "sel".
func identityZones(t *testing.T) map[string]mockdns.Zone {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]mockdns.Zone{
		"mx.id.test.":                    {A: []string{"192.0.2.10"}, AAAA: []string{"2001:db8::25"}},
		"10.2.0.192.in-addr.arpa.":       {PTR: []string{"mx.id.test."}},
		ip6arpa("2001:db8::25"):          {PTR: []string{"mx.id.test."}},
		"_mta-sts.id.test.":              {TXT: []string{"v=STSv1; id=20250101T000000"}},
		"_smtp._tls.id.test.":            {TXT: []string{"v=TLSRPTv1; rua=mailto:tlsrpt@id.test,https://report.id.test/tls"}},
		"sel._domainkey.id.test.":        {TXT: []string{"v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)}},
		"elsewhere.id.test.":             {A: []string{"198.51.100.99"}},
		"192-0-2-10.pool.isp.test.":      {A: []string{"192.0.2.10"}},
		"c000020a.isp.test.":             {A: []string{"192.0.2.10"}},
		"adsl-line7.customers.isp.test.": {A: []string{"192.0.2.10"}},
		"mail.dynamics-corp.test.":       {A: []string{"192.0.2.10"}},
	}
}

func ip6arpa(ip string) string {
	return dnsresolve.ReverseName(mustAddr(ip)) + ".ip6.arpa."
}

// rsaKeyRecord returns a DKIM key record for a fresh RSA key of bits.
func rsaKeyRecord(t *testing.T, bits int) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
}

// auditIdentity runs only the identity checks for target (resolved
// through a loopback DNS server serving zones) and returns the finding
// ids, sorted, and the report.
func auditIdentity(t *testing.T, zones map[string]mockdns.Zone, target, selector string) ([]string, *Report) {
	t.Helper()
	srv, err := mockdns.NewServerWithLogger(zones, discardLogger{}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, err := newAuditor(ctx, Options{
		Target: target, Domain: "id.test", DKIMSelector: selector,
		Resolver: dnsresolve.New(srv.LocalAddr().String()),
	})
	if err != nil {
		t.Fatal(err)
	}
	a.checkIdentity(ctx)
	a.report.sort()
	got := []string{}
	for _, f := range a.report.Findings {
		if f.Title == "" || f.Fix == "" || len(f.Evidence) == 0 {
			t.Errorf("finding %s lacks title, evidence or fix: %+v", f.ID, f)
		}
		got = append(got, f.ID+"("+f.Severity.String()+")")
	}
	slices.Sort(got)
	return got, a.report
}

// TestIdentity gives each record of the server's DNS identity present,
// missing and wrong, and asserts exactly the findings each produces.
func TestIdentity(t *testing.T) {
	rsa1024 := rsaKeyRecord(t, 1024)
	cases := []struct {
		name   string
		change map[string]mockdns.Zone // replaces zones; a zero Zone deletes the name
		want   []string
	}{
		{"all good", nil, []string{}},
		{"no PTR for the IPv4 address", map[string]mockdns.Zone{"10.2.0.192.in-addr.arpa.": {}}, []string{"dns.ptr-missing(high)"}},
		{"no PTR for the IPv6 address", map[string]mockdns.Zone{ip6arpa("2001:db8::25"): {}}, []string{"dns.ptr-missing(high)"}},
		{"PTR name has no address", map[string]mockdns.Zone{"10.2.0.192.in-addr.arpa.": {PTR: []string{"gone.id.test."}}}, []string{"dns.fcrdns-mismatch(high)"}},
		{"PTR name resolves elsewhere", map[string]mockdns.Zone{"10.2.0.192.in-addr.arpa.": {PTR: []string{"elsewhere.id.test."}}}, []string{"dns.fcrdns-mismatch(high)"}},
		{"PTR embeds the address", map[string]mockdns.Zone{"10.2.0.192.in-addr.arpa.": {PTR: []string{"192-0-2-10.pool.isp.test."}}}, []string{"dns.ptr-generic(medium)"}},
		{"PTR embeds the address in hex", map[string]mockdns.Zone{"10.2.0.192.in-addr.arpa.": {PTR: []string{"c000020a.isp.test."}}}, []string{"dns.ptr-generic(medium)"}},
		{"PTR names an access line", map[string]mockdns.Zone{"10.2.0.192.in-addr.arpa.": {PTR: []string{"adsl-line7.customers.isp.test."}}}, []string{"dns.ptr-generic(medium)"}},
		{"a word merely containing dyn is fine", map[string]mockdns.Zone{"10.2.0.192.in-addr.arpa.": {PTR: []string{"mail.dynamics-corp.test."}}}, []string{}},
		{"no MTA-STS", map[string]mockdns.Zone{"_mta-sts.id.test.": {}}, []string{"dns.mta-sts-missing(low)"}},
		{"MTA-STS TXT without v=STSv1", map[string]mockdns.Zone{"_mta-sts.id.test.": {TXT: []string{"id=1"}}}, []string{"dns.mta-sts-missing(low)"}},
		{"MTA-STS without id", map[string]mockdns.Zone{"_mta-sts.id.test.": {TXT: []string{"v=STSv1;"}}}, []string{"dns.mta-sts-invalid(medium)"}},
		{"MTA-STS id with a dash", map[string]mockdns.Zone{"_mta-sts.id.test.": {TXT: []string{"v=STSv1; id=2025-01-01"}}}, []string{"dns.mta-sts-invalid(medium)"}},
		{"MTA-STS version in lower case", map[string]mockdns.Zone{"_mta-sts.id.test.": {TXT: []string{"v=stsv1; id=1"}}}, []string{"dns.mta-sts-invalid(medium)"}},
		{"two MTA-STS records", map[string]mockdns.Zone{"_mta-sts.id.test.": {TXT: []string{"v=STSv1; id=1", "v=STSv1; id=2"}}}, []string{"dns.mta-sts-multiple(medium)"}},
		{"no TLS-RPT", map[string]mockdns.Zone{"_smtp._tls.id.test.": {}}, []string{"dns.tlsrpt-missing(low)"}},
		{"TLS-RPT without rua", map[string]mockdns.Zone{"_smtp._tls.id.test.": {TXT: []string{"v=TLSRPTv1"}}}, []string{"dns.tlsrpt-invalid(low)"}},
		{"TLS-RPT with a bad scheme", map[string]mockdns.Zone{"_smtp._tls.id.test.": {TXT: []string{"v=TLSRPTv1; rua=tlsrpt@id.test"}}}, []string{"dns.tlsrpt-invalid(low)"}},
		{"two TLS-RPT records", map[string]mockdns.Zone{"_smtp._tls.id.test.": {TXT: []string{"v=TLSRPTv1; rua=mailto:a@id.test", "v=TLSRPTv1; rua=mailto:b@id.test"}}}, []string{"dns.tlsrpt-multiple(low)"}},
		{"no DKIM key", map[string]mockdns.Zone{"sel._domainkey.id.test.": {}}, []string{"dns.dkim-missing(high)"}},
		{"DKIM key revoked", map[string]mockdns.Zone{"sel._domainkey.id.test.": {TXT: []string{"v=DKIM1; p="}}}, []string{"dns.dkim-revoked(high)"}},
		{"DKIM key not base64", map[string]mockdns.Zone{"sel._domainkey.id.test.": {TXT: []string{"v=DKIM1; k=rsa; p=not*base64"}}}, []string{"dns.dkim-invalid(high)"}},
		{"DKIM record without p=", map[string]mockdns.Zone{"sel._domainkey.id.test.": {TXT: []string{"v=DKIM1; k=rsa"}}}, []string{"dns.dkim-invalid(high)"}},
		{"DKIM ed25519 key of the wrong size", map[string]mockdns.Zone{"sel._domainkey.id.test.": {TXT: []string{"v=DKIM1; k=ed25519; p=AAAA"}}}, []string{"dns.dkim-invalid(high)"}},
		{"DKIM RSA 1024", map[string]mockdns.Zone{"sel._domainkey.id.test.": {TXT: []string{rsa1024}}}, []string{"dns.dkim-weak-key(low)"}},
		{"DKIM in test mode", map[string]mockdns.Zone{"sel._domainkey.id.test.": {TXT: []string{"v=DKIM1; k=ed25519; t=y; p=" + base64.StdEncoding.EncodeToString(make([]byte, 32))}}}, []string{"dns.dkim-testing(low)"}},
		{"two DKIM records", map[string]mockdns.Zone{"sel._domainkey.id.test.": {TXT: []string{rsa1024, rsa1024}}}, []string{"dns.dkim-multiple(high)"}},
		{"nothing at all", map[string]mockdns.Zone{
			"10.2.0.192.in-addr.arpa.": {}, ip6arpa("2001:db8::25"): {}, "_mta-sts.id.test.": {},
			"_smtp._tls.id.test.": {}, "sel._domainkey.id.test.": {},
		}, []string{"dns.dkim-missing(high)", "dns.mta-sts-missing(low)", "dns.ptr-missing(high)", "dns.ptr-missing(high)", "dns.tlsrpt-missing(low)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			zones := identityZones(t)
			for name, z := range tc.change {
				if z.A == nil && z.TXT == nil && z.PTR == nil {
					delete(zones, name)
				} else {
					zones[name] = z
				}
			}
			got, rep := auditIdentity(t, zones, "mx.id.test", "sel")
			if !slices.Equal(got, tc.want) {
				var b bytes.Buffer
				_ = rep.WriteText(&b)
				t.Errorf("findings %v, want %v\n%s", got, tc.want, b.String())
			}
		})
	}
}

// TestIdentityEvidence checks what a reader of the report sees: the PTR
// answer and the forward answer that failed to confirm it.
func TestIdentityEvidence(t *testing.T) {
	zones := identityZones(t)
	zones["10.2.0.192.in-addr.arpa."] = mockdns.Zone{PTR: []string{"elsewhere.id.test."}}
	_, rep := auditIdentity(t, zones, "mx.id.test", "")
	f := rep.Find("dns.fcrdns-mismatch")
	if f == nil {
		t.Fatalf("no dns.fcrdns-mismatch: %v", ids(rep))
	}
	want := []string{"DNS: PTR 192.0.2.10: elsewhere.id.test.", "DNS: A/AAAA elsewhere.id.test.: [198.51.100.99]"}
	if !slices.Equal(f.Evidence, want) {
		t.Errorf("evidence %q, want %q", f.Evidence, want)
	}
}

// TestIdentityWithoutSelectorAsksNoDKIM: the DKIM key is only looked up
// when a selector is given, and loopback addresses are noted, not judged.
func TestIdentityWithoutSelectorAsksNoDKIM(t *testing.T) {
	m := &dnsresolve.Mock{IP: map[string][]netip.Addr{"mx.id.test": {mustAddr("127.0.0.1"), mustAddr("10.0.0.25")}}}
	ctx := t.Context()
	a, err := newAuditor(ctx, Options{Target: "mx.id.test", Domain: "id.test", Resolver: m})
	if err != nil {
		t.Fatal(err)
	}
	a.checkIdentity(ctx)
	for _, q := range m.Queries() {
		if strings.Contains(q, "_domainkey") || strings.HasPrefix(q, "PTR") {
			t.Errorf("unexpected question %q", q)
		}
	}
	if n := len(a.report.Notes); n != 2 {
		t.Errorf("notes %q, want one per address not public", a.report.Notes)
	}
	if got := slices.Sorted(maps.Keys(findingSet(a.report))); !slices.Equal(got, []string{"dns.mta-sts-missing", "dns.tlsrpt-missing"}) {
		t.Errorf("findings %v", got)
	}
}

// TestMainDKIMSelector proves --dkim-selector reaches the DKIM check
// through a real DNS server on loopback.
func TestMainDKIMSelector(t *testing.T) {
	srv, err := mockdns.NewServerWithLogger(map[string]mockdns.Zone{
		"local.test.": {MX: []net.MX{{Host: "mx.local.test.", Pref: 10}}, TXT: []string{"v=spf1 mx -all"}},
	}, discardLogger{}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	closed := (&fakeSMTP{Rcpt: closedRcpt}).start(t)
	var stdout, stderr bytes.Buffer
	got := Main([]string{closed, "--domain", "local.test", "--dns-server", srv.LocalAddr().String(), "--dkim-selector", "mail2025"}, &stdout, &stderr)
	if got != ExitHigh || !strings.Contains(stdout.String(), "[HIGH] dns.dkim-missing: No DKIM key at mail2025._domainkey.local.test") {
		t.Errorf("exit %d, want %d with dns.dkim-missing\n%s\n%s", got, ExitHigh, stdout.String(), stderr.String())
	}
	if got := Main([]string{closed, "--domain", "local.test", "--no-dns", "--dkim-selector", "bad selector"}, io.Discard, &stderr); got != ExitError {
		t.Errorf("a selector with a space: exit %d, want %d", got, ExitError)
	}
}

func findingSet(r *Report) map[string]bool {
	m := map[string]bool{}
	for _, f := range r.Findings {
		m[f.ID] = true
	}
	return m
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
