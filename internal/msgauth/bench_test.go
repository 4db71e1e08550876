package msgauth

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"kanmon/internal/config"
)

// BenchmarkDATA measures the DATA stage on one signed message of about
// 10 KiB, streamed in 4 KiB chunks as the session writes it: "off" is
// the queue writer alone (no stage), "record" the stage with DKIM and
// DMARC off (header filter and Authentication-Results only), "verify"
// the whole stage (one ed25519 signature verified, DMARC looked up;
// DNS answered from memory, so this is the stage's own CPU cost).
func BenchmarkDATA(b *testing.B) {
	f := newFixture(b)
	msg := []byte(f.sign(b, body+strings.Repeat(strings.Repeat("x", 76)+"\r\n", 130)))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sess := goodSession
	sess.Log = log
	feed := func(w io.Writer) {
		for p := msg; len(p) > 0; {
			n := min(len(p), 4096)
			w.Write(p[:n])
			p = p[n:]
		}
	}
	b.Run("off", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		b.ReportAllocs()
		for b.Loop() {
			feed(io.Discard)
		}
	})
	for _, mode := range []string{config.ActionOff, config.DMARCEnforce} {
		name := map[string]string{config.ActionOff: "record", config.DMARCEnforce: "verify"}[mode]
		c := f.checker(func(c *config.Config) { c.Inbound.DMARC = mode })
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				st := c.Start(io.Discard, sess)
				feed(st)
				if r := st.Finish(); r.Refused {
					b.Fatal(r.Verdict)
				}
			}
		})
	}
}
