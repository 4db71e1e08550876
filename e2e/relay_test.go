package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// relayCase is one unauthenticated attempt on the MX port. The dialogue
// is written verbatim, so odd addresses reach the server as a relay
// tester would send them.
type relayCase struct {
	name string
	helo string // "" means client.remote.test
	from string // inside MAIL FROM:<...>
	rcpt string // inside RCPT TO:<...>; "" when MAIL itself must fail
	// rawRcpt, when set, is the whole RCPT argument after "TO:" (for
	// source routes and other shapes that carry their own brackets).
	rawRcpt string
	// mailParams are added after MAIL FROM:<...> (e.g. "SMTPUTF8").
	mailParams string
	// want at the refused step
	code int
	enh  string
	rule string // the rule named in the decision log line
}

func relayBattery() []relayCase {
	const foreign = "friend@remote.test"
	return []relayCase{
		{name: "foreign sender to foreign recipient", from: "x@remote.test", rcpt: foreign, code: 554, enh: "5.7.1", rule: "relay.denied"},
		{name: "forged local sender", from: alice, code: 550, enh: "5.7.1", rule: "sender.forged_local"},
		{name: "forged local postmaster sender", from: "postmaster@example.org", code: 550, enh: "5.7.1", rule: "sender.forged_local"},
		{name: "null sender to foreign", from: "", rcpt: foreign, code: 554, enh: "5.7.1", rule: "relay.denied"},
		{name: "percent hack", from: "x@remote.test", rcpt: "user%remote.test@example.org", code: 550, enh: "5.7.1", rule: "relay.routing"},
		{name: "bang path", from: "x@remote.test", rcpt: "remote.test!user@example.org", code: 550, enh: "5.7.1", rule: "relay.routing"},
		{name: "source route via our domain", from: "x@remote.test", rawRcpt: "<@example.org:user@remote.test>", code: 554, enh: "5.7.1", rule: "relay.denied"},
		{name: "source route with two hops", from: "x@remote.test", rawRcpt: "<@mx.example.org,@example.org:user@remote.test>", code: 554, enh: "5.7.1", rule: "relay.denied"},
		{name: "quoted local part hiding an address", from: "x@remote.test", rcpt: `"user@remote.test"@example.org`, code: 550, enh: "5.7.1", rule: "relay.routing"},
		{name: "quoted local part with percent", from: "x@remote.test", rcpt: `"user%remote.test"@example.org`, code: 550, enh: "5.7.1", rule: "relay.routing"},
		{name: "ip literal", from: "x@remote.test", rcpt: "user@[192.0.2.1]", code: 554, enh: "5.7.1", rule: "relay.denied"},
		{name: "ip literal of the server itself", from: "x@remote.test", rcpt: "user@[127.0.0.1]", code: 554, enh: "5.7.1", rule: "relay.denied"},
		{name: "ipv6 literal", from: "x@remote.test", rcpt: "user@[IPv6:::1]", code: 554, enh: "5.7.1", rule: "relay.denied"},
		{name: "trailing dot", from: "x@remote.test", rcpt: "user@remote.test.", code: 501, enh: "5.1.3", rule: "address.syntax"},
		{name: "mixed case", from: "x@remote.test", rcpt: "USER@REMOTE.TEST", code: 554, enh: "5.7.1", rule: "relay.denied"},
		{name: "multiple at signs", from: "x@remote.test", rcpt: "user@remote.test@example.org", code: 550, enh: "5.7.1", rule: "relay.routing"},
		{name: "unqualified", from: "x@remote.test", rcpt: "user", code: 501, enh: "5.1.3", rule: "address.syntax"},
		{name: "our domain as a prefix", from: "x@remote.test", rcpt: "user@example.org.remote.test", code: 554, enh: "5.7.1", rule: "relay.denied"},
		{name: "look-alike domain", from: "x@remote.test", rcpt: "user@evilexample.org", code: 554, enh: "5.7.1", rule: "relay.denied"},
		{name: "subdomain", from: "x@remote.test", rcpt: "user@sub.example.org", code: 554, enh: "5.7.1", rule: "relay.denied"},
		{name: "unknown local user", from: "x@remote.test", rcpt: "nobody@example.org", code: 550, enh: "5.1.1", rule: "rcpt.unknown"},
		{name: "helo claims to be the server", helo: hostname, from: "x@remote.test", rcpt: foreign, code: 554, enh: "5.7.1", rule: "relay.denied"},
		{name: "helo claims our address literal", helo: "[127.0.0.1]", from: "x@remote.test", rcpt: foreign, code: 554, enh: "5.7.1", rule: "relay.denied"},
		{name: "loopback client is not trusted by default", helo: "localhost", from: "root@localhost.remote.test", rcpt: foreign, code: 554, enh: "5.7.1", rule: "relay.denied"},
		{name: "homoglyph of our domain (SMTPUTF8)", from: "x@remote.test", mailParams: "SMTPUTF8", rcpt: "user@ex\u0430mple.org", code: 554, enh: "5.7.1", rule: "relay.denied"},
		{name: "punycode look-alike", from: "x@remote.test", rcpt: "user@xn--exmple-cua.org", code: 554, enh: "5.7.1", rule: "relay.denied"},
		{name: "non-ASCII without SMTPUTF8", from: "x@remote.test", rcpt: "user@ex\u0430mple.org", code: 553, enh: "5.6.7", rule: "address.syntax"},
		{name: "auth parameter on MAIL grants nothing", from: "x@remote.test> AUTH=<" + alice, rcpt: foreign, code: 554, enh: "5.7.1", rule: "relay.denied"},
	}
}

