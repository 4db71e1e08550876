package dnsresolve

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestWithTimeoutBoundsEveryQuestion: a DNS server on loopback that
// reads nothing and never answers costs each question the configured
// timeout, not the Go resolver's own retries, and the error is temporary.
func TestWithTimeoutBoundsEveryQuestion(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	r := WithTimeout(New(pc.LocalAddr().String()), 300*time.Millisecond)
	questions := map[string]func(context.Context) error{
		"MX":  func(ctx context.Context) error { _, err := r.LookupMX(ctx, "silent.test"); return err },
		"TXT": func(ctx context.Context) error { _, err := r.LookupTXT(ctx, "silent.test"); return err },
		"IP":  func(ctx context.Context) error { _, err := r.LookupIP(ctx, "silent.test"); return err },
		"PTR": func(ctx context.Context) error {
			_, err := r.LookupAddr(ctx, netip.MustParseAddr("192.0.2.1"))
			return err
		},
	}
	for name, ask := range questions {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		err := ask(ctx)
		took := time.Since(start)
		cancel()
		if err == nil || !IsTemporary(err) {
			t.Errorf("%s: err %v, want a temporary error", name, err)
		}
		if took > 2*time.Second {
			t.Errorf("%s took %v, want about 300ms", name, took)
		}
	}
}
