package audit

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"kanmon/internal/dnsresolve"
	"kanmon/internal/testutil/postfix"
)

// postfixDNS answers for postfix.test as a well-kept domain, so the DNS
// checks do not mix into what these tests prove about the SMTP side.
func postfixDNS() *dnsresolve.Mock {
	return &dnsresolve.Mock{
		MX: map[string][]*net.MX{"postfix.test": {{Host: "mx.postfix.test.", Pref: 10}}},
		TXT: map[string][]string{
			"postfix.test":            {"v=spf1 mx -all"},
			"_dmarc.postfix.test":     {"v=DMARC1; p=reject"},
			"_mta-sts.postfix.test":   {"v=STSv1; id=20250101"},
			"_smtp._tls.postfix.test": {"v=TLSRPTv1; rua=mailto:tlsrpt@postfix.test"},
		},
	}
}

func auditPostfix(t *testing.T, inst *postfix.Instance) *Report {
	t.Helper()
	return auditPostfixWith(t, inst, nil)
}

// auditPostfixWith audits inst with tweak applied to the options.
func auditPostfixWith(t *testing.T, inst *postfix.Instance, tweak func(*Options)) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opts := Options{
		Target:        inst.Addr,
		Domain:        "postfix.test",
		Timeout:       20 * time.Second,
		Resolver:      postfixDNS(),
		RootCAs:       inst.CertPool,
		TLSServerName: "mx.postfix.test",
	}
	if tweak != nil {
		tweak(&opts)
	}
	rep, err := Run(ctx, opts)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, inst.Log())
	}
	t.Logf("audit of %s:\n%s", inst.Addr, dump(rep))
	return rep
}

// TestPostfixOpenRelay audits a Postfix configured with the classic
// mistakes: every client trusted (mynetworks = 0.0.0.0/0), VRFY on, AUTH
// offered and accepted without TLS, TLS 1.0 allowed. Each must be found.
func TestPostfixOpenRelay(t *testing.T) {
	inst := postfix.Start(t, postfix.Options{
		TLS:  true,
		SASL: true,
		MainCF: `
mynetworks = 0.0.0.0/0
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
disable_vrfy_command = no
smtpd_tls_auth_only = no
smtpd_tls_protocols = >=TLSv1
smtpd_tls_mandatory_protocols = >=TLSv1
tls_medium_cipherlist = DEFAULT:@SECLEVEL=0
tls_high_cipherlist = DEFAULT:@SECLEVEL=0
`,
	})
	rep := auditPostfix(t, inst)

	for _, id := range []string{"relay.plain", "relay.null-sender", "relay.local-sender", "relay.source-route", "relay.ip-literal", "relay.trailing-dot", "relay.mixed-case"} {
		mustFind(t, rep, id, Critical)
	}
	mustFind(t, rep, "relay.percent-hack", High) // unknown local users are rejected, so it is routed away
	mustFind(t, rep, "disclosure.vrfy", Medium)
	mustFind(t, rep, "auth.offered-plaintext", High)
	mustFind(t, rep, "auth.accepted-plaintext", High)
	mustFind(t, rep, "tls.old-version", Medium)
	mustFind(t, rep, "banner.software", Info)
	mustNotFind(t, rep, "backscatter.")
	if !rep.HasHigh() {
		t.Error("HasHigh false for an open relay")
	}
	// Postfix counts commands per session in its disconnect lines
	// ("... rcpt=28 rset=27 quit=1"): no session may show DATA or BDAT.
	log := inst.Log()
	if !strings.Contains(log, " rcpt=") {
		t.Fatalf("Postfix log has no command counts:\n%s", log)
	}
	if strings.Contains(log, " data=") || strings.Contains(log, " bdat=") {
		t.Errorf("Postfix saw DATA from the audit:\n%s", log)
	}
}

