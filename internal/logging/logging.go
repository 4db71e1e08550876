// Package logging builds kanmon's structured logger and the ids that tie
// log lines together (see docs/logging.md for the format).
//
// SECURITY: nothing here logs message content or credentials; callers are
// responsible for redacting AUTH payloads before logging a command line.
package logging

import (
	"context"
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
// the given level. When w is a *BufferedWriter, a warning or error is
// written out at once, with the lines before it: an operator watching
// the log for trouble does not wait for the timer.
func New(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if format == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	if bw, ok := w.(*BufferedWriter); ok {
		h = flushHandler{Handler: h, bw: bw}
	}
	return slog.New(h)
}

// flushHandler flushes the buffer after a line at warning level or above.
type flushHandler struct {
	slog.Handler
	bw *BufferedWriter
}

// Handle writes r and flushes when it is a warning or an error.
func (h flushHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		if ferr := h.bw.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

// WithAttrs keeps the flushing around the derived handler.
func (h flushHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return flushHandler{Handler: h.Handler.WithAttrs(as), bw: h.bw}
}

// WithGroup keeps the flushing around the derived handler.
func (h flushHandler) WithGroup(name string) slog.Handler {
	return flushHandler{Handler: h.Handler.WithGroup(name), bw: h.bw}
}
