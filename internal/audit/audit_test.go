package audit

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"kanmon/internal/dnsresolve"
)

// goodDNS answers for local.test as a well-kept domain.
func goodDNS() *dnsresolve.Mock {
	return &dnsresolve.Mock{
		MX: map[string][]*net.MX{"local.test": {{Host: "mx.local.test.", Pref: 10}}},
		TXT: map[string][]string{
			"local.test":            {"v=spf1 mx -all"},
			"_dmarc.local.test":     {"v=DMARC1; p=reject; rua=mailto:dmarc@local.test"},
			"_mta-sts.local.test":   {"v=STSv1; id=20250101"},
			"_smtp._tls.local.test": {"v=TLSRPTv1; rua=mailto:tlsrpt@local.test"},
		},
	}
}

// run audits addr as local.test with test-friendly defaults.
func run(t *testing.T, addr string, tweak func(*Options)) *Report {
	t.Helper()
	opts := Options{
		Target:   addr,
		Domain:   "local.test",
		Timeout:  5 * time.Second,
		Resolver: goodDNS(),
	}
	if tweak != nil {
		tweak(&opts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := Run(ctx, opts)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return rep
}

func ids(rep *Report) []string {
	var out []string
	for _, f := range rep.Findings {
		out = append(out, f.ID+"("+f.Severity.String()+")")
	}
	return out
}

func dump(rep *Report) string {
	var b bytes.Buffer
	_ = rep.WriteText(&b)
	return b.String()
}

func mustFind(t *testing.T, rep *Report, id string, sev Severity) *Finding {
	t.Helper()
	f := rep.Find(id)
	if f == nil {
		t.Fatalf("finding %s missing; got %v\n%s", id, ids(rep), dump(rep))
	}
	if f.Severity != sev {
		t.Errorf("finding %s has severity %s, want %s", id, f.Severity, sev)
	}
	if len(f.Evidence) == 0 || f.Fix == "" || f.Title == "" {
		t.Errorf("finding %s lacks evidence, title or fix: %+v", id, f)
	}
	return f
}

func mustNotFind(t *testing.T, rep *Report, prefix string) {
	t.Helper()
	for _, f := range rep.Findings {
		if strings.HasPrefix(f.ID, prefix) {
			t.Errorf("unexpected finding %s (%s)\n%s", f.ID, f.Severity, dump(rep))
		}
	}
}

// noDataSent checks the law of the relay battery: no DATA without
// ConfirmTo.
func noDataSent(t *testing.T, f *fakeSMTP) {
	t.Helper()
	if txns := f.dataTransactions(); len(txns) > 0 {
		t.Errorf("the audit sent DATA without --confirm-to: %v", txns)
	}
	for _, c := range f.commands() {
		if strings.EqualFold(c, "DATA") {
			t.Errorf("the audit sent DATA without --confirm-to")
		}
	}
}

func TestClosedServerHasNoFindings(t *testing.T) {
	ca := newTestCA(t)
	f := &fakeSMTP{
		Ext:         []string{"PIPELINING", "SIZE 10240000", "STARTTLS", "8BITMIME"},
		ExtTLS:      []string{"PIPELINING", "AUTH PLAIN"},
		TLS:         ca.serverTLS(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), "mx.local.test", "127.0.0.1"),
		Rcpt:        closedRcpt,
		RejectEarly: true,
		GreetDelay:  50 * time.Millisecond,
	}
	addr := f.start(t)
	rep := run(t, addr, func(o *Options) { o.RootCAs = ca.pool })
	if len(rep.Findings) != 0 {
		t.Errorf("closed server: findings %v\n%s", ids(rep), dump(rep))
	}
	if rep.HasHigh() {
		t.Error("HasHigh on a closed server")
	}
	noDataSent(t, f)
	// Every relay variant was asked: RCPT lines from the battery.
	n := 0
	for _, c := range f.commands() {
		if strings.HasPrefix(c, "RCPT TO:") && strings.Contains(c, "kanmon-relay-test") {
			n++
		}
	}
	if n < 20 {
		t.Errorf("only %d relay variants were asked, want at least 20", n)
	}
}

func TestOpenRelayIsCritical(t *testing.T) {
	f := &fakeSMTP{Rcpt: func(string) string { return "250 2.1.5 Ok" }}
	addr := f.start(t)
	rep := run(t, addr, nil)
	variants := relayVariants("local.test", "u", "example.com", "[127.0.0.1]", "a@example.org", "h")
	critical := 0
	for _, v := range variants {
		f := rep.Find("relay." + v.id)
		if v.plainLocal {
			if f != nil {
				t.Errorf("variant %s reported although backscatter.accept-unknown covers it", v.id)
			}
			continue
		}
		if f == nil {
			t.Errorf("variant %s accepted but not reported", v.id)
			continue
		}
		if !v.localForm {
			critical++
			if f.Severity != Critical {
				t.Errorf("variant %s: severity %s, want critical", v.id, f.Severity)
			}
		}
	}
	if critical < 15 {
		t.Errorf("only %d critical variants", critical)
	}
	if !rep.HasHigh() {
		t.Error("HasHigh false for an open relay")
	}
	// The server accepts unknown local users too: local-form variants are
	// accept-then-bounce risks (medium), not proven relays.
	mustFind(t, rep, "relay.percent-hack", Medium)
	mustFind(t, rep, "backscatter.accept-unknown", Medium)
	plain := mustFind(t, rep, "relay.plain", Critical)
	want := []string{"C: EHLO kanmon-audit.invalid", "C: MAIL FROM:<kanmon-audit@example.org>", "S: 250 2.1.0 Ok",
		"C: RCPT TO:<kanmon-relay-test@example.com>", "S: 250 2.1.5 Ok"}
	if strings.Join(plain.Evidence, "\n") != strings.Join(want, "\n") {
		t.Errorf("relay.plain evidence:\n%s\nwant:\n%s", strings.Join(plain.Evidence, "\n"), strings.Join(want, "\n"))
	}
	helo := mustFind(t, rep, "relay.local-sender-helo", Critical)
	if helo.Evidence[0] != "C: EHLO local.test" {
		t.Errorf("local-sender-helo evidence starts %q", helo.Evidence[0])
	}
	noDataSent(t, f)
}

func TestPercentHackLikelyRelayed(t *testing.T) {
	// Rejects unknown local users and plain foreign recipients, but takes
	// the percent hack: it must be routing it away.
	f := &fakeSMTP{Rcpt: func(arg string) string {
		if strings.Contains(arg, "%") {
			return "250 2.1.5 Ok"
		}
		return closedRcpt(arg)
	}}
	addr := f.start(t)
	rep := run(t, addr, nil)
	mustFind(t, rep, "relay.percent-hack", High)
	mustFind(t, rep, "relay.percent-hack-localhost", High)
	mustNotFind(t, rep, "relay.plain")
	mustNotFind(t, rep, "backscatter")
	if !rep.HasHigh() {
		t.Error("HasHigh false")
	}
	noDataSent(t, f)
}

func TestAccountDisclosure(t *testing.T) {
	known := func(arg string) string {
		if strings.TrimSpace(arg) == "postmaster" {
			return "250 2.1.5 Postmaster <postmaster@local.test>"
		}
		return "550 5.1.1 No such user here"
	}
	f := &fakeSMTP{Rcpt: closedRcpt, Vrfy: known, Expn: known}
	rep := run(t, f.start(t), nil)
	v := mustFind(t, rep, "disclosure.vrfy", Medium)
	// The made-up name's answer, then the known name's.
	if len(v.Evidence) != 4 || !strings.HasPrefix(v.Evidence[0], "C: VRFY kanmon-audit-nouser-") ||
		!strings.HasPrefix(v.Evidence[1], "S: 550") || v.Evidence[2] != "C: VRFY postmaster" {
		t.Errorf("VRFY evidence %q", v.Evidence)
	}
	mustFind(t, rep, "disclosure.expn", Medium)
	mustNotFind(t, rep, "backscatter")

	// 252 for everyone discloses nothing; RCPT answers may differ.
	f = &fakeSMTP{Rcpt: closedRcpt}
	rep = run(t, f.start(t), nil)
	mustNotFind(t, rep, "disclosure")
}

// TestVRFYFullAddressOnlyDisclosure: a server that refuses every bare
// name with 504 but tells accounts apart once the domain is given (Postfix
// with disable_vrfy_command = no) discloses its accounts.
func TestVRFYFullAddressOnlyDisclosure(t *testing.T) {
	f := &fakeSMTP{Rcpt: closedRcpt, Vrfy: func(arg string) string {
		arg = strings.ToLower(strings.TrimSpace(arg))
		switch {
		case !strings.Contains(arg, "@"):
			return "504 5.5.2 <" + arg + ">: Recipient address rejected: need fully-qualified address"
		case arg == "root@local.test":
			return "252 2.0.0 " + arg
		}
		return "550 5.1.1 <" + arg + ">: Recipient address rejected: User unknown in local recipient table"
	}}
	rep := run(t, f.start(t), nil)
	v := mustFind(t, rep, "disclosure.vrfy", Medium)
	ev := strings.Join(v.Evidence, "\n")
	for _, want := range []string{"C: VRFY root@local.test", "S: 252 2.0.0 root@local.test", "@local.test>: Recipient address rejected: User unknown"} {
		if !strings.Contains(ev, want) {
			t.Errorf("evidence lacks %q:\n%s", want, ev)
		}
	}
	mustNotFind(t, rep, "disclosure.vrfy-answers-all")
}

// TestVRFYAnswersEverything: 252 echoing any name, made-up ones included,
// discloses nothing but shows VRFY is on: a separate, lower finding.
func TestVRFYAnswersEverything(t *testing.T) {
	f := &fakeSMTP{Rcpt: closedRcpt, Vrfy: func(arg string) string { return "252 2.0.0 " + strings.TrimSpace(arg) }}
	rep := run(t, f.start(t), nil)
	mustFind(t, rep, "disclosure.vrfy-answers-all", Low)
	if rep.Find("disclosure.vrfy") != nil {
		t.Errorf("disclosure.vrfy reported for a server that answers every name alike")
	}
}

func TestAcceptThenBounce(t *testing.T) {
	f := &fakeSMTP{Rcpt: func(arg string) string {
		local := strings.TrimSuffix(strings.ToLower(arg), "@local.test>")
		if local != strings.ToLower(arg) && !strings.ContainsAny(local[1:], "%!\"@") {
			return "250 2.1.5 Ok" // every local part, existing or not
		}
		return "554 5.7.1 Relay access denied"
	}}
	rep := run(t, f.start(t), nil)
	b := mustFind(t, rep, "backscatter.accept-unknown", Medium)
	if !strings.Contains(strings.Join(b.Evidence, "\n"), "kanmon-audit-nouser-") {
		t.Errorf("evidence lacks the unknown user: %q", b.Evidence)
	}
	mustNotFind(t, rep, "relay.")
	if rep.HasHigh() {
		t.Error("accept-then-bounce alone is not high")
	}
}

func TestAuthBeforeTLS(t *testing.T) {
	f := &fakeSMTP{
		Ext:  []string{"AUTH PLAIN LOGIN", "PIPELINING"},
		Rcpt: closedRcpt,
		Auth: func(string, bool) string { return "334 " },
	}
	rep := run(t, f.start(t), nil)
	mustFind(t, rep, "auth.offered-plaintext", High)
	acc := mustFind(t, rep, "auth.accepted-plaintext", High)
	joined := strings.Join(acc.Evidence, "\n")
	if !strings.Contains(joined, "C: AUTH PLAIN\nS: 334 \nC: *\nS: 501") {
		t.Errorf("AUTH evidence:\n%s", joined)
	}
	mustFind(t, rep, "tls.missing", Medium)
	// No credentials were ever sent: only the mechanism and "*".
	for _, c := range f.commands() {
		if strings.HasPrefix(c, "AUTH") && c != "AUTH PLAIN" {
			t.Errorf("unexpected AUTH line %q", c)
		}
	}

	// Not advertised, but started anyway.
	f = &fakeSMTP{Rcpt: closedRcpt, Auth: func(string, bool) string { return "334 " }}
	rep = run(t, f.start(t), nil)
	mustNotFind(t, rep, "auth.offered")
	mustFind(t, rep, "auth.accepted-plaintext", High)

	// Challenge-response only, refused before TLS.
	f = &fakeSMTP{Ext: []string{"AUTH CRAM-MD5"}, Rcpt: closedRcpt}
	rep = run(t, f.start(t), nil)
	mustFind(t, rep, "auth.offered-plaintext", Medium)
	mustNotFind(t, rep, "auth.accepted")
	if rep.HasHigh() {
		t.Errorf("CRAM-MD5 offered before TLS is not high: %v", ids(rep))
	}
}

func TestTLSFindings(t *testing.T) {
	ca := newTestCA(t)
	now := time.Now()
	for _, tc := range []struct {
		name    string
		cfg     *tls.Config
		tweak   func(*Options)
		want    []string
		notWant []string
	}{
		{"good", ca.serverTLS(t, now.Add(-time.Hour), now.Add(time.Hour), "mx.local.test", "127.0.0.1"),
			func(o *Options) { o.RootCAs = ca.pool }, nil, []string{"tls."}},
		{"expired", ca.serverTLS(t, now.Add(-48*time.Hour), now.Add(-24*time.Hour), "127.0.0.1"),
			func(o *Options) { o.RootCAs = ca.pool }, []string{"tls.cert-expired"}, []string{"tls.cert-untrusted", "tls.cert-name"}},
		{"wrong name", ca.serverTLS(t, now.Add(-time.Hour), now.Add(time.Hour), "other.example"),
			func(o *Options) { o.RootCAs = ca.pool }, []string{"tls.cert-name"}, []string{"tls.cert-untrusted", "tls.cert-expired"}},
		{"named target", ca.serverTLS(t, now.Add(-time.Hour), now.Add(time.Hour), "mx.local.test"),
			func(o *Options) { o.RootCAs = ca.pool; o.TLSServerName = "mx.local.test" }, nil, []string{"tls."}},
		{"untrusted", ca.serverTLS(t, now.Add(-time.Hour), now.Add(time.Hour), "127.0.0.1"),
			nil, []string{"tls.cert-untrusted"}, []string{"tls.cert-name"}},
		{"untrusted but allowed", ca.serverTLS(t, now.Add(-time.Hour), now.Add(time.Hour), "127.0.0.1"),
			func(o *Options) { o.InsecureTLSOK = true }, nil, []string{"tls."}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeSMTP{Ext: []string{"STARTTLS"}, TLS: tc.cfg, Rcpt: closedRcpt}
			rep := run(t, f.start(t), tc.tweak)
			for _, id := range tc.want {
				mustFind(t, rep, id, rep.Find(id).severityOr(Medium))
			}
			for _, id := range tc.notWant {
				mustNotFind(t, rep, id)
			}
		})
	}
}

