// Command load is the benchmark's SMTP load client: like Postfix's
// smtp-source it sends N messages of a given size over C concurrent
// sessions, one message per connection or several (-per-conn), with
// PIPELINING off, and it also times every message: from the start of
// its transaction (the connection, for the first message of one) to the
// 250 after the final dot. It prints one JSON object: accepted messages
// per second, p50 and p99 accept latency in milliseconds, errors.
//
// It talks to loopback servers under test only; every session has a
// deadline, and every loop is bounded by -n.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:25", "server address")
	n := flag.Int("n", 10000, "messages to send")
	c := flag.Int("c", 20, "concurrent sessions")
	size := flag.Int("size", 1024, "message size in bytes")
	perConn := flag.Int("per-conn", 1, "messages per connection")
	from := flag.String("from", "bench@client.test", "envelope sender")
	to := flag.String("to", "sink@remote.test", "envelope recipient")
	timeout := flag.Duration("timeout", 60*time.Second, "deadline of one session")
	flag.Parse()

	body := makeBody(*size, *from, *to)
	var next atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var errs []string
	start := time.Now()
	var wg sync.WaitGroup
	for range *c {
		wg.Go(func() {
			for {
				k := int(next.Add(int64(*perConn))) - *perConn
				if k >= *n {
					return
				}
				m := min(*perConn, *n-k)
				l, err := session(*addr, *from, *to, body, m, *timeout)
				mu.Lock()
				lat = append(lat, l...)
				if err != nil && len(errs) < 20 {
					errs = append(errs, err.Error())
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lat)
	out := map[string]any{
		"messages": *n, "sessions": *c, "size": *size, "per_conn": *perConn,
		"accepted": len(lat), "seconds": elapsed.Seconds(),
		"accepted_per_s": float64(len(lat)) / elapsed.Seconds(),
		"p50_ms":         ms(pct(lat, 0.50)), "p99_ms": ms(pct(lat, 0.99)),
		"errors": errs,
	}
	json.NewEncoder(os.Stdout).Encode(out)
	if len(lat) < *n {
		os.Exit(1)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func pct(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// makeBody is a message of about size bytes: a few headers and lines of
// 76 letters, CRLF, ending with the final dot.
func makeBody(size int, from, to string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: load\r\nMessage-Id: <load@client.test>\r\n\r\n", from, to)
	line := strings.Repeat("x", 76) + "\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	b.WriteString(".\r\n")
	return []byte(b.String())
}

// session sends m messages on one connection and returns the accept
// latency of each message the server took.
func session(addr, from, to string, body []byte, m int, timeout time.Duration) ([]time.Duration, error) {
	t0 := time.Now()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(t0.Add(timeout))
	br := bufio.NewReader(conn)
	expect := func(code string) error {
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return err
			}
			if len(l) < 4 || !strings.HasPrefix(l, code) {
				return fmt.Errorf("want %s, got %q", code, strings.TrimSpace(l))
			}
			if l[3] == ' ' {
				return nil
			}
		}
	}
	cmd := func(line, code string) error {
		if _, err := conn.Write([]byte(line + "\r\n")); err != nil {
			return err
		}
		return expect(code)
	}
	if err := expect("220"); err != nil {
		return nil, err
	}
	if err := cmd("EHLO client.test", "250"); err != nil {
		return nil, err
	}
	var lat []time.Duration
	for i := range m {
		if i > 0 {
			t0 = time.Now()
			if err := cmd("RSET", "250"); err != nil {
				return lat, err
			}
		}
		for _, step := range [][2]string{{"MAIL FROM:<" + from + ">", "250"}, {"RCPT TO:<" + to + ">", "250"}, {"DATA", "354"}} {
			if err := cmd(step[0], step[1]); err != nil {
				return lat, err
			}
		}
		if _, err := conn.Write(body); err != nil {
			return lat, err
		}
		if err := expect("250"); err != nil {
			return lat, err
		}
		lat = append(lat, time.Since(t0))
	}
	cmd("QUIT", "221")
	return lat, nil
}