// runRelayCase runs one case and returns the connection id of the
// rejection.
func runRelayCase(t *testing.T, s *server, tc relayCase) string {
	t.Helper()
	c := dial(t, s.MX)
	defer c.Close()
	helo := tc.helo
	if helo == "" {
		helo = "client.remote.test"
	}
	c.Ehlo(helo)
	if tc.rcpt == "" && tc.rawRcpt == "" {
		r := c.Expect("MAIL FROM:<"+tc.from+">", tc.code, tc.enh)
		// Nothing to relay once MAIL failed.
		c.Expect("RCPT TO:<friend@remote.test>", 503, "5.5.1")
		return r.ConnID()
	}
	mail := "MAIL FROM:<" + tc.from + ">"
	if tc.mailParams != "" {
		mail += " " + tc.mailParams
	}
	c.Expect(mail, 250, "2.1.0")
	arg := tc.rawRcpt
	if arg == "" {
		arg = "<" + tc.rcpt + ">"
	}
	r := c.Expect("RCPT TO:"+arg, tc.code, tc.enh)
	// No recipient, no message.
	c.Expect("DATA", 554, "5.5.1")
	c.Expect("QUIT", 221, "2.0.0")
	return r.ConnID()
}

// checkDecision waits for the one decision line naming the rule.
func checkDecision(t *testing.T, s *server, connID string, tc relayCase) {
	t.Helper()
	if connID == "" {
		t.Errorf("the rejection does not end with the connection id [c...]")
		return
	}
	l := s.WaitLog(t, "decision "+tc.rule+" for "+connID, func(l logLine) bool {
		return l.str("conn") == connID && l.str("msg") == "decision" && l.str("rule") == tc.rule
	})
	if code, _ := l["code"].(float64); int(code) != tc.code || l.str("enhanced") != tc.enh {
		t.Errorf("decision line %v: want code %d enhanced %s", l, tc.code, tc.enh)
	}
	for _, p := range []string{"relay.", "rcpt.", "address.", "sender."} {
		if strings.HasPrefix(tc.rule, p) {
			return
		}
	}
	t.Errorf("rule %q is not a relay./rcpt./address./sender. rule", tc.rule)
}

// TestRelayBattery: law 2 against the running binary. Nothing an
// unauthenticated, untrusted client says grants relay.
func TestRelayBattery(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{})
	t.Run("battery", func(t *testing.T) {
		for _, tc := range relayBattery() {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				id := runRelayCase(t, s, tc)
				checkDecision(t, s, id, tc)
			})
		}
	})
	if ids := s.QueueIDs(t); len(ids) != 0 {
		t.Errorf("queue holds %v after refused relay attempts", ids)
	}
}

// TestRelayScannerCutOff: relay refusals count toward the error limit, so
// a scanner trying recipient after recipient is disconnected.
func TestRelayScannerCutOff(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{})
	c := dial(t, s.MX)
	c.Ehlo("client.remote.test")
	c.Expect("MAIL FROM:<x@remote.test>", 250, "2.1.0")
	for i, rcpt := range []string{"a@remote.test", "b%remote.test@example.org", "c@[192.0.2.1]", "d@remote.test"} {
		c.Expect("RCPT TO:<"+rcpt+">", []int{554, 550, 554, 554}[i], "5.7.1")
	}
	c.Expect("RCPT TO:<e@remote.test>", 554, "5.7.1")
	c.ExpectReply("after the 5th refusal", 421, "4.7.0")
	c.ExpectClosed("after 421")
	s.WaitLog(t, "decision limit.errors", func(l logLine) bool {
		return l.str("msg") == "decision" && l.str("rule") == "limit.errors"
	})
}

