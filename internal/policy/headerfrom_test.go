package policy_test

import (
	"net/netip"
	"strings"
	"testing"

	"kanmon/internal/policy"
)

// aliasDir owns addresses the way internal/directory does: an account its
// own address and the aliases that resolve to it, case folded.
type aliasDir map[string]string // address -> account

func (d aliasDir) Resolve(addr string) (string, bool) {
	a, ok := d[strings.ToLower(addr)]
	return a, ok
}

func (d aliasDir) MaySendAs(account, addr string) bool {
	a := strings.ToLower(addr)
	return a == account || d[a] == account
}

func newBindingEngine(action string) *policy.Engine {
	dir := aliasDir{
		"alice@example.org":        "alice@example.org",
		"sales@example.org":        "alice@example.org",
		"mallory@example.org":      "mallory@example.org",
		"alice@xn--exmple-cua.org": "alice@example.org",
		"cron@example.org":         "cron@example.org",
	}
	e := policy.NewEngine(testDomains, dir, true)
	e.HeaderBinding = policy.HeaderBinding{
		Action:    action,
		Delegates: map[string][]string{"alice@example.org": {"example.net"}},
		TrustedFrom: []policy.TrustedFrom{
			{Network: netip.MustParsePrefix("10.1.0.0/16"), Domains: []string{"example.org"}},
		},
	}
	return e
}

var (
	aliceSess   = &policy.Session{Client: policy.Client{Authenticated: true}, Listener: policy.ListenerSubmission, AuthUser: "alice@example.org"}
	trustedIP   = netip.MustParseAddr("10.1.2.3")
	unlistedIP  = netip.MustParseAddr("10.2.2.3")
	trustedSess = &policy.Session{Client: policy.Client{Trusted: true}, Listener: policy.ListenerMX}
)

