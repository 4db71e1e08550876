// Package flooddrill is the seed-002 flood drill: a load generator that
// sends forged bounces (null sender, recipients at the server's own
// domain without a valid BATV tag) as fast as it can over many
// connections, while ordinary mail arrives on submission at a steady rate
// and is delivered to a sink that times its arrival.
//
// The drill runs as Go benchmarks (drill_test.go) so that it can start
// the real kanmon binary and a private Postfix instance with the
// project's test helpers; bench/flood-drill.sh runs both and writes the
// report.
package flooddrill

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FloodResult counts what the server answered to the forged bounces.
type FloodResult struct {
	// Sent is the number of forged bounces offered (one RCPT each).
	Sent int64
	// RefusedAtRcpt got a 5xx reply to RCPT: no DATA was sent.
	RefusedAtRcpt int64
	// TempAtRcpt got a 4xx reply to RCPT.
	TempAtRcpt int64
	// Accepted got 250 to RCPT; the drill then sends the bounce's DATA.
	Accepted int64
	// Queued got 250 at the end of DATA: the server took the bounce.
	Queued int64
	// RefusedEarly is a transaction cut before RCPT (connection refused,
	// greeting or MAIL FROM refused).
	RefusedEarly int64
	// Errors are I/O failures (reset connections, timeouts).
	Errors int64
	// Elapsed is the wall time of the whole flood.
	Elapsed time.Duration
}

// FloodOptions shape the flood.
type FloodOptions struct {
	// Addr is the server's MX listener.
	Addr string
	// Recipients are the forged bounces' recipients, used in turn.
	Recipients []string
	// Total is how many forged bounces to send at least.
	Total int64
	// Conns is the number of concurrent connections.
	Conns int
	// PerConn is the number of transactions per connection before QUIT.
	PerConn int
	// SourceNet, if set (e.g. "127.1."), makes each connection come from
	// a random address SourceNet+"X.Y": a flood of bounces arrives from
	// many servers, not one.
	SourceNet string
	// Until, if set, keeps the flood going past Total until it is closed.
	Until <-chan struct{}
}

// bounceBody is a short delivery status notification as a spam run's
// bounces look: they claim to come from a remote MAILER-DAEMON.
const bounceBody = "From: MAILER-DAEMON@remote.test\r\n" +
	"To: %s\r\n" +
	"Subject: Undelivered Mail Returned to Sender\r\n" +
	"Content-Type: text/plain\r\n" +
	"\r\n" +
	"This is the mail system at host remote.test.\r\n" +
	"I'm sorry to have to inform you that your message could not\r\n" +
	"be delivered to one or more recipients.\r\n" +
	".\r\n"

// Flood runs the flood until Total bounces were offered (and Until is
// closed, when set) or ctx ends.
func Flood(ctx context.Context, o FloodOptions) FloodResult {
	var (
		r     FloodResult
		next  atomic.Int64
		wg    sync.WaitGroup
		start = time.Now()
	)
	more := func() bool {
		if ctx.Err() != nil {
			return false
		}
		if next.Add(1) <= o.Total {
			return true
		}
		if o.Until == nil {
			return false
		}
		select {
		case <-o.Until:
			return false
		default:
			return true
		}
	}
	for w := 0; w < o.Conns; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano())))
			for ctx.Err() == nil {
				if !floodConn(ctx, o, &r, rng, more) {
					return
				}
			}
		}(w)
	}
	wg.Wait()
	r.Elapsed = time.Since(start)
	return r
}

