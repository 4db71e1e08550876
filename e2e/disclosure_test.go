package e2e

import (
	"regexp"
	"strings"
	"testing"
)

// versionRE matches what looks like a software version: "1.2", "v0.3.1",
// "kanmon/1", "kanmon 0.1".
var versionRE = regexp.MustCompile(`(?i)(\bv?[0-9]+\.[0-9]+(\.[0-9]+)?\b|kanmon[ /v-]*[0-9])`)

// withoutCodes strips the reply code and enhanced code from each line.
func withoutCodes(r reply) string {
	var out []string
	for _, l := range r.Lines {
		if len(l) > 4 {
			l = l[4:]
		}
		if f := strings.Fields(l); len(f) > 0 && enhancedRE.MatchString(f[0]) {
			l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), f[0]))
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// TestDisclosure: law 7. VRFY and EXPN tell nothing about accounts, and
// nothing tells the software or its version.
func TestDisclosure(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{})
	for _, a := range []string{s.MX, s.Submission} {
		c := dial(t, a)
		ehlo := c.Ehlo("client.remote.test")
		for _, r := range []reply{c.Greeting, ehlo, c.Expect("HELP", 214, "2.0.0")} {
			txt := withoutCodes(r)
			if versionRE.MatchString(txt) {
				t.Errorf("%s: reply discloses a version: %q", a, r)
			}
			if strings.Contains(strings.ToLower(txt), "kanmon") {
				t.Errorf("%s: reply names the software: %q", a, r)
			}
		}
		if !strings.HasPrefix(c.Greeting.Lines[0], "220 "+hostname+" ") {
			t.Errorf("greeting %q does not start with 220 %s", c.Greeting, hostname)
		}

		exist := c.Expect("VRFY "+alice, 252, "2.5.0")
		alias := c.Expect("VRFY postmaster@example.org", 252, "2.5.0")
		missing := c.Expect("VRFY nobody@example.org", 252, "2.5.0")
		bare := c.Expect("VRFY alice", 252, "2.5.0")
		if exist.String() != missing.String() || exist.String() != alias.String() || exist.String() != bare.String() {
			t.Errorf("VRFY replies differ between existing and missing users:\n  %q\n  %q\n  %q\n  %q", exist, alias, missing, bare)
		}
		if strings.Contains(exist.String(), "alice") {
			t.Errorf("VRFY echoes the user: %q", exist)
		}
		e1 := c.Expect("EXPN postmaster@example.org", 502, "5.5.1")
		e2 := c.Expect("EXPN nobody@example.org", 502, "5.5.1")
		if strings.Contains(e1.String(), "alice") || withoutID(e1) != withoutID(e2) {
			t.Errorf("EXPN replies disclose something: %q vs %q", e1, e2)
		}
		c.Expect("QUIT", 221, "2.0.0")
	}
}

// withoutID drops the trailing "[c...]" connection id.
func withoutID(r reply) string { return connIDRE.ReplaceAllString(r.String(), "") }