func (f *Finding) severityOr(s Severity) Severity {
	if f == nil {
		return s
	}
	return f.Severity
}

func TestOldTLSVersion(t *testing.T) {
	ca := newTestCA(t)
	cfg := ca.serverTLS(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), "127.0.0.1")
	cfg.MinVersion = tls.VersionTLS10
	f := &fakeSMTP{Ext: []string{"STARTTLS"}, TLS: cfg, Rcpt: closedRcpt}
	rep := run(t, f.start(t), func(o *Options) { o.RootCAs = ca.pool })
	old := mustFind(t, rep, "tls.old-version", Medium)
	if !strings.Contains(old.Title, "TLS 1.1") {
		t.Errorf("title %q should name TLS 1.1", old.Title)
	}
	mustNotFind(t, rep, "tls.cert")
	mustNotFind(t, rep, "tls.handshake")

	// A server with TLS 1.2 as minimum is not reported.
	cfg2 := cfg.Clone()
	cfg2.MinVersion = tls.VersionTLS12
	f = &fakeSMTP{Ext: []string{"STARTTLS"}, TLS: cfg2, Rcpt: closedRcpt}
	rep = run(t, f.start(t), func(o *Options) { o.RootCAs = ca.pool })
	mustNotFind(t, rep, "tls.")
}