func TestHeaderFromAccepts(t *testing.T) {
	e := newBindingEngine(policy.BindingReject)
	tests := []struct {
		name string
		s    *policy.Session
		ip   netip.Addr
		h    policy.Originators
	}{
		{"own address", aliceSess, netip.Addr{}, policy.Originators{From: []string{"Alice <alice@example.org>"}}},
		{"own address, other case", aliceSess, netip.Addr{}, policy.Originators{From: []string{"ALICE@Example.ORG"}}},
		{"alias", aliceSess, netip.Addr{}, policy.Originators{From: []string{"Sales <sales@example.org>"}}},
		{"delegated domain", aliceSess, netip.Addr{}, policy.Originators{From: []string{"news@example.net"}}},
		{"delegated domain, other case", aliceSess, netip.Addr{}, policy.Originators{From: []string{"news@EXAMPLE.NET"}}},
		{"idna u-label of an owned a-label", aliceSess, netip.Addr{}, policy.Originators{From: []string{"alice@exämple.org"}}},
		{"own sender", aliceSess, netip.Addr{}, policy.Originators{From: []string{"news@example.net"}, Sender: []string{"alice@example.org"}}},
		{"display name that is the own address", aliceSess, netip.Addr{}, policy.Originators{From: []string{`"alice@example.org" <alice@example.org>`}}},
		{"trusted network, its domain", trustedSess, trustedIP, policy.Originators{From: []string{"anyone@example.org"}}},
		{"sendmail user that is an account", &policy.Session{Client: policy.Client{Authenticated: true}, Listener: policy.ListenerLocal, AuthUser: "cron@example.org"}, netip.Addr{}, policy.Originators{From: []string{"cron@example.org"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, applies := e.HeaderFrom(tt.s, tt.ip, tt.h)
			if !applies || !v.Accept {
				t.Fatalf("HeaderFrom = %v (applies %v), want accepted", v, applies)
			}
		})
	}
}

func TestHeaderFromRefusesEveryMismatch(t *testing.T) {
	e := newBindingEngine(policy.BindingReject)
	tests := []struct {
		name string
		s    *policy.Session
		ip   netip.Addr
		h    policy.Originators
		code int
		enh  string
		want string // in the reason
	}{
		{"another user", aliceSess, netip.Addr{}, policy.Originators{From: []string{"mallory@example.org"}}, 553, "5.7.1", "<mallory@example.org> is not an address of user alice@example.org"},
		{"foreign domain", aliceSess, netip.Addr{}, policy.Originators{From: []string{"ceo@bank.example"}}, 553, "5.7.1", "<ceo@bank.example>"},
		{"undelegated subdomain", aliceSess, netip.Addr{}, policy.Originators{From: []string{"news@sub.example.net"}}, 553, "5.7.1", "<news@sub.example.net>"},
		{"no From", aliceSess, netip.Addr{}, policy.Originators{}, 553, "5.7.1", "no From: header"},
		{"two From fields", aliceSess, netip.Addr{}, policy.Originators{From: []string{"alice@example.org", "mallory@example.org"}}, 553, "5.7.1", "2 From: headers"},
		{"second address in From", aliceSess, netip.Addr{}, policy.Originators{From: []string{"alice@example.org, ceo@example.org"}}, 553, "5.7.1", "2 addresses"},
		{"display name of another address", aliceSess, netip.Addr{}, policy.Originators{From: []string{`"ceo@example.org" <alice@example.org>`}}, 553, "5.7.1", "ceo@example.org"},
		{"display name trick on a stranger", aliceSess, netip.Addr{}, policy.Originators{From: []string{`"alice@example.org" <mallory@example.org>`}}, 553, "5.7.1", "mallory@example.org"},
		{"encoded-word display name", aliceSess, netip.Addr{}, policy.Originators{From: []string{"=?utf-8?b?Y2VvQGV4YW1wbGUub3Jn?= <alice@example.org>"}}, 553, "5.7.1", "ceo@example.org"},
		{"encoded-word address", aliceSess, netip.Addr{}, policy.Originators{From: []string{"=?utf-8?b?YWxpY2U=?=@example.org"}}, 553, "5.7.1", "encoded-word"},
		{"group", aliceSess, netip.Addr{}, policy.Originators{From: []string{"team: alice@example.org;"}}, 553, "5.7.1", "group"},
		{"comment", aliceSess, netip.Addr{}, policy.Originators{From: []string{"alice@example.org (ceo@example.org)"}}, 553, "5.7.1", "ceo@example.org"},
		{"quoted local part with @", aliceSess, netip.Addr{}, policy.Originators{From: []string{`"alice@example.org"@example.com`}}, 553, "5.7.1", "'@'"},
		{"idna form of a stranger's domain", aliceSess, netip.Addr{}, policy.Originators{From: []string{"alice@xn--exmple-qua.org"}}, 553, "5.7.1", "not an address of user"},
		{"foreign Sender", aliceSess, netip.Addr{}, policy.Originators{From: []string{"alice@example.org"}, Sender: []string{"mallory@example.org"}}, 553, "5.7.1", "header Sender: <mallory@example.org>"},
		{"two Sender fields", aliceSess, netip.Addr{}, policy.Originators{From: []string{"alice@example.org"}, Sender: []string{"alice@example.org", "alice@example.org"}}, 553, "5.7.1", "2 Sender: headers"},
		{"header unread", aliceSess, netip.Addr{}, policy.Originators{From: []string{"alice@example.org"}, Unread: "the header section is over 65536 octets"}, 552, "5.3.4", "over 65536 octets"},
		{"trusted network, other domain", trustedSess, trustedIP, policy.Originators{From: []string{"ceo@bank.example"}}, 553, "5.7.1", "trusted network 10.1.0.0/16"},
		{"sendmail account, other address", &policy.Session{Client: policy.Client{Authenticated: true}, Listener: policy.ListenerLocal, AuthUser: "cron@example.org"}, netip.Addr{}, policy.Originators{From: []string{"alice@example.org"}}, 553, "5.7.1", "user cron@example.org"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, applies := e.HeaderFrom(tt.s, tt.ip, tt.h)
			if !applies || v.Accept {
				t.Fatalf("HeaderFrom = %v (applies %v), want refused", v, applies)
			}
			wantRule := policy.RuleFromBinding
			if tt.code == 552 {
				wantRule = "data.header_size"
			}
			if v.Rule != wantRule || v.Code != tt.code || v.Enhanced != tt.enh || !strings.Contains(v.Reason, tt.want) {
				t.Fatalf("HeaderFrom = %v, want %s %d %s containing %q", v, wantRule, tt.code, tt.enh, tt.want)
			}
		})
	}
}

// TestHeaderFromLeavesOthersAlone: mail from outside, a trusted network
// without a trusted_from entry, a sendmail-socket address that is no
// account, and the switch turned off are not checked.
func TestHeaderFromLeavesOthersAlone(t *testing.T) {
	forged := policy.Originators{From: []string{"ceo@bank.example"}}
	e := newBindingEngine(policy.BindingReject)
	for name, c := range map[string]struct {
		s  *policy.Session
		ip netip.Addr
	}{
		"mx":                   {&policy.Session{Listener: policy.ListenerMX}, netip.MustParseAddr("192.0.2.1")},
		"trusted, no entry":    {trustedSess, unlistedIP},
		"sendmail, no account": {&policy.Session{Client: policy.Client{Authenticated: true}, Listener: policy.ListenerLocal, AuthUser: "root@example.org"}, netip.Addr{}},
	} {
		if v, applies := e.HeaderFrom(c.s, c.ip, forged); applies {
			t.Errorf("%s: HeaderFrom = %v, want not applied", name, v)
		}
	}
	if v, applies := newBindingEngine(policy.BindingOff).HeaderFrom(aliceSess, netip.Addr{}, forged); applies {
		t.Errorf("from_binding off: HeaderFrom = %v, want not applied", v)
	}
}
