package policy_test

import (
	"net/netip"
	"reflect"
	"testing"

	"kanmon/internal/address"
	"kanmon/internal/policy"
)

var testDomains = policy.Domains{
	Local: map[string]bool{
		"example.org":  true,
		"[127.0.0.1]":  true,
		"[IPv6:::1]":   true,
		"mail.example": true,
	},
	Relay: map[string]bool{
		"backup.example.net": true,
	},
}

const (
	localRcpt  = "user@example.org"
	relayRcpt  = "user@backup.example.net"
	remoteRcpt = "victim@evil.com"
)

func mustParse(t *testing.T, s string) address.Addr {
	t.Helper()
	a, err := address.Parse(s, false)
	if err != nil {
		t.Fatalf("address.Parse(%q): %v", s, err)
	}
	return a
}

func checkVerdict(t *testing.T, v policy.Verdict, accept bool, rule string, code int, enh string) {
	t.Helper()
	if v.Accept != accept || v.Rule != rule || v.Code != code || v.Enhanced != enh {
		t.Errorf("verdict = %v (accept %v); want accept %v, %s %d %s", v, v.Accept, accept, rule, code, enh)
	}
	if v.Reason == "" {
		t.Error("verdict has no reason")
	}
}

// TestRelayRuleMatrix walks every combination of what the server knows about
// the client against the three recipient classes.
func TestRelayRuleMatrix(t *testing.T) {
	const (
		local  = "relay.local"
		relayd = "relay.relay_domain"
		auth   = "relay.authenticated"
		trust  = "relay.trusted_network"
		pop    = "relay.pop_before_smtp"
		denied = "relay.denied"
	)
	tests := []struct {
		auth, trusted, pop bool
		rcpt               string
		rule               string
	}{
		{false, false, false, localRcpt, local},
		{false, false, false, relayRcpt, relayd},
		{false, false, false, remoteRcpt, denied},
		{false, false, true, localRcpt, local},
		{false, false, true, relayRcpt, relayd},
		{false, false, true, remoteRcpt, pop},
		{false, true, false, localRcpt, local},
		{false, true, false, relayRcpt, relayd},
		{false, true, false, remoteRcpt, trust},
		{false, true, true, localRcpt, local},
		{false, true, true, relayRcpt, relayd},
		{false, true, true, remoteRcpt, trust},
		{true, false, false, localRcpt, local},
		{true, false, false, relayRcpt, relayd},
		{true, false, false, remoteRcpt, auth},
		{true, false, true, localRcpt, local},
		{true, false, true, relayRcpt, relayd},
		{true, false, true, remoteRcpt, auth},
		{true, true, false, localRcpt, local},
		{true, true, false, relayRcpt, relayd},
		{true, true, false, remoteRcpt, auth},
		{true, true, true, localRcpt, local},
		{true, true, true, relayRcpt, relayd},
		{true, true, true, remoteRcpt, auth},
	}
	for _, tc := range tests {
		c := policy.Client{Authenticated: tc.auth, Trusted: tc.trusted, PopBeforeSMTP: tc.pop}
		t.Run(tc.rcpt+"/"+tc.rule, func(t *testing.T) {
			v := policy.RelayRule(c, testDomains, mustParse(t, tc.rcpt))
			if tc.rule == denied {
				checkVerdict(t, v, false, denied, 554, "5.7.1")
				return
			}
			checkVerdict(t, v, true, tc.rule, 250, "2.1.5")
		})
	}
}