func TestTLSOnlyOldVersions(t *testing.T) {
	ca := newTestCA(t)
	cfg := ca.serverTLS(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), "127.0.0.1")
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	f := &fakeSMTP{Ext: []string{"STARTTLS"}, TLS: cfg, Rcpt: closedRcpt}
	rep := run(t, f.start(t), func(o *Options) { o.RootCAs = ca.pool })
	mustFind(t, rep, "tls.handshake-failed", Medium)
	mustFind(t, rep, "tls.old-version", Medium)
}

func TestBanner(t *testing.T) {
	for banner, want := range map[string]string{
		"220 mx.local.test ESMTP Sendmail 8.9.3/8.9.3; Mon, 1 Mar 1999 10:00:00 +0900":  "banner.version",
		"220 mx.local.test Microsoft ESMTP MAIL Service, Version: 8.5.9600.16384 ready": "banner.version",
		"220 mx.local.test ESMTP Postfix (Debian/GNU)":                                  "banner.software",
		"220 mx.local.test ESMTP Exim 4.96 Mon, 01 Jan 2024 00:00:00 +0000":             "banner.version",
		"220 kanmon.postfix-3.1.2.local.test ESMTP ready [192.0.2.1]":                   "",
		"220 mx.local.test ESMTP": "",
	} {
		f := &fakeSMTP{Banner: banner, Rcpt: closedRcpt}
		rep := run(t, f.start(t), nil)
		if want == "" {
			mustNotFind(t, rep, "banner.")
			continue
		}
		sev := Low
		if want == "banner.software" {
			sev = Info
		}
		b := mustFind(t, rep, want, sev)
		if b.Evidence[0] != "S: "+banner {
			t.Errorf("banner evidence %q", b.Evidence[0])
		}
	}
}

