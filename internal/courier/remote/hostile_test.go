package remote

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"kanmon/internal/courier"
	"kanmon/internal/testutil/smtppeer"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hostilePeer is a receiving server on loopback written by an attacker:
// script runs on each accepted connection (numbered from 0). Everything
// it streams stops when abort is set, when the test ends, or after a
// minute, so a test of a broken client cannot run away either.
type hostilePeer struct {
	addr  string
	abort atomic.Bool
	conns atomic.Int32
}

func startHostile(t *testing.T, script func(p *hostilePeer, n int, c net.Conn, br *bufio.Reader)) *hostilePeer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &hostilePeer{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		p.abort.Store(true)
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(p.conns.Add(1)) - 1
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(time.Minute))
				script(p, n, c, bufio.NewReader(c))
			}()
		}
	}()
	return p
}

// stream writes chunk over and over until limit bytes, an error, or abort.
func (p *hostilePeer) stream(c net.Conn, chunk []byte, limit int64) {
	for sent := int64(0); sent < limit && !p.abort.Load(); sent += int64(len(chunk)) {
		if _, err := c.Write(chunk); err != nil {
			return
		}
	}
}

// drip writes s one byte per interval.
func (p *hostilePeer) drip(c net.Conn, s string, interval time.Duration) {
	for i := 0; i < len(s) && !p.abort.Load(); i++ {
		if _, err := c.Write([]byte{s[i]}); err != nil {
			return
		}
		time.Sleep(interval)
	}
}

// readCmd reads one command line (bounded: the client is ours).
func readCmd(br *bufio.Reader) string {
	l, _ := br.ReadString('\n')
	return strings.TrimRight(l, "\r\n")
}

// ehloOK answers a well-formed EHLO reply with the given extensions.
func ehloOK(c net.Conn, ext ...string) {
	var b strings.Builder
	b.WriteString("250-hostile.test\r\n")
	for _, e := range ext {
		b.WriteString("250-" + e + "\r\n")
	}
	b.WriteString("250 ENHANCEDSTATUSCODES\r\n")
	io.WriteString(c, b.String())
}

// heapGrowthLimit is how much the heap may grow during one attack.
const heapGrowthLimit = 16 << 20

// attack runs one delivery attempt against peer through a static route
// and returns its results, how long it took and how much the heap grew
// (sampled). If the heap grows past 4 times the limit the attempt is cut
// short (the peer stops and the context is cancelled), so a client
// without bounds fails the test instead of taking the machine down.
func attack(t *testing.T, p *hostilePeer, mutate func(*Remote)) ([]courier.Result, time.Duration, uint64) {
	t.Helper()
	r := &Remote{HeloName: "mx.example.org", Routes: map[string]string{"remote.test": p.addr},
		ConnectTimeout: 2 * time.Second, CommandTimeout: 5 * time.Second, DataTimeout: 5 * time.Second}
	if mutate != nil {
		mutate(r)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > base && ms.HeapInuse-base > peak.Load() {
				peak.Store(ms.HeapInuse - base)
			}
			if peak.Load() > 4*heapGrowthLimit {
				p.abort.Store(true)
				cancel()
			}
		}
	}()
	env := ownUser("bob@remote.test")
	start := time.Now()
	res := r.Send(ctx, &env, "remote.test", []string{"bob@remote.test"},
		func() io.Reader { return strings.NewReader(testMessage(env.From, "bob@remote.test", "attack")) })
	took := time.Since(start)
	close(done)
	wg.Wait()
	return res, took, peak.Load()
}

