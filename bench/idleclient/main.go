// Command idleclient opens many idle SMTP sessions to a server on
// loopback, half of them after STARTTLS, holds them, and times a fresh
// client while they are held. It is the client of bench/idle-sessions.sh.
//
// Steps, each announced on stdout as one line:
//
//	open plain=N tls=N failed=N seconds=S   all sessions set up
//	(waits for one line on stdin: the script reads the server's memory)
//	fresh max_ms=M all_ms=a,b,c             connect, greeting, EHLO, QUIT
//	held alive=N dropped=N after=D          sessions still open after -hold
//
// Sessions come from many loopback source addresses (127.2.x.y, -per-src
// each) so neither a per-address limit nor the ephemeral port range of
// one address is reached. Every loop is bounded by a count and by
// -timeout; only loopback addresses are accepted.
package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// session is one held connection.
type session struct {
	c  net.Conn
	br *bufio.Reader
}

func main() {
	addr := flag.String("addr", "127.0.0.1:25", "server (loopback only)")
	total := flag.Int("n", 10000, "idle sessions to open")
	tlsShare := flag.Float64("tls", 0.5, "share of sessions that do STARTTLS")
	perSrc := flag.Int("per-src", 40, "sessions per source address 127.2.x.y")
	workers := flag.Int("c", 64, "sessions being set up at once")
	fresh := flag.Int("fresh", 5, "fresh-client timings")
	hold := flag.Duration("hold", 15*time.Second, "how long to hold the sessions after the timings")
	timeout := flag.Duration("timeout", 10*time.Minute, "bound of the whole run")
	flag.Parse()
	host, _, err := net.SplitHostPort(*addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fail("%s is not a loopback address", *addr)
	}
	if *perSrc < 1 || *total < 1 || *total/(*perSrc) >= 250*250 {
		fail("-n %d with -per-src %d needs too many source addresses", *total, *perSrc)
	}
	deadline := time.Now().Add(*timeout)
	nTLS := int(float64(*total) * *tlsShare)

	start := time.Now()
	sess := make([]*session, *total)
	var next, plain, secured, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				i := int(next.Add(1) - 1)
				if i >= *total {
					return
				}
				s, err := open(*addr, source(i / *perSrc), i < nTLS, deadline)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				sess[i] = s
				if i < nTLS {
					secured.Add(1)
				} else {
					plain.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	fmt.Printf("open plain=%d tls=%d failed=%d seconds=%.1f\n",
		plain.Load(), secured.Load(), failed.Load(), time.Since(start).Seconds())
	if e, ok := firstErr.Load().(error); ok {
		fmt.Fprintf(os.Stderr, "idleclient: first failure: %v\n", e)
	}

	// The script reads the server's memory now; it answers with a line.
	wait := make(chan struct{})
	go func() { bufio.NewReader(os.Stdin).ReadString('\n'); close(wait) }()
	select {
	case <-wait:
	case <-time.After(time.Until(deadline)):
		fail("no go-ahead on stdin before -timeout")
	}

	var worst time.Duration
	var all []string
	for range *fresh {
		d, err := freshClient(*addr, deadline)
		if err != nil {
			fail("fresh client: %v", err)
		}
		worst = max(worst, d)
		all = append(all, fmt.Sprintf("%.1f", ms(d)))
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Printf("fresh max_ms=%.1f all_ms=%s\n", ms(worst), strings.Join(all, ","))

	time.Sleep(min(*hold, time.Until(deadline)))
	alive, dropped := check(sess)
	fmt.Printf("held alive=%d dropped=%d after=%s\n", alive, dropped, *hold)
	for _, s := range sess {
		if s != nil {
			s.c.Close()
		}
	}
}

// source is the i-th client address: 127.2.x.y, y from 1 to 250.
func source(i int) *net.TCPAddr {
	return &net.TCPAddr{IP: net.IPv4(127, 2, byte(i/250), byte(i%250+1))}
}

// open sets up one session: greeting, EHLO, and with tlsOn STARTTLS, the
// handshake and EHLO again. The session is then left idle.
func open(addr string, src *net.TCPAddr, tlsOn bool, deadline time.Time) (*session, error) {
	d := net.Dialer{LocalAddr: src, Timeout: 30 * time.Second, Deadline: deadline}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("idleclient: dial from %s: %w", src.IP, err)
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	s := &session{c: c, br: bufio.NewReaderSize(c, 1024)}
	err = s.talk("", "220")
	if err == nil {
		err = s.talk("EHLO idle.test", "250")
	}
	if err == nil && tlsOn {
		err = s.talk("STARTTLS", "220")
		if err == nil {
			tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, ServerName: "mx.example.org"})
			err = tc.Handshake()
			s.c, s.br = tc, bufio.NewReaderSize(tc, 1024)
		}
		if err == nil {
			err = s.talk("EHLO idle.test", "250")
		}
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("idleclient: session from %s: %w", src.IP, err)
	}
	s.c.SetDeadline(time.Time{})
	return s, nil
}

// talk sends cmd (none when empty) and reads a reply, which must start
// with want. Multi-line replies are read to their last line.
func (s *session) talk(cmd, want string) error {
	if cmd != "" {
		if _, err := s.c.Write([]byte(cmd + "\r\n")); err != nil {
			return fmt.Errorf("send %s: %w", cmd, err)
		}
	}
	for range 100 {
		line, err := s.br.ReadString('\n')
		if err != nil {
			return fmt.Errorf("reply to %q: %w", cmd, err)
		}
		if !strings.HasPrefix(line, want) {
			return fmt.Errorf("reply to %q: %q, want %s", cmd, strings.TrimSpace(line), want)
		}
		if len(line) < 4 || line[3] != '-' {
			return nil
		}
	}
	return fmt.Errorf("reply to %q: more than 100 lines", cmd)
}

// freshClient times connect, greeting, EHLO and QUIT from 127.0.0.1.
func freshClient(addr string, deadline time.Time) (time.Duration, error) {
	t0 := time.Now()
	d := net.Dialer{Timeout: 30 * time.Second, Deadline: deadline}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return 0, fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	s := &session{c: c, br: bufio.NewReader(c)}
	for _, step := range [][2]string{{"", "220"}, {"EHLO fresh.test", "250"}, {"QUIT", "221"}} {
		if err := s.talk(step[0], step[1]); err != nil {
			return 0, err
		}
	}
	return time.Since(t0), nil
}

// check counts the sessions still open: a read that times out means the
// server has said nothing and kept the connection; anything else (a 421,
// EOF, a reset) means it was dropped.
func check(sess []*session) (alive, dropped int) {
	var a, d atomic.Int64
	var wg sync.WaitGroup
	const workers = 64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(sess); i += workers {
				s := sess[i]
				if s == nil {
					continue
				}
				s.c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
				_, err := s.br.ReadByte()
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					a.Add(1)
				} else {
					d.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return int(a.Load()), int(d.Load())
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "idleclient: "+format+"\n", a...)
	os.Exit(1)
}
