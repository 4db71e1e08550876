// Command forgedbounce floods an SMTP server on loopback with
// transactions that must be refused at RCPT, as fast as it can over many
// connections, and reports how many were refused per second. It is the
// client of bench/forged-bounces.sh.
//
// Modes: "bounce" sends forged bounces (MAIL FROM:<>, an untagged local
// recipient: BATV refuses it, 550 5.7.1); "forged-tag" the same with a
// made-up prvs tag (the HMAC is computed and fails); "unknown" ordinary
// mail to a local user that does not exist (550 5.1.1), the baseline.
//
// Every loop is bounded by the transaction count and by -timeout; only
// loopback addresses are accepted.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:25", "server (loopback only)")
	mode := flag.String("mode", "bounce", "bounce | forged-tag | unknown")
	total := flag.Int("n", 20000, "transactions in all")
	conns := flag.Int("c", 50, "connections at once")
	per := flag.Int("per", 1, "transactions per connection (keep below the server's max_errors)")
	domain := flag.String("domain", "example.org", "the server's local domain")
	user := flag.String("user", "bench", "an existing local user (bounce modes)")
	timeout := flag.Duration("timeout", 5*time.Minute, "bound of the whole run")
	flag.Parse()
	host, _, err := net.SplitHostPort(*addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintf(os.Stderr, "forgedbounce: %s is not a loopback address\n", *addr)
		os.Exit(2)
	}
	var from, rcpt, want string
	switch *mode {
	case "bounce":
		from, rcpt, want = "<>", *user+"@"+*domain, "550 5.7.1"
	case "forged-tag":
		from, rcpt, want = "<>", "prvs=0123abcdef="+*user+"@"+*domain, "550 5.7.1"
	case "unknown":
		from, rcpt, want = "<sender@remote.test>", "nosuch-"+*user+"@"+*domain, "550 5.1.1"
	default:
		fmt.Fprintf(os.Stderr, "forgedbounce: unknown mode %q\n", *mode)
		os.Exit(2)
	}
	var next, refused, other atomic.Int64
	deadline := time.Now().Add(*timeout)
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < *conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				k := int(next.Add(int64(*per))) - *per
				if k >= *total {
					return
				}
				r, o := session(*addr, from, rcpt, want, min(*per, *total-k), deadline)
				refused.Add(int64(r))
				other.Add(int64(o))
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	fmt.Printf("mode=%s transactions=%d connections=%d per_connection=%d refused=%d unexpected=%d seconds=%.2f refusals_per_second=%.0f\n",
		*mode, *total, *conns, *per, refused.Load(), other.Load(), el.Seconds(), float64(refused.Load())/el.Seconds())
	if other.Load() > 0 {
		os.Exit(1)
	}
}

// session runs n transactions on one connection; it returns how many
// RCPTs got the wanted refusal and how many got anything else.
func session(addr, from, rcpt, want string, n int, deadline time.Time) (refused, other int) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return 0, n
	}
	defer c.Close()
	c.SetDeadline(deadline)
	br := bufio.NewReader(c)
	read := func() string {
		var last string
		for i := 0; i < 50; i++ { // a reply of at most 50 lines
			l, err := br.ReadString('\n')
			if err != nil {
				return "error " + err.Error()
			}
			last = l
			if len(l) < 4 || l[3] != '-' {
				break
			}
		}
		return last
	}
	if !strings.HasPrefix(read(), "220") {
		return 0, n
	}
	fmt.Fprintf(c, "EHLO bounce-flood.remote.test\r\n")
	if !strings.HasPrefix(read(), "250") {
		return 0, n
	}
	for i := 0; i < n; i++ {
		// Pipelined, as a bulk sender would.
		fmt.Fprintf(c, "MAIL FROM:%s\r\nRCPT TO:<%s>\r\nRSET\r\n", from, rcpt)
		m, r := read(), read()
		read()
		if strings.HasPrefix(m, "250") && strings.HasPrefix(r, want) {
			refused++
		} else {
			other++
		}
	}
	fmt.Fprintf(c, "QUIT\r\n")
	read()
	return refused, other
}
