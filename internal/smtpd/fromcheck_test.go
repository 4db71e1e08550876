package smtpd

import (
	"strings"
	"testing"

	"kanmon/internal/policy"
)

// submitAsAlice sends msg (CRLF lines, without the final dot) through the
// submission listener as alice and returns the end-of-DATA reply.
func submitAsAlice(t *testing.T, ts *testServer, msg string) string {
	t.Helper()
	cl := ts.dial(t, RoleSubmission)
	cl.cmd("EHLO client.remote.test", "250 ")
	cl.starttls()
	cl.cmd("EHLO client.remote.test", "250 ")
	cl.cmd("AUTH PLAIN "+plainAuth("alice@example.org", testPassword), "235 2.7.0")
	cl.cmd("MAIL FROM:<alice@example.org>", "250 2.1.0")
	cl.cmd("RCPT TO:<friend@remote.test>", "250 2.1.5")
	cl.cmd("DATA", "354")
	cl.raw(msg + ".\r\n")
	r := cl.reply()
	return strings.Join(r, "\n")
}

// TestHeaderFromAtEndOfData: the header binding reads the header section
// as it streams (folded fields, "From :" obsolete syntax, a second From:
// far down), refuses before the 250 and leaves nothing in the queue.
func TestHeaderFromAtEndOfData(t *testing.T) {
	ts := newTestServer(t, nil)
	big := strings.Repeat("X-Filler: "+strings.Repeat("y", 990)+"\r\n", 70)
	tests := []struct {
		name, msg, want string
	}{
		{"own address", "From: Alice <alice@example.org>\r\nSubject: hi\r\n\r\nbody\r\n", "250 2.0.0"},
		{"alias, folded", "Subject: hi\r\nFrom: Postmaster\r\n <postmaster@example.org>\r\n\r\nbody\r\n", "250 2.0.0"},
		{"stranger", "From: bob@example.org\r\n\r\nbody\r\n", "553 5.7.1 header From: <bob@example.org> is not an address of user alice@example.org"},
		{"no From", "Subject: hi\r\n\r\nFrom: alice@example.org\r\n", "553 5.7.1 the message has no From: header"},
		{"second From, obsolete syntax", "From: alice@example.org\r\nSubject: hi\r\nFROM : bob@example.org\r\n\r\nbody\r\n", "553 5.7.1 the message has 2 From: headers"},
		{"folded display trick", "From: \"ceo@example.org\"\r\n\t<alice@example.org>\r\n\r\nbody\r\n", "553 5.7.1 header From: mentions the address ceo@example.org"},
		{"foreign Sender", "From: alice@example.org\r\nSender: bob@example.org\r\n\r\nbody\r\n", "553 5.7.1 header Sender: <bob@example.org>"},
		{"dot-stuffed header line", "From: alice@example.org\r\n..From: bob@example.org\r\n\r\nbody\r\n", "250 2.0.0"},
		{"header over 64 KiB", "From: alice@example.org\r\n" + big + "\r\nbody\r\n", "552 5.3.4 the header section is over 65536 octets"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(queued(t, ts))
			got := submitAsAlice(t, ts, tt.msg)
			if !strings.HasPrefix(got, tt.want) {
				t.Fatalf("reply %q, want %q", got, tt.want)
			}
			after := len(queued(t, ts))
			if accepted := strings.HasPrefix(tt.want, "250"); accepted != (after == before+1) {
				t.Fatalf("queue went from %d to %d messages (accepted %v)", before, after, accepted)
			}
		})
	}
	if !strings.Contains(ts.logs.String(), `"rule":"data.from_binding"`) || !strings.Contains(ts.logs.String(), `"header_from":"bob@example.org"`) {
		t.Errorf("no decision line with the rule and the header:\n%s", ts.logs.String())
	}
}

// TestHeaderFromLogMode: with from_binding = "log" the message is
// accepted and the would-be refusal logged.
func TestHeaderFromLogMode(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.srv.d.Policy.HeaderBinding.Action = policy.BindingLog
	if got := submitAsAlice(t, ts, "From: bob@example.org\r\n\r\nbody\r\n"); !strings.HasPrefix(got, "250 2.0.0") {
		t.Fatalf("reply %q, want 250 2.0.0", got)
	}
	if l := ts.logs.String(); !strings.Contains(l, `"action":"log"`) || !strings.Contains(l, `"would":"553 5.7.1 header From: <bob@example.org>`) {
		t.Errorf("no log-only decision line:\n%s", l)
	}
}

// TestHeaderFromNotOnMX: mail from outside is not bound (and not kept).
func TestHeaderFromNotOnMX(t *testing.T) {
	ts := newTestServer(t, nil)
	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO client.remote.test", "250 ")
	cl.cmd("MAIL FROM:<someone@remote.test>", "250 2.1.0")
	cl.cmd("RCPT TO:<alice@example.org>", "250 2.1.5")
	cl.cmd("DATA", "354")
	cl.raw("From: ceo@bank.example\r\n\r\nbody\r\n.\r\n")
	cl.expect("250 2.0.0")
}