// TestRelayRuleTricks has one row per classic relay trick, each parsed with
// address.Parse as the server does.
func TestRelayRuleTricks(t *testing.T) {
	anon := policy.Client{}
	authed := policy.Client{Authenticated: true}
	const (
		accept = true
		reject = false
	)
	tests := []struct {
		name     string
		client   policy.Client
		rcpt     string
		parseErr bool
		accept   bool
		rule     string
		code     int
		enh      string
	}{
		{name: "percent hack anon", client: anon, rcpt: "user%evil.com@example.org", accept: reject, rule: "relay.routing", code: 550, enh: "5.7.1"},
		{name: "percent hack even authenticated", client: authed, rcpt: "user%evil.com@example.org", accept: reject, rule: "relay.routing", code: 550, enh: "5.7.1"},
		{name: "percent hack to relay domain", client: anon, rcpt: "user%evil.com@backup.example.net", accept: reject, rule: "relay.routing", code: 550, enh: "5.7.1"},
		{name: "bang path", client: anon, rcpt: "evil.com!user@example.org", accept: reject, rule: "relay.routing", code: 550, enh: "5.7.1"},
		{name: "bang path even trusted", client: policy.Client{Trusted: true}, rcpt: "evil.com!user@example.org", accept: reject, rule: "relay.routing", code: 550, enh: "5.7.1"},
		{name: "source route via local domain", client: anon, rcpt: "<@example.org:user@evil.com>", accept: reject, rule: "relay.denied", code: 554, enh: "5.7.1"},
		{name: "source route authenticated goes to final domain", client: authed, rcpt: "<@example.org:user@evil.com>", accept: accept, rule: "relay.authenticated", code: 250, enh: "2.1.5"},
		{name: "source route to local domain", client: anon, rcpt: "<@evil.com:user@example.org>", accept: accept, rule: "relay.local", code: 250, enh: "2.1.5"},
		{name: "quoted @ raw", client: anon, rcpt: `"user@evil.com"@example.org`, accept: reject, rule: "relay.routing", code: 550, enh: "5.7.1"},
		{name: "quoted @ pre-processed by go-smtp", client: anon, rcpt: "user@evil.com@example.org", accept: reject, rule: "relay.routing", code: 550, enh: "5.7.1"},
		{name: "quoted @ authenticated", client: authed, rcpt: `"user@evil.com"@example.org`, accept: reject, rule: "relay.routing", code: 550, enh: "5.7.1"},
		{name: "multiple @", client: anon, rcpt: "a@evil.com@example.org", accept: reject, rule: "relay.routing", code: 550, enh: "5.7.1"},
		{name: "quoted without routing characters is fine", client: anon, rcpt: `"john smith"@example.org`, accept: accept, rule: "relay.local", code: 250, enh: "2.1.5"},
		{name: "ip literal not local", client: anon, rcpt: "user@[192.0.2.1]", accept: reject, rule: "relay.denied", code: 554, enh: "5.7.1"},
		{name: "ip literal not local authenticated", client: authed, rcpt: "user@[192.0.2.1]", accept: accept, rule: "relay.authenticated", code: 250, enh: "2.1.5"},
		{name: "ip literal listed as local", client: anon, rcpt: "user@[127.0.0.1]", accept: accept, rule: "relay.local", code: 250, enh: "2.1.5"},
		{name: "ipv6 literal listed as local", client: anon, rcpt: "user@[IPv6:0::1]", accept: accept, rule: "relay.local", code: 250, enh: "2.1.5"},
		{name: "ipv4-mapped literal of a local one is not local", client: anon, rcpt: "user@[IPv6:::ffff:127.0.0.1]", accept: reject, rule: "relay.denied", code: 554, enh: "5.7.1"},
		{name: "bare ip as domain", client: anon, rcpt: "user@127.0.0.1", parseErr: true},
		{name: "trailing dot", client: anon, rcpt: "user@example.org.", parseErr: true},
		{name: "unqualified", client: anon, rcpt: "user", parseErr: true},
		{name: "mixed case local domain", client: anon, rcpt: "User@EXAMPLE.ORG", accept: accept, rule: "relay.local", code: 250, enh: "2.1.5"},
		{name: "mixed case foreign domain", client: anon, rcpt: "user@EVIL.COM", accept: reject, rule: "relay.denied", code: 554, enh: "5.7.1"},
		{name: "local domain as prefix", client: anon, rcpt: "user@example.org.evil.com", accept: reject, rule: "relay.denied", code: 554, enh: "5.7.1"},
		{name: "local domain as suffix", client: anon, rcpt: "user@evil-example.org", accept: reject, rule: "relay.denied", code: 554, enh: "5.7.1"},
		{name: "subdomain of local domain", client: anon, rcpt: "user@sub.example.org", accept: reject, rule: "relay.denied", code: 554, enh: "5.7.1"},
		{name: "nul byte hiding a foreign domain", client: anon, rcpt: "user@example.org\x00.evil.com", parseErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := address.Parse(tc.rcpt, false)
			if tc.parseErr {
				if err == nil {
					t.Fatalf("address.Parse(%q) = %#v, want an error", tc.rcpt, a)
				}
				return
			}
			if err != nil {
				t.Fatalf("address.Parse(%q): %v", tc.rcpt, err)
			}
			checkVerdict(t, policy.RelayRule(tc.client, testDomains, a), tc.accept, tc.rule, tc.code, tc.enh)
		})
	}
}