func TestHostileBannerIsEscaped(t *testing.T) {
	f := &fakeSMTP{Banner: "220 mx.local.test ESMTP Postfix \x1b[2J\x1b]0;pwned\x07 3.7.1", Rcpt: closedRcpt}
	rep := run(t, f.start(t), nil)
	b := mustFind(t, rep, "banner.version", Low)
	if strings.ContainsAny(b.Evidence[0], "\x1b\x07") || !strings.Contains(b.Evidence[0], `\x1b[2J`) {
		t.Errorf("control characters not escaped: %q", b.Evidence[0])
	}
}

func TestEarlyTalkerAndPipelining(t *testing.T) {
	f := &fakeSMTP{Rcpt: closedRcpt} // no PIPELINING, greets at once, tolerant
	rep := run(t, f.start(t), nil)
	mustFind(t, rep, "smtp.early-talker", Info)
	mustFind(t, rep, "smtp.pipelining", Info)

	f = &fakeSMTP{Rcpt: closedRcpt, RejectEarly: true, GreetDelay: 50 * time.Millisecond, Pipeline: true}
	rep = run(t, f.start(t), nil)
	mustNotFind(t, rep, "smtp.")
}

func TestHELOFallback(t *testing.T) {
	f := &fakeSMTP{Rcpt: func(string) string { return "250 Ok" }, NoEHLO: true}
	rep := run(t, f.start(t), nil)
	p := mustFind(t, rep, "relay.plain", Critical)
	if p.Evidence[0] != "C: HELO kanmon-audit.invalid" {
		t.Errorf("evidence starts %q", p.Evidence[0])
	}
}