// checkDeferred asserts one temporary failure with the enhanced code and
// a text containing want, in at most maxTime, with small heap growth.
func checkDeferred(t *testing.T, res []courier.Result, took time.Duration, growth uint64, enh, want string, maxTime time.Duration) {
	t.Helper()
	if growth > heapGrowthLimit {
		t.Errorf("heap grew by %d MB during the attempt, limit %d MB", growth>>20, heapGrowthLimit>>20)
	}
	if took > maxTime {
		t.Errorf("the attempt took %v, want at most %v", took, maxTime)
	}
	if len(res) != 1 || res[0].OK || res[0].Permanent || res[0].Code != 451 || res[0].Enhanced != enh ||
		!strings.Contains(res[0].Text, want) {
		t.Fatalf("Deliver = %+v\nwant one temporary failure 451 %s with %q", res, enh, want)
	}
	t.Logf("%s in %v, heap growth %d KB", res[0].Reply(), took.Round(time.Millisecond), growth>>10)
}

// TestRemoteHostileEndlessLine: a receiving server that answers "220 "
// and then streams bytes without a newline (the finding that took RSS
// from 24 MB to 3 GB) costs one 4 KiB buffer: the attempt is deferred
// with 4.4.2 at once.
func TestRemoteHostileEndlessLine(t *testing.T) {
	p := startHostile(t, func(p *hostilePeer, _ int, c net.Conn, _ *bufio.Reader) {
		io.WriteString(c, "220 ")
		p.stream(c, []byte(strings.Repeat("x", 64<<10)), 1<<30)
	})
	res, took, growth := attack(t, p, nil)
	checkDeferred(t, res, took, growth, "4.4.2", "greeting: remote server sent a reply line over 4096 bytes", 3*time.Second)
}

// TestRemoteHostileEndlessContinuation: an EHLO reply of endless "250-"
// lines stops at 100 lines.
func TestRemoteHostileEndlessContinuation(t *testing.T) {
	p := startHostile(t, func(p *hostilePeer, _ int, c net.Conn, br *bufio.Reader) {
		io.WriteString(c, "220 hostile.test ESMTP\r\n")
		readCmd(br)
		p.stream(c, []byte(strings.Repeat("250-PIPELINING\r\n", 1024)), 1<<30)
	})
	res, took, growth := attack(t, p, nil)
	checkDeferred(t, res, took, growth, "4.4.2", "EHLO: remote server sent a reply of more than 100 lines", 3*time.Second)
}

// TestRemoteHostileGigabyteBanner: a 1 GB multi-line greeting (generated
// on the fly, lines of 1000 bytes) stops at 64 KiB.
func TestRemoteHostileGigabyteBanner(t *testing.T) {
	p := startHostile(t, func(p *hostilePeer, _ int, c net.Conn, _ *bufio.Reader) {
		p.stream(c, []byte("220-"+strings.Repeat("b", 1000)+"\r\n"), 1<<30)
	})
	res, took, growth := attack(t, p, nil)
	checkDeferred(t, res, took, growth, "4.4.2", "greeting: remote server sent a reply over 65536 bytes", 3*time.Second)
}

// TestRemoteHostileDrip: a greeting dripped one byte a second never
// completes: the whole reply must arrive within the command timeout, and
// each byte does not restart it.
func TestRemoteHostileDrip(t *testing.T) {
	p := startHostile(t, func(p *hostilePeer, _ int, c net.Conn, _ *bufio.Reader) {
		p.drip(c, "220 slowly, very slowly, one byte at a time", time.Second)
	})
	res, took, growth := attack(t, p, func(r *Remote) { r.CommandTimeout = 1500 * time.Millisecond })
	checkDeferred(t, res, took, growth, "4.4.2", "greeting: remote server did not complete its reply within 1.5s", 3*time.Second)
}