// TestForgedLocalSenderCannotRelay: law 2 says MAIL FROM never grants relay.
// RelayRule has no sender input at all, so whatever sender a client claims
// (postmaster@example.org, <>, a trusted user), an unauthenticated client is
// denied every foreign recipient. The shape of the API is checked too, so
// that adding a sender or HELO argument fails this test.
func TestForgedLocalSenderCannotRelay(t *testing.T) {
	rt := reflect.TypeOf(policy.RelayRule)
	want := []reflect.Type{reflect.TypeOf(policy.Client{}), reflect.TypeOf(policy.Domains{}), reflect.TypeOf(address.Addr{})}
	if rt.NumIn() != len(want) {
		t.Fatalf("RelayRule takes %d inputs, want %d (client, domains, recipient)", rt.NumIn(), len(want))
	}
	for i, w := range want {
		if rt.In(i) != w {
			t.Errorf("RelayRule input %d is %v, want %v", i, rt.In(i), w)
		}
	}
	ct := reflect.TypeOf(policy.Client{})
	for i := range ct.NumField() {
		if f := ct.Field(i); f.Type.Kind() != reflect.Bool {
			t.Errorf("Client.%s is %v: the client facts are established booleans, nothing the client said", f.Name, f.Type)
		}
	}

	for _, rcpt := range []string{
		"victim@evil.com",
		"postmaster@evil.com",
		"user@example.com", // close to example.org, still foreign
		"user@org",
		"user@[192.0.2.1]",
		"<@example.org:victim@evil.com>",
		"User@Evil.Com",
	} {
		v := policy.RelayRule(policy.Client{}, testDomains, mustParse(t, rcpt))
		checkVerdict(t, v, false, "relay.denied", 554, "5.7.1")
	}
}

func TestClassify(t *testing.T) {
	for rcpt, want := range map[string]policy.RcptClass{
		"a@example.org":        policy.RcptLocal,
		"a@MAIL.example":       policy.RcptLocal,
		"a@[127.0.0.1]":        policy.RcptLocal,
		"a@backup.example.net": policy.RcptRelayDomain,
		"a@example.net":        policy.RcptRemote,
		"a@[192.0.2.1]":        policy.RcptRemote,
	} {
		if got := testDomains.Classify(mustParse(t, rcpt)); got != want {
			t.Errorf("Classify(%q) = %v, want %v", rcpt, got, want)
		}
	}
	if got := testDomains.Classify(address.Addr{}); got != policy.RcptRemote {
		t.Errorf("Classify(null) = %v, want remote", got)
	}
	if got := (policy.Domains{}).Classify(mustParse(t, "a@example.org")); got != policy.RcptRemote {
		t.Errorf("Classify with no domains = %v, want remote", got)
	}
}

func TestRelayRuleNullRecipient(t *testing.T) {
	v := policy.RelayRule(policy.Client{Authenticated: true}, testDomains, address.Addr{})
	if v.Accept {
		t.Errorf("null recipient accepted: %v", v)
	}
}

