package smtpd

import (
	"encoding/json"
	"strings"
	"testing"

	"kanmon/internal/metrics"
	"kanmon/internal/policy"
)

// panicDir is a directory that fails with a nil dereference for one
// address, as a bug in a lookup would.
type panicDir struct {
	policy.Directory
	boom string
}

func (d panicDir) Resolve(addr string) (string, bool) {
	if strings.EqualFold(addr, d.boom) {
		var m *struct{ account string }
		return m.account, true // nil pointer dereference
	}
	return d.Directory.Resolve(addr)
}

// panicCount reads kanmon_panics_total{where} from the registry.
func panicCount(t *testing.T, m *metrics.Metrics, where string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "kanmon_panics_total" {
			continue
		}
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "where" && l.GetValue() == where {
					return s.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// logLinesWithMsg returns the JSON log lines whose msg is msg.
func logLinesWithMsg(t *testing.T, logs string, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(logs, "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not one JSON object: %q: %v", l, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// A panic in one SMTP session (here: a directory lookup for one address)
// ends only that connection: its client gets 421 4.3.0 with the
// connection id, the panic is one log line with that id and the stack,
// kanmon_panics_total{where="smtp"} counts it, and the next client on the
// same server completes a transaction.
func TestSessionPanicContainedToItsConnection(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.srv.d.Policy.Dir = panicDir{Directory: ts.db, boom: "boom@example.org"}

	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO client.remote.test", "250 ")
	cl.cmd("MAIL FROM:<a@remote.test>", "250 2.1.0")
	cl.cmd("RCPT TO:<alice@example.org>", "250 2.1.5")
	got := cl.cmd("RCPT TO:<boom@example.org>", "421 4.3.0")
	i, j := strings.LastIndex(got, "["), strings.LastIndex(got, "]")
	if i < 0 || j < i {
		t.Fatalf("421 reply %q has no connection id", got)
	}
	id := got[i+1 : j]
	cl.closed()

	lines := logLinesWithMsg(t, ts.logs.String(), "panic")
	if len(lines) != 1 {
		t.Fatalf("%d panic log lines, want 1:\n%s", len(lines), ts.logs)
	}
	if p := lines[0]; p["conn"] != id || !strings.Contains(p["stack"].(string), "panicDir.Resolve") {
		t.Errorf("panic line %v: want conn %s and the stack", p, id)
	}
	if n := panicCount(t, ts.srv.d.Metrics, "smtp"); n != 1 {
		t.Errorf("kanmon_panics_total{where=smtp} = %v, want 1", n)
	}

	other := ts.dial(t, RoleMX)
	other.cmd("EHLO client.remote.test", "250 ")
	reply := sendMessage(other, "a@remote.test", []string{"alice@example.org"}, "Subject: after\r\n\r\nhello\r\n")
	if !strings.Contains(reply, "queued as q") {
		t.Fatalf("transaction after the panic: %q", reply)
	}
	other.cmd("QUIT", "221")
}
