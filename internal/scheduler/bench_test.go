package scheduler

import (
	"log/slog"
	"path/filepath"
	"testing"

	"kanmon/internal/logging"
	"kanmon/internal/queue"
	"kanmon/internal/testutil/logbuf"
)

// BenchmarkEnqueueHandOff measures handing a committed message to the
// scheduler: "envelope" is Enqueue with the envelope in memory, as smtpd
// does it; "reopen" adds what the hand-off by id cost before, opening
// and decoding the queue file to learn the lane.
func BenchmarkEnqueueHandOff(b *testing.B) {
	spool, err := queue.Open(filepath.Join(b.TempDir(), "queue"), queue.Limits{})
	if err != nil {
		b.Fatal(err)
	}
	w, err := spool.Create(queue.Envelope{From: "alice@example.org", Origin: queue.OriginAuthenticated,
		Recipients: []queue.Recipient{{Addr: "bob@remote.test"}, {Addr: "carol@example.org", Account: "carol@example.org"}}})
	if err != nil {
		b.Fatal(err)
	}
	w.Write([]byte("Subject: bench\r\n\r\nbody\r\n"))
	if err := w.Commit(); err != nil {
		b.Fatal(err)
	}
	env := w.Envelope()
	s := &Scheduler{Spool: spool, Log: logging.New(&logbuf.Buffer{}, "json", slog.LevelInfo)}
	b.Run("envelope", func(b *testing.B) {
		for b.Loop() {
			s.Enqueue(env)
		}
	})
	b.Run("reopen", func(b *testing.B) {
		for b.Loop() {
			m, err := spool.Open(env.ID)
			if err != nil {
				b.Fatal(err)
			}
			e := m.Envelope
			m.Close()
			s.Enqueue(&e)
		}
	})
}
