package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// inboundMetric returns the value of kanmon_inbound_checks_total for
// rule and action ("" when the series does not exist).
func inboundMetric(t *testing.T, s *server, rule, action string) string {
	t.Helper()
	resp, err := http.Get("http://" + s.Admin + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	prefix := `kanmon_inbound_checks_total{action="` + action + `",rule="` + rule + `"} `
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			return v
		}
	}
	return ""
}

// TestInboundPolicyBlock: an address listed in a policy-block zone
// (PBL-style) is refused with 550 5.7.1 pointing to port 587, even with
// a clean reverse name; the finding is counted.
func TestInboundPolicyBlock(t *testing.T) {
	t.Parallel()
	s := startInboundServer(t, map[string]string{"inbound.policy_block_zones": `["pbl.test"]`})
	checkRefusal(t, s, swaksFrom(t, s, pblIP, "bob@open.test"), 550, "5.7.1", "client.policy_block", "pbl.test", "587")
	if l := expectDecision(t, s, "client.policy_block", ""); l.str("action") != "reject" || l.str("zone") != "pbl.test" {
		t.Errorf("decision line: %v", l)
	}
	if v := inboundMetric(t, s, "client.policy_block", "reject"); v != "1" {
		t.Errorf("kanmon_inbound_checks_total{client.policy_block,reject} = %q, want 1", v)
	}
}

// TestInboundFCrDNS: a reverse name that does not resolve back to the
// client is only logged by default (the message is accepted); with
// fcrdns_mismatch = "reject" it is refused with 550 5.7.25.
func TestInboundFCrDNS(t *testing.T) {
	t.Parallel()
	s := startInboundServer(t, nil)
	rs := swaksFrom(t, s, mismatchIP, "bob@open.test")
	if !hasReply(rs, 250, "2.0.0") {
		t.Fatalf("default (log): message not accepted: %v\n%s", rs, s.LogTail(20))
	}
	if l := expectDecision(t, s, "client.fcrdns", ""); l.str("action") != "log" || l.str("ptr") != "mail.mismatch.test" || l.str("would") != "550 5.7.25" {
		t.Errorf("log-only decision line: %v", l)
	}
	if v := inboundMetric(t, s, "client.fcrdns", "log"); v != "1" {
		t.Errorf("kanmon_inbound_checks_total{client.fcrdns,log} = %q, want 1", v)
	}

	s2 := startInboundServer(t, map[string]string{"inbound.fcrdns_mismatch": `"reject"`})
	checkRefusal(t, s2, swaksFrom(t, s2, mismatchIP, "bob@open.test"), 550, "5.7.25", "client.fcrdns", "mail.mismatch.test")
	if l := expectDecision(t, s2, "client.fcrdns", ""); l.str("action") != "reject" {
		t.Errorf("enforced decision line: %v", l)
	}
}

// TestInboundAccessLists: an allow entry (a network) lets a client on
// the blocklist through and skips its sender checks (an SPF fail is not
// looked at); deny entries by address, network, host name and domain
// pattern refuse with 554 5.7.1 and name the entry in the log.
func TestInboundAccessLists(t *testing.T) {
	t.Parallel()
	s := startInboundServer(t, map[string]string{
		"inbound.allow": `["127.0.0.6/31"]`,
		"inbound.deny":  `["127.0.0.9", "127.0.0.10/31", "mx.sender.test", "*.pool.isp.test"]`,
	})
	rs := swaksFrom(t, s, listedIP, "bob@spffail.test")
	if !hasReply(rs, 250, "2.0.0") {
		t.Fatalf("allowed client on the blocklist: not accepted: %v\n%s", rs, s.LogTail(20))
	}
	if l := expectDecision(t, s, "client.allow", ""); l.str("entry") != "127.0.0.6/31" || l.str("action") != "log" {
		t.Errorf("allow decision line: %v", l)
	}
	for _, tc := range []struct{ ip, entry string }{
		{pblIP, "127.0.0.9/32"},
		{mismatchIP, "127.0.0.10/31"},
		{goodIP, "mx.sender.test"},
		{dynamicIP, "*.pool.isp.test"},
	} {
		rs := swaksFrom(t, s, tc.ip, "bob@sender.test")
		var id string
		for _, r := range rs {
			if r.Code == 554 && r.Enhanced == "5.7.1" {
				id = r.ConnID()
			}
		}
		checkRefusal(t, s, rs, 554, "5.7.1", "client.deny", tc.ip)
		if l := expectDecision(t, s, "client.deny", id); l.str("entry") != tc.entry || l.str("action") != "reject" {
			t.Errorf("%s: decision line %v, want entry %s", tc.ip, l, tc.entry)
		}
	}
	if v := inboundMetric(t, s, "client.deny", "reject"); v != "4" {
		t.Errorf("kanmon_inbound_checks_total{client.deny,reject} = %q, want 4", v)
	}
	for _, rule := range []string{"client.dnsbl", "spf.fail", "client.dynamic"} {
		if v := inboundMetric(t, s, rule, "reject"); v != "" {
			t.Errorf("%s counted %s behind the access lists", rule, v)
		}
	}
}

// TestInboundSenderDomainNoAnswer: a sender domain whose DNS never
// answers is deferred with 451 4.4.3 within the DNS timeout, never
// refused for good.
func TestInboundSenderDomainNoAnswer(t *testing.T) {
	t.Parallel()
	s, dns := startInboundServerDNS(t, map[string]string{"dns.timeout": `"1s"`})
	c := dialFrom(t, goodIP, s.MX)
	defer c.Close()
	c.Ehlo("mx.sender.test")
	start := time.Now()
	r := c.Expect("MAIL FROM:<bob@blackhole.test>", 451, "4.4.3")
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("answer after %v, want within the DNS timeout (1s) plus slack", d)
	}
	checkRefusal(t, s, []reply{r}, 451, "4.4.3", "sender.domain_temperror", "blackhole.test")
	if l := expectDecision(t, s, "sender.domain_temperror", r.ConnID()); l.str("action") != "tempfail" {
		t.Errorf("decision line %v: action %q, want tempfail (the action is reject)", l, l.str("action"))
	}
	if dns.Asked("MX", "blackhole.test.") == 0 {
		t.Error("the fixture never saw the MX question: the test proves nothing")
	}
}

// TestInboundDNSBLCache: a second connection from a listed address is
// refused without asking the blocklist again (the answer is kept for
// its TTL).
func TestInboundDNSBLCache(t *testing.T) {
	t.Parallel()
	s, dns := startInboundServerDNS(t, nil)
	for range 2 {
		checkRefusal(t, s, swaksFrom(t, s, listedIP, "bob@sender.test"), 554, "5.7.1", "client.dnsbl", "bl.test")
	}
	if n := dns.Asked("A", "7.0.0.127.bl.test."); n != 1 {
		t.Errorf("blocklist asked %d times for two connections, want 1", n)
	}
	if n := dns.Asked("TXT", "7.0.0.127.bl.test.") + dns.Asked("AAAA", "7.0.0.127.bl.test."); n != 0 {
		t.Errorf("%d TXT/AAAA questions to the blocklist, want only the A question", n)
	}
	if v := inboundMetric(t, s, "client.dnsbl", "reject"); v != "2" {
		t.Errorf("kanmon_inbound_checks_total{client.dnsbl,reject} = %q, want 2", v)
	}
}
