package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHeaderFromBinding submits with swaks as alice (submission, STARTTLS,
// AUTH) and checks the header binding through the real binary: her own
// address, her alias and a delegated domain pass; every other From: is
// refused at the end of DATA with 553 5.7.1 naming the address, and
// nothing is queued. A trusted network with a trusted_from entry may
// use only its domains.
func TestHeaderFromBinding(t *testing.T) {
	t.Parallel()
	needTool(t, "swaks")
	s := startServer(t, options{users: []string{"bob@example.org"}, set: map[string]string{
		"trusted_networks":        `["127.0.0.1/32"]`,
		"submission.delegate":     `[{ account = "alice@example.org", domains = ["example.net"] }]`,
		"submission.trusted_from": `[{ network = "127.0.0.1/32", domains = ["example.org"] }]`,
	}})
	dataFile := func(name, msg string) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(msg), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	submit := func(t *testing.T, extra ...string) (string, []reply) {
		args := append([]string{"--server", s.Submission, "-tls", "--auth", "PLAIN", "--auth-user", alice,
			"--auth-password", alicePassword, "--from", alice, "--to", "friend@remote.test"}, extra...)
		out, _ := swaks(t, args...)
		return out, swaksReplies(out)
	}
	for _, tc := range []struct{ name, from string }{
		{"own address", "Alice <alice@example.org>"},
		{"own address, upper case", "ALICE@EXAMPLE.ORG"},
		{"alias", "Postmaster <postmaster@example.org>"},
		{"delegated domain", "Newsletter <news@example.net>"},
	} {
		t.Run("accept/"+tc.name, func(t *testing.T) {
			out, rs := submit(t, "--header", "From: "+tc.from)
			if !hasReply(rs, 250, "2.0.0") || queueIDOf(out) == "" {
				t.Fatalf("From: %s not accepted:\n%s", tc.from, out)
			}
		})
	}
	refusals := []struct {
		name string
		args []string
		want string
	}{
		{"another user", []string{"--header", "From: bob@example.org"}, "<bob@example.org> is not an address of user alice@example.org"},
		{"foreign domain", []string{"--header", "From: CEO <ceo@bank.example>"}, "<ceo@bank.example>"},
		{"second address", []string{"--header", "From: alice@example.org, bob@example.org"}, "names 2 addresses"},
		{"display name address", []string{"--header", `From: "bob@example.org" <alice@example.org>`}, "mentions the address bob@example.org"},
		{"encoded-word display name", []string{"--header", "From: =?utf-8?b?Ym9iQGV4YW1wbGUub3Jn?= <alice@example.org>"}, "mentions the address bob@example.org"},
		{"encoded-word address", []string{"--header", "From: =?utf-8?b?Ym9i?=@example.org"}, "encoded-word"},
		{"group", []string{"--header", "From: staff: alice@example.org;"}, "group syntax"},
		{"comment", []string{"--header", "From: alice@example.org (bob@example.org)"}, "mentions the address bob@example.org"},
		{"quoted local part", []string{"--header", `From: "bob@example.org"@example.net`}, "'@'"},
		{"foreign Sender", []string{"--header", "Sender: bob@example.org"}, "header Sender: <bob@example.org>"},
		{"two From fields", []string{"--data", dataFile("two", "From: alice@example.org\r\nFrom: bob@example.org\r\nSubject: x\r\n\r\nbody\r\n")}, "2 From: headers"},
		{"missing From", []string{"--data", dataFile("none", "Subject: no sender\r\n\r\nbody\r\n")}, "no From: header"},
	}
	for _, tc := range refusals {
		t.Run("refuse/"+tc.name, func(t *testing.T) {
			before := len(s.QueueIDs(t))
			out, rs := submit(t, tc.args...)
			if !hasReply(rs, 553, "5.7.1") || !strings.Contains(out, tc.want) {
				t.Fatalf("want 553 5.7.1 mentioning %q:\n%s", tc.want, out)
			}
			if after := len(s.QueueIDs(t)); after != before {
				t.Errorf("queue went from %d to %d messages after a refusal", before, after)
			}
		})
	}
	t.Run("trusted network", func(t *testing.T) {
		out, _ := swaks(t, "--server", s.MX, "--from", "app@example.org", "--to", "friend@remote.test", "--header", "From: ceo@bank.example")
		if rs := swaksReplies(out); !hasReply(rs, 553, "5.7.1") || !strings.Contains(out, "trusted network 127.0.0.1/32") {
			t.Fatalf("trusted network sent an undelegated From:\n%s", out)
		}
		out, _ = swaks(t, "--server", s.MX, "--from", "app@example.org", "--to", "friend@remote.test", "--header", "From: App <app@example.org>")
		if !hasReply(swaksReplies(out), 250, "2.0.0") {
			t.Fatalf("trusted network refused its own domain:\n%s", out)
		}
	})
	l := s.WaitLog(t, "from binding decision", func(l logLine) bool {
		return l.str("rule") == "data.from_binding" && l.str("header_from") == "bob@example.org" && l.str("user") == alice
	})
	if l.str("line") == "" || l.str("conn") == "" {
		t.Errorf("decision line lacks the reply or the connection id: %v", l)
	}
}