// popSet is a POP-before-SMTP registry with fixed addresses.
type popSet map[netip.Addr]bool

func (p popSet) Allowed(ip netip.Addr) bool { return p[ip] }

// TestClientOfRelayInputs: the relay rule's configured inputs (trusted
// networks, POP-before-SMTP and its MX exception) computed by ClientOf,
// then the rule itself, for a foreign and a local recipient.
func TestClientOfRelayInputs(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/48")}
	pop := popSet{netip.MustParseAddr("198.51.100.7"): true}
	tests := []struct {
		name     string
		clients  policy.Clients
		ip       string // "" = the local socket (no address)
		listener string
		authUser string
		rule     string // the relay rule's verdict for a foreign recipient
	}{
		{"trusted network", policy.Clients{Trusted: trusted}, "192.0.2.9", policy.ListenerMX, "", "relay.trusted_network"},
		{"trusted network, IPv4-mapped client", policy.Clients{Trusted: trusted}, "::ffff:192.0.2.9", policy.ListenerMX, "", "relay.trusted_network"},
		{"trusted IPv6 network", policy.Clients{Trusted: trusted}, "2001:db8:0:7::1", policy.ListenerSubmission, "", "relay.trusted_network"},
		{"next to a trusted network", policy.Clients{Trusted: trusted}, "192.0.3.1", policy.ListenerMX, "", "relay.denied"},
		{"loopback not trusted unless listed", policy.Clients{Trusted: trusted}, "127.0.0.1", policy.ListenerMX, "", "relay.denied"},
		{"no trusted networks", policy.Clients{}, "192.0.2.9", policy.ListenerMX, "", "relay.denied"},
		{"pop-before on submission", policy.Clients{PopBefore: pop}, "198.51.100.7", policy.ListenerSubmission, "", "relay.pop_before_smtp"},
		{"pop-before on MX without the exception", policy.Clients{PopBefore: pop}, "198.51.100.7", policy.ListenerMX, "", "relay.denied"},
		{"pop-before on MX with the exception", policy.Clients{PopBefore: pop, PopBeforeOnMX: true}, "198.51.100.7", policy.ListenerMX, "", "relay.pop_before_smtp"},
		{"pop-before, IPv4-mapped client", policy.Clients{PopBefore: pop}, "::ffff:198.51.100.7", policy.ListenerSubmission, "", "relay.pop_before_smtp"},
		{"pop-before, other address", policy.Clients{PopBefore: pop, PopBeforeOnMX: true}, "198.51.100.8", policy.ListenerMX, "", "relay.denied"},
		{"pop-before off", policy.Clients{PopBeforeOnMX: true}, "198.51.100.7", policy.ListenerMX, "", "relay.denied"},
		{"authenticated", policy.Clients{}, "203.0.113.1", policy.ListenerSubmission, "alice@example.org", "relay.authenticated"},
		{"local socket, identified", policy.Clients{Trusted: trusted}, "", policy.ListenerLocal, "root@example.org", "relay.authenticated"},
		{"local socket, nobody", policy.Clients{Trusted: trusted, PopBefore: pop}, "", policy.ListenerLocal, "", "relay.denied"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ip netip.Addr
			if tc.ip != "" {
				ip = netip.MustParseAddr(tc.ip)
			}
			c := tc.clients.ClientOf(ip, tc.listener, tc.authUser)
			v := policy.RelayRule(c, testDomains, mustParse(t, remoteRcpt))
			if v.Rule != tc.rule {
				t.Errorf("client %+v: foreign recipient gets %v, want %s", c, v, tc.rule)
			}
			if v := policy.RelayRule(c, testDomains, mustParse(t, localRcpt)); v.Rule != "relay.local" {
				t.Errorf("client %+v: local recipient gets %v, want relay.local", c, v)
			}
		})
	}
}