func TestReconnectsWhenServerCloses(t *testing.T) {
	// Closes after two errors: the battery must still test every variant.
	f := &fakeSMTP{Rcpt: closedRcpt, CloseAfterErrors: 2}
	rep := run(t, f.start(t), nil)
	for _, n := range rep.Notes {
		if strings.Contains(n, "not tested") {
			t.Errorf("note %q", n)
		}
	}
	n := 0
	for _, c := range f.commands() {
		if strings.HasPrefix(c, "RCPT TO:") && strings.Contains(c, "kanmon-relay-test") {
			n++
		}
	}
	want := len(relayVariants("local.test", "u", "example.com", "[127.0.0.1]", "a@example.org", "h"))
	if n != want {
		t.Errorf("%d relay RCPTs asked, want %d (one per variant)", n, want)
	}
	if f.connections() < want/2 {
		t.Errorf("only %d connections: the audit did not reconnect", f.connections())
	}
	mustNotFind(t, rep, "relay.")
	mustNotFind(t, rep, "backscatter.")
}

func TestTemporaryRepliesAreNotes(t *testing.T) {
	f := &fakeSMTP{Rcpt: func(arg string) string {
		if strings.Contains(arg, "kanmon-relay-test") {
			return "450 4.7.1 greylisted, try later"
		}
		return closedRcpt(arg)
	}}
	rep := run(t, f.start(t), nil)
	mustNotFind(t, rep, "relay.")
	found := false
	for _, n := range rep.Notes {
		found = found || strings.Contains(n, "temporary (4xx)")
	}
	if !found {
		t.Errorf("no note about temporary replies: %v", rep.Notes)
	}
}

