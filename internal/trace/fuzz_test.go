package trace

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzReceived feeds arbitrary messages to the Received walker: it must not
// panic, every origin must be a hop, and the text output must carry no
// control characters.
func FuzzReceived(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.eml")
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("Received: from a (b [1.2.3.4]) by c; Mon, 1 Jan 2024 00:00:00 +0000\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Received(bytes.NewReader(data), Ours("kanmon.example", "198.51.100.0/28"))
		if err != nil {
			return
		}
		if c.Origin < -1 || c.Origin >= len(c.Hops) {
			t.Fatalf("origin %d with %d hops", c.Origin, len(c.Hops))
		}
		for _, in := range c.Inconsistencies {
			if in.Hop < 0 || in.Hop >= len(c.Hops) {
				t.Fatalf("inconsistency on hop %d of %d", in.Hop, len(c.Hops))
			}
		}
		var b bytes.Buffer
		if err := c.WriteText(&b); err != nil {
			t.Fatal(err)
		}
		if strings.ContainsAny(b.String(), "\x1b\x07\x00\r") {
			t.Fatalf("control character in output")
		}
	})
}

// FuzzStory feeds arbitrary logs to Story, asking for each kind of id.
func FuzzStory(f *testing.F) {
	if b, err := os.ReadFile("testdata/kanmon.log"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"msg":"queued","conn":"c1","queue_id":"q1","orig_queue_id":"q1","message_id":"<m1@sender.example>"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, id := range []string{"c1", "q1", "<m1@sender.example>"} {
			st, err := Story(bytes.NewReader(data), id)
			if err != nil {
				continue
			}
			var b bytes.Buffer
			if err := st.WriteText(&b); err != nil {
				t.Fatal(err)
			}
			if strings.ContainsAny(b.String(), "\x1b\x07\x00\r") {
				t.Fatalf("control character in output")
			}
		}
	})
}
