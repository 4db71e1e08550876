// Package logbuf is a log sink for tests: a buffer safe for the server's
// goroutines writing and the test reading at once, with helpers to find
// the JSON log lines kanmon writes.
//
// SECURITY: test code only.
package logbuf

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
)

// Buffer collects written bytes under a mutex.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Reset forgets everything written so far.
func (l *Buffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}

// Lines returns the JSON log lines whose msg is msg ("" for all), decoded;
// lines that are not JSON are skipped.
func (l *Buffer) Lines(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(l.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		if msg == "" || m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// Has reports whether a JSON log line with msg satisfies match.
func (l *Buffer) Has(msg string, match func(map[string]any) bool) bool {
	for _, m := range l.Lines(msg) {
		if match(m) {
			return true
		}
	}
	return false
}

// Count counts the lines that contain every one of parts.
func (l *Buffer) Count(parts ...string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		ok := line != ""
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			n++
		}
	}
	return n
}