func TestConfirmToSendsOnlyToTheOperator(t *testing.T) {
	f := &fakeSMTP{Rcpt: func(string) string { return "250 2.1.5 Ok" }}
	rep := run(t, f.start(t), func(o *Options) { o.ConfirmTo = "operator@confirm.test" })
	txns := f.dataTransactions()
	if len(txns) == 0 {
		t.Fatal("no test message was sent with ConfirmTo")
	}
	for _, txn := range txns {
		rcpt := strings.TrimPrefix(txn[len(txn)-1], "RCPT TO:")
		if dest := destination(rcpt, "local.test"); dest != "operator@confirm.test" {
			t.Errorf("DATA sent for RCPT TO:%s, which routes to %q, not to the confirm-to address", rcpt, dest)
		}
	}
	p := mustFind(t, rep, "relay.plain", Critical)
	if !strings.Contains(strings.Join(p.Evidence, "\n"), "C: DATA") {
		t.Errorf("relay.plain evidence lacks DATA: %q", p.Evidence)
	}
	if f := rep.Find("relay.ip-literal"); f == nil || strings.Contains(strings.Join(f.Evidence, "\n"), "DATA") {
		t.Errorf("ip-literal variant: %+v", f)
	}
}

func TestDNSHygiene(t *testing.T) {
	f := &fakeSMTP{Rcpt: closedRcpt}
	addr := f.start(t)
	bad := &dnsresolve.Mock{
		TXT: map[string][]string{
			"local.test":        {"v=spf1 +all", "google-site-verification=x"},
			"_dmarc.local.test": {"v=DMARC1; p=none"},
		},
		IP: map[string][]netip.Addr{"1.0.0.127.bl.test": {netip.MustParseAddr("127.0.0.2")}},
	}
	rep := run(t, addr, func(o *Options) { o.Resolver = bad; o.DNSBLs = []string{"bl.test", "clean.test"} })
	mustFind(t, rep, "dns.mx-missing", Medium)
	mustFind(t, rep, "dns.spf-pass-all", High)
	mustFind(t, rep, "dns.dmarc-none", Low)
	bl := mustFind(t, rep, "dnsbl.listed.bl.test", High)
	if bl.Evidence[0] != "DNS: A 1.0.0.127.bl.test: [127.0.0.2]" {
		t.Errorf("DNSBL evidence %q", bl.Evidence)
	}
	mustNotFind(t, rep, "dnsbl.listed.clean.test")

	none := &dnsresolve.Mock{MX: map[string][]*net.MX{"local.test": {{Host: "."}}}}
	rep = run(t, addr, func(o *Options) { o.Resolver = none })
	mustFind(t, rep, "dns.null-mx", Info)
	mustFind(t, rep, "dns.spf-missing", Medium)
	mustFind(t, rep, "dns.dmarc-missing", Medium)

	rep = run(t, addr, nil) // goodDNS
	mustNotFind(t, rep, "dns")

	slow := &dnsresolve.Mock{Fail: map[string]error{"local.test": dnsresolve.TemporaryError("local.test")}}
	rep = run(t, addr, func(o *Options) { o.Resolver = slow })
	mustNotFind(t, rep, "dns.mx")
	mustNotFind(t, rep, "dns.spf")
	if len(rep.Notes) == 0 {
		t.Error("temporary DNS failure left no note")
	}

	rep = run(t, addr, func(o *Options) { o.Resolver = bad; o.SkipDNS = true })
	mustNotFind(t, rep, "dns")
}

func TestTargetNameResolvedThroughResolver(t *testing.T) {
	f := &fakeSMTP{Rcpt: closedRcpt}
	addr := f.start(t)
	_, port, _ := net.SplitHostPort(addr)
	m := goodDNS()
	m.IP = map[string][]netip.Addr{"mx.local.test": {netip.MustParseAddr("127.0.0.1")}}
	rep := run(t, "mx.local.test:"+port, func(o *Options) { o.Resolver = m })
	if rep.Address != addr {
		t.Errorf("Address = %s, want %s", rep.Address, addr)
	}
	if q := m.Queries(); len(q) == 0 || q[0] != "IP mx.local.test" {
		t.Errorf("queries %v", q)
	}
}