// TestRelayTrustedNetwork: a configured trusted network may relay, and
// still may not use routing tricks.
func TestRelayTrustedNetwork(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{set: map[string]string{"trusted_networks": `["127.0.0.1/32"]`}})
	c := dial(t, s.MX)
	c.Ehlo("client.remote.test")
	c.Expect("MAIL FROM:<x@remote.test>", 250, "2.1.0")
	c.Expect("RCPT TO:<friend@remote.test>", 250, "2.1.5")
	r := c.Data(message("x@remote.test", "friend@remote.test", "relayed", newMessageID(t), "relayed for a trusted network\n"))
	checkReply(t, "end of DATA", r, 250, "2.0.0")
	id := queueIDOf(r.String())
	s.WaitLog(t, "decision relay.trusted_network", func(l logLine) bool {
		return l.str("msg") == "decision" && l.str("rule") == "relay.trusted_network" && l.str("addr") == "friend@remote.test"
	})
	s.WaitLog(t, "queued with origin trusted", func(l logLine) bool {
		return l.str("msg") == "queued" && l.str("queue_id") == id && l.str("origin") == "trusted"
	})
	// A trusted client may send as our own domain (it is our own host).
	c.Expect("MAIL FROM:<"+alice+">", 250, "2.1.0")
	// Routing tricks stay refused even for a trusted network.
	c.Expect("RCPT TO:<remote.test!user@example.org>", 550, "5.7.1")
	c.Expect("RCPT TO:<user%remote.test@example.org>", 550, "5.7.1")
	c.Expect("QUIT", 221, "2.0.0")
}

// TestRelayDomains: a relay_domains partner is accepted from anyone (backup
// MX); other foreign domains are not, and a forged local sender does not
// change that even with the forged-sender check turned off. (The
// partner's recipients are verified from a list here; backupmx_test.go
// tests verification itself.)
func TestRelayDomains(t *testing.T) {
	t.Parallel()
	s := setupServer(t, options{set: map[string]string{
		"relay_domains":                     `["partner.test"]`,
		"policy.reject_forged_local_sender": "false",
	}})
	if err := os.WriteFile(filepath.Join(s.Dir, "partner.txt"), []byte("user@partner.test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	appendConfig(t, s.Config, "\n[relay_verify.\"partner.test\"]\nmethod = \"list\"\nlist = \"partner.txt\"\n")
	s.Start(t)
	t.Cleanup(func() { s.Stop(t) })
	c := dial(t, s.MX)
	c.Ehlo("client.remote.test")
	c.Expect("MAIL FROM:<x@remote.test>", 250, "2.1.0")
	c.Expect("RCPT TO:<user@partner.test>", 250, "2.1.5")
	c.Expect("RCPT TO:<User@PARTNER.TEST>", 250, "2.1.5")
	c.Expect("RCPT TO:<user@sub.partner.test>", 554, "5.7.1")
	c.Expect("RCPT TO:<user@partner.test.remote.test>", 554, "5.7.1")
	c.Expect("RCPT TO:<friend@remote.test>", 554, "5.7.1")
	r := c.Data(message("x@remote.test", "user@partner.test", "backup mx", newMessageID(t), "for the partner\n"))
	checkReply(t, "end of DATA", r, 250, "2.0.0")
	s.WaitLog(t, "decision relay.relay_domain", func(l logLine) bool {
		return l.str("msg") == "decision" && l.str("rule") == "relay.relay_domain" && l.str("addr") == "user@partner.test"
	})
	c.Expect("QUIT", 221, "2.0.0")

	// Law 2: a local MAIL FROM never grants relay.
	c = dial(t, s.MX)
	c.Ehlo(hostname)
	c.Expect("MAIL FROM:<"+alice+">", 250, "2.1.0")
	r = c.Expect("RCPT TO:<friend@remote.test>", 554, "5.7.1")
	s.WaitLog(t, "decision relay.denied", func(l logLine) bool {
		return l.str("conn") == r.ConnID() && l.str("msg") == "decision" && l.str("rule") == "relay.denied"
	})
}
