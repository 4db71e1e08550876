// Package logging builds kanmon's structured logger and the ids that tie
// log lines together (see docs/logging.md for the format).
//
// SECURITY: nothing here logs message content or credentials; callers are
// responsible for redacting AUTH payloads before logging a command line.
package logging

import (
	"crypto/rand"
	"encoding/binary"
	"io"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"
)

var (
	idCounter atomic.Uint64
	idPrefix  = func() uint64 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		return binary.LittleEndian.Uint64(b[:]) & 0xffff
	}()
)

// NewID returns a short unique id starting with kind ('c' for a connection,
// 'q' for a queued message): time, a per-process random part and a counter,
// in base 36. Ids sort roughly by creation time.
func NewID(kind byte) string {
	buf := make([]byte, 0, 24)
	buf = append(buf, kind)
	buf = strconv.AppendUint(buf, uint64(time.Now().Unix()), 36)
	buf = strconv.AppendUint(buf, idPrefix, 36)
	buf = append(buf, 'x')
	buf = strconv.AppendUint(buf, idCounter.Add(1), 36)
	return string(buf)
}

// New returns a logger writing JSON (format "json") or text lines to w at
// the given level.
func New(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