// TestPostfixVRFYOn audits an otherwise closed Postfix with VRFY enabled.
// It answers 504 to every bare name, and tells accounts apart only when
// the domain is given: the audit must ask both forms.
func TestPostfixVRFYOn(t *testing.T) {
	inst := postfix.Start(t, postfix.Options{TLS: true, MainCF: `
disable_vrfy_command = no
smtpd_recipient_restrictions = reject_non_fqdn_recipient
smtpd_banner = $myhostname ESMTP
`})
	// root exists (Postfix's local recipients are the system accounts).
	rep := auditPostfixWith(t, inst, func(o *Options) { o.KnownUser = "root" })
	v := mustFind(t, rep, "disclosure.vrfy", Medium)
	ev := strings.Join(v.Evidence, "\n")
	if !strings.Contains(ev, "S: 252 2.0.0 root@postfix.test") || !strings.Contains(ev, "S: 550 5.1.1 ") {
		t.Errorf("disclosure.vrfy evidence lacks the 252/550 pair:\n%s", ev)
	}
	for _, f := range rep.Findings {
		if f.ID != "disclosure.vrfy" && f.Severity > Low {
			t.Errorf("finding %s (%s) against a Postfix whose only weakness is VRFY", f.ID, f.Severity)
		}
	}
}

// TestPostfixAcceptThenBounce audits a Postfix without a local recipient
// table: it accepts mail for users that do not exist and would bounce it.
func TestPostfixAcceptThenBounce(t *testing.T) {
	inst := postfix.Start(t, postfix.Options{MainCF: "local_recipient_maps =\n"})
	rep := auditPostfix(t, inst)
	mustFind(t, rep, "backscatter.accept-unknown", Medium)
	// The local forms are now indistinguishable from unknown users.
	mustNotFind(t, rep, "relay.plain")
	if f := rep.Find("relay.percent-hack"); f != nil && f.Severity != Medium {
		t.Errorf("relay.percent-hack: %s", f.Severity)
	}
}

// TestPostfixSafe audits a Postfix configured the way kanmon's defaults
// are: nobody trusted, VRFY disabled, AUTH only after TLS, TLS 1.2+, no
// software name in the banner. None of the weaknesses may be reported.
func TestPostfixSafe(t *testing.T) {
	inst := postfix.Start(t, postfix.Options{
		TLS:  true,
		SASL: true,
		MainCF: `
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
disable_vrfy_command = yes
smtpd_tls_auth_only = yes
smtpd_banner = $myhostname ESMTP
allow_percent_hack = no
swap_bangpath = no
`,
	})
	rep := auditPostfix(t, inst)
	if rep.HasHigh() {
		t.Errorf("high findings against a safe Postfix")
	}
	for _, prefix := range []string{"relay.", "disclosure.", "auth.", "tls.", "backscatter.", "banner.", "dns"} {
		mustNotFind(t, rep, prefix)
	}
	for _, f := range rep.Findings {
		if f.Severity > Info {
			t.Errorf("finding %s (%s) against a safe Postfix", f.ID, f.Severity)
		}
	}
}

// TestPostfixConfirmTo sends the confirmation messages through a real
// open relay (which discards them): each accepted, confirmable variant
// becomes one message to the operator's address and to no one else.
func TestPostfixConfirmTo(t *testing.T) {
	inst := postfix.Start(t, postfix.Options{MainCF: "mynetworks = 0.0.0.0/0\n"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Options{
		Target: inst.Addr, Domain: "postfix.test", Timeout: 20 * time.Second,
		SkipDNS: true, ConfirmTo: "operator@confirm.example",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, v := range relayVariants("postfix.test", "operator", "confirm.example", "[127.0.0.1]", DefaultFrom, DefaultHeloName) {
		if f := rep.Find("relay." + v.id); f != nil && v.confirm {
			want++
			if !strings.Contains(strings.Join(f.Evidence, "\n"), "-- test message sent to operator@confirm.example") {
				t.Errorf("%s: evidence lacks the sent message:\n%s", f.ID, strings.Join(f.Evidence, "\n"))
			}
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	var sent int
	for time.Now().Before(deadline) {
		sent = 0
		for _, l := range strings.Split(inst.Log(), "\n") {
			if strings.Contains(l, "postfix/discard") && strings.Contains(l, "status=sent") {
				sent++
				if !strings.Contains(strings.ToLower(l), "to=<operator@confirm.example>") {
					t.Errorf("a message went to someone else: %s", l)
				}
			}
		}
		if sent >= want {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if want < 10 || sent != want {
		t.Errorf("%d messages delivered (discarded) by Postfix, want %d (one per accepted confirmable variant)\n%s", sent, want, inst.Log())
	}
}
