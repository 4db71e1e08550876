package config_test

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"kanmon/internal/config"
)

// TestSubmissionBadConfig: each broken [submission] setting is refused
// with its key and the line of its entry.
func TestSubmissionBadConfig(t *testing.T) {
	t.Parallel()
	trusted := "trusted_networks = [\"10.0.0.0/8\"]\n"
	cases := []badCase{
		{name: "unknown from_binding action", toml: base + "\n[submission]\nfrom_binding = \"warn\"\n", key: "submission.from_binding", at: "from_binding =", msg: `"warn" is not one of reject, log, off`},
		{name: "delegate account not an address", toml: base + "\n[[submission.delegate]]\naccount = \"alice\"\ndomains = [\"example.net\"]\n", key: "submission.delegate.account", at: "[[submission.delegate]]", msg: `"alice" is not an address`},
		{name: "delegate without domains", toml: base + "\n[[submission.delegate]]\naccount = \"alice@example.org\"\ndomains = []\n", key: "submission.delegate.domains", at: "[[submission.delegate]]", msg: "at least one domain"},
		{name: "delegate bad domain, second entry", toml: base + "\n[[submission.delegate]]\naccount = \"a@example.org\"\ndomains = [\"example.net\"]\n\n[[submission.delegate]] # second\naccount = \"b@example.org\"\ndomains = [\"bad domain\"]\n", key: "submission.delegate.domains", at: "# second", msg: `"bad domain" is not a valid domain`},
		{name: "trusted_from network not a network", toml: trusted + base + "\n[[submission.trusted_from]]\nnetwork = \"10.0.0.1\"\ndomains = [\"example.org\"]\n", key: "submission.trusted_from.network", at: "[[submission.trusted_from]]", msg: "is not a network"},
		{name: "trusted_from network not trusted", toml: trusted + base + "\n[[submission.trusted_from]]\nnetwork = \"192.168.0.0/16\"\ndomains = [\"example.org\"]\n", key: "submission.trusted_from.network", at: "[[submission.trusted_from]]", msg: "not inside trusted_networks"},
		{name: "trusted_from wider than trusted", toml: trusted + base + "\n[[submission.trusted_from]]\nnetwork = \"0.0.0.0/0\"\ndomains = [\"example.org\"]\n", key: "submission.trusted_from.network", at: "[[submission.trusted_from]]", msg: "not inside trusted_networks"},
	}
	const path = "/srv/mail/kanmon.toml"
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tc.toml), path)
			var errs *config.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T %v is not *config.Errors\nconfig:\n%s", err, err, tc.toml)
			}
			want := fmt.Sprintf("%s:%d: %s: ", path, lineContaining(tc.toml, tc.at), tc.key)
			if got := err.Error(); !strings.Contains(got, want) || !strings.Contains(got, tc.msg) || len(errs.List) != 1 {
				t.Errorf("error:\n%s\nwant one error containing %q and %q", got, want, tc.msg)
			}
		})
	}
}

// TestSubmissionConfig: a valid [submission] section is read, and its
// domains and networks come out in the forms the binding compares.
func TestSubmissionConfig(t *testing.T) {
	t.Parallel()
	toml := "trusted_networks = [\"10.0.0.0/8\"]\n" + base + `
[submission]
from_binding = "log"

[[submission.delegate]]
account = "alice@example.org"
domains = ["Example.NET", "exämple.org"]

[[submission.trusted_from]]
network = "10.1.0.0/16"
domains = ["example.org"]
`
	c, err := config.Parse([]byte(toml), "/srv/mail/kanmon.toml")
	if err != nil {
		t.Fatal(err)
	}
	s := c.Submission
	if s.FromBinding != "log" || len(s.Delegate) != 1 || len(s.TrustedFrom) != 1 {
		t.Fatalf("submission = %+v", s)
	}
	if got := config.FromDomains(s.Delegate[0].Domains); !reflect.DeepEqual(got, []string{"example.net", "xn--exmple-cua.org"}) {
		t.Errorf("FromDomains = %q", got)
	}
	if p := s.TrustedFrom[0].TrustedFromPrefix(); p != netip.MustParsePrefix("10.1.0.0/16") {
		t.Errorf("TrustedFromPrefix = %v", p)
	}
	if d := config.Default().Submission; d.FromBinding != "reject" {
		t.Errorf("default from_binding = %q, want reject", d.FromBinding)
	}
}
