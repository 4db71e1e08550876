package logging_test

import (
	"bytes"
	"encoding/json"
	"kanmon/internal/testutil/logbuf"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"kanmon/internal/logging"
)

func TestNewIDUnique(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				id := logging.NewID('q')
				mu.Lock()
				if seen[id] {
					t.Errorf("id %s handed out twice", id)
				}
				seen[id] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for id := range seen {
		if id[0] != 'q' || strings.ContainsAny(id, "/\\. ") || len(id) > 24 {
			t.Fatalf("id %q: want a short q-prefixed name safe as a file name", id)
		}
	}
}

// TestBufferedWriterFlushes: a line reaches the file within about 100ms
// without Close, and Close flushes what is pending.
func TestBufferedWriterFlushes(t *testing.T) {
	t.Parallel()
	out := &logbuf.Buffer{}
	bw := logging.NewBufferedWriter(out)
	log := logging.New(bw, "json", slog.LevelInfo)
	log.Info("hello", "k", "v")
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(out.String(), `"msg":"hello"`) {
		if time.Now().After(deadline) {
			t.Fatal("a log line was not written within 2s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(out.String())), &m); err != nil || m["k"] != "v" {
		t.Errorf("line %q: %v", out.String(), err)
	}
	log.Info("last")
	bw.Close()
	if !strings.Contains(out.String(), `"msg":"last"`) {
		t.Error("Close did not flush the pending line")
	}
	bw.Close() // twice is harmless
}

func TestLevelsAndFormats(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	log := logging.New(&b, "text", slog.LevelWarn)
	log.Info("hidden")
	log.Warn("shown", "rule", "x")
	if strings.Contains(b.String(), "hidden") || !strings.Contains(b.String(), "msg=shown rule=x") {
		t.Errorf("text log at warn: %q", b.String())
	}
}

// TestBufferedWarningAtOnce: a warning is written out at once, with the
// info line buffered before it, without waiting for the timer.
func TestBufferedWarningAtOnce(t *testing.T) {
	t.Parallel()
	out := &logbuf.Buffer{}
	bw := logging.NewBufferedWriter(out)
	defer bw.Close()
	log := logging.New(bw, "json", slog.LevelInfo).With("conn", "c1")
	log.Info("before")
	log.Warn("trouble", "rule", "x")
	got := out.String()
	if !strings.Contains(got, `"msg":"before"`) || !strings.Contains(got, `"msg":"trouble"`) || !strings.Contains(got, `"conn":"c1"`) {
		t.Errorf("after a warning, written: %q", got)
	}
}
