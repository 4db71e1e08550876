package smtpd

import (
	"strings"
	"sync/atomic"
	"testing"
)

// BenchmarkAccept measures the accept path end to end over loopback: one
// message (about 2 KiB) per iteration through EHLO-less pipelined
// transactions on parallel connections, each acknowledged only after the
// queue's fsync. Report CPU per message with -cpuprofile or
// `go test -bench Accept -benchtime 5000x` and the time output.
func BenchmarkAccept(b *testing.B) {
	ts := newTestServer(b, nil)
	body := "Subject: bench\r\n\r\n" + strings.Repeat(strings.Repeat("x", 70)+"\r\n", 28)
	var n atomic.Int64
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		cl := ts.dial(b, RoleMX)
		cl.cmd("EHLO bench.remote.test", "250 ")
		for pb.Next() {
			cl.raw("MAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
			cl.expect("250 2.1.0")
			cl.expect("250 2.1.5")
			cl.expect("354")
			cl.raw(body + ".\r\n")
			cl.expect("250 2.0.0")
			n.Add(1)
		}
	})
	b.StopTimer()
	if got := len(queued(b, ts)); int64(got) != n.Load() {
		b.Fatalf("queued %d, acknowledged %d", got, n.Load())
	}
}
