package smtpd

import (
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// nulSequences are the NUL smuggling probes of smtpsmug and SEC Consult's
// scanner, plus NUL inside a line and in a header. Each is followed by a
// smuggled transaction and the real end of data.
var nulSequences = map[string]string{
	"crlf-nul-dot":     "Subject: s\r\n\r\nhello\r\n\x00.\r\n",
	"lf-nul-dot":       "Subject: s\r\n\r\nhello\n\x00.\r\n",
	"nul-dot-at-start": "\x00.\r\nSubject: s\r\n\r\nhello\r\n",
	"nul-in-line":      "Subject: s\r\n\r\nhel\x00lo\r\n",
	"nul-in-header":    "Subject: s\x00x\r\n\r\nhello\r\n",
	"nul-dot-crlf-nul": "Subject: s\r\n\r\nhello\r\n\x00.\x00\r\n",
}

const smuggled = "MAIL FROM:<admin@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nsmuggled\r\n"

// NUL smuggling: a message containing NUL is refused with 554 5.6.0 on
// every listener, the smuggled commands are never executed, nothing is
// queued, and the session goes on.
func TestNULInDataRefused(t *testing.T) {
	ts := newTestServer(t, nil)
	for _, role := range []Role{RoleMX, RoleSubmission, RoleSMTPS} {
		for name, seq := range nulSequences {
			t.Run(string(role)+"/"+name, func(t *testing.T) {
				cl := ts.dial(t, role)
				from := "a@remote.test"
				rcpt := "alice@example.org"
				switch role {
				case RoleSubmission:
					cl.cmd("EHLO client.remote.test", "250 ")
					cl.starttls()
					fallthrough
				case RoleSMTPS:
					cl.cmd("EHLO client.remote.test", "250 ")
					cl.cmd("AUTH PLAIN "+plainAuth("alice@example.org", testPassword), "235 2.7.0")
					from, rcpt = "alice@example.org", "friend@remote.test"
				default:
					cl.cmd("EHLO client.remote.test", "250 ")
				}
				before := rejectedCount(t, ts, "data.nul")
				cl.cmd("MAIL FROM:<"+from+">", "250 2.1.0")
				cl.cmd("RCPT TO:<"+rcpt+">", "250 2.1.5")
				cl.cmd("DATA", "354")
				cl.raw(seq + smuggled + ".\r\n")
				got := cl.expect("554 5.6.0")
				if !strings.Contains(got, "NUL") {
					t.Fatalf("reply does not name the NUL: %q", got)
				}
				cl.cmd("NOOP", "250 2.0.0")
				if ids := queued(t, ts); len(ids) != 0 {
					t.Fatalf("message with NUL queued: %v", ids)
				}
				if after := rejectedCount(t, ts, "data.nul"); after != before+1 {
					t.Fatalf("data.nul metric went %v -> %v", before, after)
				}
			})
		}
	}
	if n := strings.Count(ts.logs.String(), `"rule":"data.nul"`); n != 3*len(nulSequences) {
		t.Fatalf("%d data.nul decision lines, want %d", n, 3*len(nulSequences))
	}
	// A clean message still flows.
	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO client.remote.test", "250 ")
	sendMessage(cl, "a@remote.test", []string{"alice@example.org"}, "Subject: clean\r\n\r\nhello\r\n")
}

// rejectedCount reads the rejection counter of a rule.
func rejectedCount(t testing.TB, ts *testServer, rule string) float64 {
	t.Helper()
	var m dto.Metric
	if err := ts.srv.d.Metrics.Rejected.WithLabelValues(rule).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
