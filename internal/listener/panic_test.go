package listener

import (
	"encoding/json"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"kanmon/internal/testutil/logbuf"
)

type counter struct{ n atomic.Int64 }

func (c *counter) Inc() { c.n.Add(1) }

// panicLines returns the JSON log lines whose msg is "panic".
func panicLines(t *testing.T, logs *logbuf.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(logs.String(), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not one JSON object: %q: %v", l, err)
		}
		if m["msg"] == "panic" {
			out = append(out, m)
		}
	}
	return out
}

// TestSessionPanicContained: a panic in one session's dialogue ends only
// that connection. Its client hears the protocol's goodbye with the
// connection id; the panic is one log line with the connection id and
// the stack, and counted; the slot is freed; another client's session
// goes on untouched, and the listener keeps accepting.
func TestSessionPanicContained(t *testing.T) {
	h := &echoHandler{}
	panics := &counter{}
	l, a, logs := start(t, Config{Name: "mx", MaxConns: 10, MaxConnsPerClient: 10, Panics: panics}, h)

	other, otherBr, g := dialFrom(t, "127.0.0.2", a)
	if !strings.HasPrefix(g, "HELLO c") {
		t.Fatalf("greeting %q", g)
	}
	nc, br, g := dialFrom(t, "127.0.0.3", a)
	id := strings.TrimPrefix(g, "HELLO ")
	io.WriteString(nc, "PANIC\r\n")
	bye, _ := br.ReadString('\n')
	if want := "BYE internal error (" + id + ")\r\n"; bye != want {
		t.Fatalf("after the panic the client got %q, want %q", bye, want)
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("connection not closed after the goodbye: %q, %v", rest, err)
	}
	waitActive(t, l, 1)

	lines := panicLines(t, logs)
	if len(lines) != 1 {
		t.Fatalf("%d panic log lines, want 1:\n%s", len(lines), logs)
	}
	p := lines[0]
	if p["conn"] != id || p["listener"] != "mx" || p["level"] != "ERROR" {
		t.Errorf("panic line %v: want conn %s, listener mx, level ERROR", p, id)
	}
	if st, _ := p["stack"].(string); !strings.Contains(st, "echoSession") || !strings.Contains(p["err"].(string), "nil map") {
		t.Errorf("panic line lacks the stack or the error: %v", p)
	}
	if n := panics.n.Load(); n != 1 {
		t.Errorf("panic counter %d, want 1", n)
	}
	if h.goodbyes.Load() != 1 {
		t.Errorf("Goodbye called %d times, want 1", h.goodbyes.Load())
	}

	io.WriteString(other, "still here\r\n")
	if echo, err := otherBr.ReadString('\n'); echo != "still here\r\n" {
		t.Fatalf("the other session after the panic: %q, %v", echo, err)
	}
	if _, _, g := dialFrom(t, "127.0.0.4", a); !strings.HasPrefix(g, "HELLO c") {
		t.Fatalf("new connection after the panic greeted %q", g)
	}
}

// TestOpenPanicContained: a panic while a protocol opens its session is
// contained too: logged, counted, connection closed, slot freed.
func TestOpenPanicContained(t *testing.T) {
	h := &echoHandler{}
	h.panicOpen.Store(true)
	panics := &counter{}
	l, a, logs := start(t, Config{Name: "mx", MaxConns: 10, MaxConnsPerClient: 10, Panics: panics}, h)
	_, _, g := dialFrom(t, "127.0.0.2", a)
	if g != "" {
		t.Fatalf("got %q, want the connection closed", g)
	}
	waitActive(t, l, 0)
	if n := len(panicLines(t, logs)); n != 1 || panics.n.Load() != 1 {
		t.Fatalf("%d panic lines, counter %d; want 1 and 1:\n%s", n, panics.n.Load(), logs)
	}
	h.panicOpen.Store(false)
	if _, _, g := dialFrom(t, "127.0.0.2", a); !strings.HasPrefix(g, "HELLO c") {
		t.Fatalf("after the panic: %q", g)
	}
}