func TestRunErrors(t *testing.T) {
	ctx := context.Background()
	for _, o := range []Options{
		{Domain: "local.test"},
		{Target: "127.0.0.1:1"},
		{Target: "127.0.0.1:1", Domain: "bad domain"},
		{Target: "127.0.0.1:99999", Domain: "local.test"},
		{Target: "127.0.0.1:25", Domain: "local.test", ConfirmTo: "nobody"},
		{Target: "127.0.0.1:25", Domain: "local.test", HeloName: "x\r\nRCPT TO:<a@b>"},
	} {
		if _, err := Run(ctx, o); err == nil {
			t.Errorf("Run(%+v) succeeded", o)
		}
	}
	// Nothing listening.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	if _, err := Run(ctx, Options{Target: addr, Domain: "local.test", SkipDNS: true, Timeout: time.Second}); err == nil {
		t.Error("Run against a closed port succeeded")
	}
	// Refused with 554 at connect.
	f := &fakeSMTP{Banner: "554 5.7.1 go away"}
	if _, err := Run(ctx, Options{Target: f.start(t), Domain: "local.test", SkipDNS: true}); err == nil || !strings.Contains(err.Error(), "554") {
		t.Errorf("Run against a 554 greeting: %v", err)
	}
}

func TestContextBoundsASilentServer(t *testing.T) {
	f := &fakeSMTP{Silent: true}
	addr := f.start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Run(ctx, Options{Target: addr, Domain: "local.test", SkipDNS: true, Timeout: time.Minute})
	if err == nil {
		t.Error("Run against a silent server succeeded")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Run took %s despite a 300ms context", d)
	}
}

func TestReportFormats(t *testing.T) {
	f := &fakeSMTP{Rcpt: func(string) string { return "250 Ok" }, Ext: []string{"AUTH PLAIN"}}
	rep := run(t, f.start(t), nil)
	var b bytes.Buffer
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatalf("JSON does not round-trip: %v\n%s", err, b.String())
	}
	if len(back.Findings) != len(rep.Findings) || back.Findings[0].Severity != Critical || !back.HasHigh() {
		t.Errorf("JSON round trip lost findings: %d vs %d", len(back.Findings), len(rep.Findings))
	}
	if !strings.Contains(b.String(), `"severity": "critical"`) {
		t.Error("severity is not written as a name")
	}
	// Sorted: critical first.
	for i := 1; i < len(rep.Findings); i++ {
		if rep.Findings[i].Severity > rep.Findings[i-1].Severity {
			t.Fatalf("findings not sorted by severity: %v", ids(rep))
		}
	}
	text := dump(rep)
	for _, want := range []string{"[CRITICAL] relay.plain", "    C: RCPT TO:<kanmon-relay-test@example.com>", "  fix: ", "result: FAIL"} {
		if !strings.Contains(text, want) {
			t.Errorf("text report lacks %q:\n%s", want, text)
		}
	}
}

func TestSeverityText(t *testing.T) {
	for s := Info; s <= Critical; s++ {
		b, err := s.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back Severity
		if err := back.UnmarshalText(b); err != nil || back != s {
			t.Errorf("%s: round trip %v %v", s, back, err)
		}
	}
	if _, err := Severity(9).MarshalText(); err == nil {
		t.Error("invalid severity marshalled")
	}
	var s Severity
	if err := s.UnmarshalText([]byte("severe")); err == nil {
		t.Error("unknown severity parsed")
	}
}

// destination is where a relaying server that honours every routing
// convention (source routes, %, !, quoted local parts) sends rcpt.
func destination(rcpt, local string) string {
	a := strings.ToLower(strings.TrimSpace(rcpt))
	a = strings.TrimSuffix(strings.TrimPrefix(a, "<"), ">")
	if strings.HasPrefix(a, "@") {
		if i := strings.IndexByte(a, ':'); i > 0 {
			a = a[i+1:]
		}
	}
	a = strings.ReplaceAll(strings.TrimSuffix(a, "."), `"`, "")
	for _, suf := range []string{"@" + local, "@[127.0.0.1]", "@localhost"} {
		if rest, ok := strings.CutSuffix(a, suf); ok && strings.ContainsAny(rest, "@%!") {
			a = rest
		}
	}
	if host, user, ok := strings.Cut(a, "!"); ok {
		a = user + "@" + host
	}
	return strings.Replace(a, "%", "@", 1)
}
