package trace

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"kanmon/internal/logging"
)

func openLog(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Open("testdata/kanmon.log")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// onlyReader hides Seek, like a pipe.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func msgs(st *Narrative) []string {
	var out []string
	for _, e := range st.Events {
		id := e.Conn
		if e.QueueID != "" {
			id = e.QueueID
		}
		out = append(out, id+":"+e.Msg)
	}
	return out
}

func TestStoryOfConnection(t *testing.T) {
	st, err := Story(openLog(t), "c1")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Conns, []string{"c1"}) || !slices.Equal(st.QueueIDs, []string{"q1", "q2", "q3"}) {
		t.Errorf("conns %v queue ids %v, want c1 and q1 q2 q3 (q3 is the bounce of q2)", st.Conns, st.QueueIDs)
	}
	for _, e := range st.Events {
		if e.Conn == "c2" || e.Conn == "c3" || e.QueueID == "q4" || e.QueueID == "q5" {
			t.Errorf("foreign line in the story: line %d %s %s %s", e.Line, e.Conn, e.QueueID, e.Msg)
		}
	}
	if len(st.Events) != 19 {
		t.Errorf("%d events, want 19: %v", len(st.Events), msgs(st))
	}
	for i := 1; i < len(st.Events); i++ {
		if st.Events[i].Time.Before(st.Events[i-1].Time) {
			t.Fatalf("events not in time order at %d: %v", i, msgs(st))
		}
	}
	if st.Skipped != 2 {
		t.Errorf("skipped %d lines, want 2 (the plain text and the JSON array)", st.Skipped)
	}
	if len(st.Connections) != 1 {
		t.Fatalf("connections %+v", st.Connections)
	}
	c := st.Connections[0]
	if c.Remote != "203.0.113.5:40001" || c.PTR != "mail.sender.example" || c.TLS != "TLS1.3 TLS_AES_128_GCM_SHA256" || c.Listener != "mx" || c.End.Sub(c.Start) != 3500*time.Millisecond {
		t.Errorf("connection summary %+v", c)
	}
	if len(st.Messages) != 3 {
		t.Fatalf("messages %+v", st.Messages)
	}
	q1 := st.Messages[0]
	if q1.MessageID != "<m1@sender.example>" || q1.From != "news@sender.example" || q1.Conn != "c1" || len(q1.Rcpts) != 2 {
		t.Errorf("q1 summary %+v", q1)
	}
	bob := q1.Rcpts[1]
	if bob.Rcpt != "bob@remote.example" || bob.Result != "delivered" || bob.Attempts != 2 || !strings.Contains(bob.Detail, "queued as ABC") {
		t.Errorf("bob: %+v", bob)
	}
	if q2 := st.Messages[1]; q2.Rcpts[0].Result != "failed" {
		t.Errorf("q2: %+v", q2)
	}
}

func TestStoryOfQueueIDAndMessageID(t *testing.T) {
	for _, id := range []string{"q1", "<m1@sender.example>", "m1@sender.example", " <M1@sender.example> "} {
		st, err := Story(openLog(t), id)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if !slices.Equal(st.Conns, []string{"c1"}) || !slices.Equal(st.QueueIDs, []string{"q1"}) {
			t.Errorf("%s: conns %v queue ids %v, want c1 and q1 only", id, st.Conns, st.QueueIDs)
		}
		for _, e := range st.Events {
			if e.QueueID == "q3" || e.Msg == "delivery" && e.QueueID != "q1" {
				t.Errorf("%s: line of another message: %+v", id, e)
			}
		}
		var deliveries int
		for _, e := range st.Events {
			if e.Msg == "delivery" {
				deliveries++
			}
		}
		if deliveries != 3 {
			t.Errorf("%s: %d delivery lines, want 3", id, deliveries)
		}
	}
	// A bounce leads back to the message it reports on and its connection.
	st, err := Story(openLog(t), "q3")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.QueueIDs, []string{"q2", "q3"}) || !slices.Equal(st.Conns, []string{"c1"}) {
		t.Errorf("q3: conns %v queue ids %v", st.Conns, st.QueueIDs)
	}
}

func TestStoryNotFound(t *testing.T) {
	_, err := Story(openLog(t), "nope")
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("err = %v, want ErrNotFound", err)
	}
	_, err = Story(openLog(t), "")
	if err == nil {
		t.Error("empty id accepted")
	}
}