// TestRemoteHostileTransactionDeadline: a peer that answers every command
// just within the command timeout cannot stretch the session past
// TransactionTimeout plus DataTimeout.
func TestRemoteHostileTransactionDeadline(t *testing.T) {
	p := startHostile(t, func(p *hostilePeer, _ int, c net.Conn, br *bufio.Reader) {
		slow := func(s string) {
			time.Sleep(400 * time.Millisecond)
			io.WriteString(c, s+"\r\n")
		}
		slow("220 hostile.test ESMTP")
		for !p.abort.Load() {
			switch cmd := strings.ToUpper(readCmd(br)); {
			case cmd == "":
				return
			case strings.HasPrefix(cmd, "EHLO"):
				slow("250 hostile.test")
			case cmd == "DATA":
				slow("354 go on")
				for l := readCmd(br); l != "." && l != ""; l = readCmd(br) {
				}
				slow("250 2.0.0 queued")
			default:
				slow("250 2.0.0 ok")
			}
		}
	})
	res, took, growth := attack(t, p, func(r *Remote) {
		r.CommandTimeout = 2 * time.Second
		r.TransactionTimeout = 500 * time.Millisecond
		r.DataTimeout = 500 * time.Millisecond
	})
	checkDeferred(t, res, took, growth, "4.4.2", "did not complete its reply before the session deadline", 1500*time.Millisecond)
}

// TestRemoteHostileRcptReply: an endless line in answer to a pipelined
// RCPT defers the attempt like one in the greeting.
func TestRemoteHostileRcptReply(t *testing.T) {
	p := startHostile(t, func(p *hostilePeer, _ int, c net.Conn, br *bufio.Reader) {
		io.WriteString(c, "220 hostile.test ESMTP\r\n")
		readCmd(br)
		ehloOK(c, "PIPELINING")
		readCmd(br) // MAIL
		io.WriteString(c, "250 2.1.0 ok\r\n250 ")
		p.stream(c, []byte(strings.Repeat("r", 64<<10)), 1<<30)
	})
	res, took, growth := attack(t, p, nil)
	checkDeferred(t, res, took, growth, "4.4.2", "RCPT: remote server sent a reply line over 4096 bytes", 3*time.Second)
}

// TestRemoteHostileAfterSTARTTLS: garbage after STARTTLS. Streamed in
// place of a handshake, TLS fails at once and the plain-text retry meets
// the same peer's endless greeting; sent inside a completed handshake, as
// the second EHLO reply, it is bounded the same way (no plain retry: TLS
// worked).
func TestRemoteHostileAfterSTARTTLS(t *testing.T) {
	garbage := []byte(strings.Repeat("\x16\x03\x01garbage ", 4096))
	t.Run("instead-of-handshake", func(t *testing.T) {
		p := startHostile(t, func(p *hostilePeer, n int, c net.Conn, br *bufio.Reader) {
			if n > 0 {
				io.WriteString(c, "220 ")
				p.stream(c, garbage, 1<<30)
				return
			}
			io.WriteString(c, "220 hostile.test ESMTP\r\n")
			readCmd(br)
			ehloOK(c, "STARTTLS")
			readCmd(br)
			io.WriteString(c, "220 2.0.0 go ahead\r\n")
			br.Peek(5) // the ClientHello's record header
			p.stream(c, garbage, 1<<30)
		})
		res, took, growth := attack(t, p, nil)
		checkDeferred(t, res, took, growth, "4.4.2", "greeting: remote server sent a reply line over 4096 bytes", 3*time.Second)
		if n := p.conns.Load(); n != 2 {
			t.Errorf("%d connections, want 2 (TLS, then plain text)", n)
		}
	})
	t.Run("inside-tls", func(t *testing.T) {
		cfg := smtppeer.TLSConfig(t)
		p := startHostile(t, func(p *hostilePeer, _ int, c net.Conn, br *bufio.Reader) {
			io.WriteString(c, "220 hostile.test ESMTP\r\n")
			readCmd(br)
			ehloOK(c, "STARTTLS")
			readCmd(br)
			io.WriteString(c, "220 2.0.0 go ahead\r\n")
			tc := tls.Server(&readerConn{Conn: c, r: br}, cfg)
			if tc.Handshake() != nil {
				return
			}
			readCmd(bufio.NewReader(tc))
			p.stream(tc, garbage, 1<<30)
		})
		res, took, growth := attack(t, p, nil)
		checkDeferred(t, res, took, growth, "4.4.2", "EHLO: remote server sent a reply line over 4096 bytes", 3*time.Second)
		if n := p.conns.Load(); n != 1 {
			t.Errorf("%d connections, want 1", n)
		}
	})
}