// floodConn runs one connection of up to PerConn transactions. It
// returns false when the flood is over.
func floodConn(ctx context.Context, o FloodOptions, r *FloodResult, rng *rand.Rand, more func() bool) bool {
	d := net.Dialer{Timeout: 10 * time.Second}
	if o.SourceNet != "" {
		src := fmt.Sprintf("%s%d.%d", o.SourceNet, rng.IntN(254)+1, rng.IntN(254)+1)
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	if !more() {
		return false
	}
	c, err := d.DialContext(ctx, "tcp", o.Addr)
	if err != nil {
		atomic.AddInt64(&r.Sent, 1)
		atomic.AddInt64(&r.RefusedEarly, 1)
		time.Sleep(10 * time.Millisecond)
		return true
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	s := &conv{c: c, r: bufio.NewReader(c)}
	if code, err := s.reply(); err != nil || code != 220 {
		atomic.AddInt64(&r.Sent, 1)
		atomic.AddInt64(&r.RefusedEarly, 1)
		return true
	}
	if code, err := s.cmd("EHLO mx%d.remote.test", rng.IntN(1000)); err != nil || code != 250 {
		atomic.AddInt64(&r.Sent, 1)
		atomic.AddInt64(&r.Errors, 1)
		return true
	}
	for i := 0; i < o.PerConn; i++ {
		if i > 0 && !more() {
			s.cmd("QUIT")
			return false
		}
		atomic.AddInt64(&r.Sent, 1)
		rcpt := o.Recipients[rng.IntN(len(o.Recipients))]
		if !oneBounce(s, r, rcpt) {
			return true
		}
	}
	s.cmd("QUIT")
	return true
}

// oneBounce offers one forged bounce; false means the connection is no
// longer usable.
func oneBounce(s *conv, r *FloodResult, rcpt string) bool {
	code, err := s.cmd("MAIL FROM:<>")
	if err != nil {
		atomic.AddInt64(&r.Errors, 1)
		return false
	}
	if code != 250 {
		atomic.AddInt64(&r.RefusedEarly, 1)
		return code != 421 && s.rset()
	}
	code, err = s.cmd("RCPT TO:<%s>", rcpt)
	switch {
	case err != nil:
		atomic.AddInt64(&r.Errors, 1)
		return false
	case code >= 500:
		atomic.AddInt64(&r.RefusedAtRcpt, 1)
		return s.rset()
	case code >= 400:
		atomic.AddInt64(&r.TempAtRcpt, 1)
		return code != 421 && s.rset()
	}
	atomic.AddInt64(&r.Accepted, 1)
	if code, err = s.cmd("DATA"); err != nil || code != 354 {
		return err == nil
	}
	if _, err := fmt.Fprintf(s.c, bounceBody, rcpt); err != nil {
		atomic.AddInt64(&r.Errors, 1)
		return false
	}
	code, err = s.reply()
	if err != nil {
		atomic.AddInt64(&r.Errors, 1)
		return false
	}
	if code == 250 {
		atomic.AddInt64(&r.Queued, 1)
	}
	return true
}

// conv is one SMTP conversation: a command, then its whole reply.
type conv struct {
	c net.Conn
	r *bufio.Reader
}

// rset ends a refused transaction; false when the connection is over:
// a server that counts errors may close with 421 after a refusal (the
// 421 then answers RSET).
func (s *conv) rset() bool {
	code, err := s.cmd("RSET")
	return err == nil && code == 250
}

func (s *conv) cmd(format string, args ...any) (int, error) {
	if _, err := fmt.Fprintf(s.c, format+"\r\n", args...); err != nil {
		return 0, err
	}
	return s.reply()
}

// reply reads a possibly multi-line reply and returns its code. Lines
// are bounded by bufio's buffer and the count by 100.
func (s *conv) reply() (int, error) {
	for n := 0; n < 100; n++ {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return 0, err
		}
		if len(line) < 4 {
			return 0, fmt.Errorf("short reply %q", line)
		}
		var code int
		if _, err := fmt.Sscanf(line[:3], "%d", &code); err != nil {
			return 0, fmt.Errorf("bad reply %q", strings.TrimSpace(line))
		}
		if line[3] != '-' {
			return code, nil
		}
	}
	return 0, fmt.Errorf("reply over 100 lines")
}