func TestStoryFromAPipe(t *testing.T) {
	data, err := os.ReadFile("testdata/kanmon.log")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"c1", "q5", "<spam-1@kanmon.example>"} {
		fromFile, err := Story(openLog(t), id)
		if err != nil {
			t.Fatal(err)
		}
		fromPipe, err := Story(onlyReader{bytes.NewReader(data)}, id)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(msgs(fromFile), msgs(fromPipe)) || fromFile.Skipped != fromPipe.Skipped {
			t.Errorf("%s: file and pipe differ:\n%v\n%v", id, msgs(fromFile), msgs(fromPipe))
		}
	}
}

func TestStoryText(t *testing.T) {
	st, err := Story(openLog(t), "q5")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := st.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"Story of q5",
		"connect from 192.0.2.99:61000 on submission",
		"TLS established: TLS1.3 TLS_AES_256_GCM_SHA384",
		"C: AUTH PLAIN [redacted]",
		"authenticated as alice (PLAIN)",
		"decision relay.authenticated (250) for <someone@remote.example>",
		"queued from <alice@kanmon.example> to someone@remote.example, 5000 bytes, Message-ID <spam-1@kanmon.example>",
		"delivery to <someone@remote.example> via mx1.remote.example: delivered (250 ok)",
		"connection c3: from 192.0.2.99:61000 on submission, TLS TLS1.3 TLS_AES_256_GCM_SHA384, authenticated as alice",
		"someone@remote.example: delivered after 1 attempt(s)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("story lacks %q:\n%s", want, out)
		}
	}

	st, err = Story(openLog(t), "c1")
	if err != nil {
		t.Fatal(err)
	}
	b.Reset()
	_ = st.WriteText(&b)
	out = b.String()
	for _, want := range []string{
		"decision relay.denied (554 5.7.1) for <victim@elsewhere.example>: relaying denied",
		`C: MAIL FROM:<\x1b[31mevil@sender.example>`,
		"WARN delivery to <bob@remote.example> via mx.remote.example: deferred (451 4.7.1 greylisted)",
		"queue: bounced",
		"2 unreadable lines",
		"disconnect (quit) after 3.5s [messages=2]",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("story lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Error("a control character reached the output")
	}
}

// TestStoryReadsSlogOutput writes lines through kanmon's own logger, so a
// change in the log format breaks this test rather than the trace command.
func TestStoryReadsSlogOutput(t *testing.T) {
	var buf bytes.Buffer
	log := logging.New(&buf, "json", slog.LevelInfo)
	conn := logging.NewID('c')
	q := logging.NewID('q')
	cl := log.With("conn", conn, "listener", "mx")
	cl.Info("connect", "remote", "192.0.2.1:1234", "ptr", "client.example")
	cl.Info("decision", "rule", "rcpt.local", "code", 250, "addr", "a@kanmon.example")
	cl.Info("queued", "queue_id", q, "from", "b@client.example", "rcpts", []string{"a@kanmon.example"}, "size", 10, "message_id", "<x@client.example>")
	log.Info("delivery", "queue_id", q, "rcpt", "a@kanmon.example", "result", "delivered", "mx", "local")
	cl.Info("disconnect", "reason", "quit")

	st, err := Story(bytes.NewReader(buf.Bytes()), "x@client.example")
	if err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if len(st.Events) != 5 || st.Skipped != 0 {
		t.Errorf("%d events, %d skipped:\n%s", len(st.Events), st.Skipped, buf.String())
	}
	if st.Events[0].Time.IsZero() {
		t.Error("slog's time was not parsed")
	}
	if len(st.Messages) != 1 || st.Messages[0].Rcpts[0].Result != "delivered" {
		t.Errorf("messages %+v", st.Messages)
	}
}

func TestStoryLongLineIsSkipped(t *testing.T) {
	long := `{"msg":"cmd","conn":"c9","line":"` + strings.Repeat("x", maxLogLine) + `"}` + "\n"
	log := long + `{"msg":"connect","conn":"c9","remote":"192.0.2.1:1"}` + "\n"
	st, err := Story(onlyReader{strings.NewReader(log)}, "c9")
	if err != nil {
		t.Fatal(err)
	}
	if st.Skipped != 1 || len(st.Events) != 1 {
		t.Errorf("skipped %d, events %d", st.Skipped, len(st.Events))
	}
}
