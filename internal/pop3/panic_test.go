package pop3

import (
	"strings"
	"sync/atomic"
	"testing"

	"kanmon/internal/auth"
)

// panicStore fails with a nil dereference for one user, as a bug in an
// account lookup would.
type panicStore struct {
	auth.Store
	boom string
}

func (p panicStore) PasswordHash(a string) (string, bool) {
	if a == p.boom {
		var h *struct{ hash string }
		return h.hash, true // nil pointer dereference
	}
	return p.Store.PasswordHash(a)
}

type panicCounter struct{ n atomic.Int64 }

func (c *panicCounter) Inc() { c.n.Add(1) }

// A panic in one POP3 session ends only that connection: its client gets
// -ERR [SYS/TEMP] with the connection id, the panic is one log line with
// that id and the stack and is counted, and another client on the same
// server then logs in and reads its mailbox.
func TestSessionPanicContainedToItsConnection(t *testing.T) {
	panics := &panicCounter{}
	e := newEnv(t, func(e *env, c *Config) {
		e.auth = auth.New(panicStore{Store: store(t), boom: "boom@example.com"}, e.throttle)
		c.Auth = e.auth
		c.Panics = panics
	})
	e.deliver(alice, "Subject: one\r\n\r\nhello\r\n")

	cl := dialTLS(t, e.pop3sAddr)
	cl.must("USER boom@example.com", "+OK")
	got := cl.cmd("PASS whatever")
	if !strings.HasPrefix(got, "-ERR [SYS/TEMP] ") {
		t.Fatalf("after the panic: %q, want -ERR [SYS/TEMP]", got)
	}
	i, j := strings.LastIndex(got, "("), strings.LastIndex(got, ")")
	if i < 0 || j < i {
		t.Fatalf("reply %q has no connection id", got)
	}
	id := got[i+1 : j]
	if l := cl.line(); !strings.HasPrefix(l, "<closed: EOF>") {
		t.Fatalf("connection not closed after the goodbye: %q", l)
	}

	var lines []map[string]any
	for _, l := range e.logLines() {
		if l["msg"] == "panic" {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("%d panic log lines, want 1:\n%s", len(lines), e.logs)
	}
	if p := lines[0]; p["conn"] != id || !strings.Contains(p["stack"].(string), "panicStore.PasswordHash") {
		t.Errorf("panic line %v: want conn %s and the stack", p, id)
	}
	if n := panics.n.Load(); n != 1 {
		t.Errorf("panic counter %d, want 1", n)
	}

	other := dialTLS(t, e.pop3sAddr)
	other.must("USER "+alice, "+OK")
	other.must("PASS "+alicePass, "+OK")
	other.must("STAT", "+OK 1 ")
	other.must("QUIT", "+OK")
}
