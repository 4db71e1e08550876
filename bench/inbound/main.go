// Command inbound is the fixture of bench/inbound.sh: a DNS server with
// the zones the inbound checks ask about, and an SMTP load client that
// sends from a chosen loopback address (smtp-source cannot choose one,
// and 127.0.0.1's reverse name comes from the hosts file, not DNS).
//
//	inbound dns ADDR                     serve the fixture zones on ADDR (UDP and TCP)
//	inbound load -src IP -n N -s S -from A -to A SERVER
//	                                     N messages, one per connection, S at a time
//	inbound wait -src IP SERVER          one connection that waits for the greeting
//
// Loopback only; it exits on SIGTERM or, for load, when done.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// zones: the client 127.0.0.8 is mx.sender.bench (FCrDNS holds), on no
// list; sender.bench has an MX and SPF allowing it.
var zones = map[string][]string{
	"8.0.0.127.in-addr.arpa. PTR": {"mx.sender.bench."},
	"mx.sender.bench. A":          {"127.0.0.8"},
	"sender.bench. MX":            {"mx.sender.bench."},
	"sender.bench. TXT":           {"v=spf1 ip4:127.0.0.8 -all"},
	// DMARC passes through aligned SPF: the DATA stage runs in full.
	"_dmarc.sender.bench. TXT": {"v=DMARC1; p=reject"},
}

func main() {
	log.SetFlags(0)
	if len(os.Args) < 3 {
		log.Fatal("usage: inbound dns ADDR | inbound load ... SERVER | inbound wait -src IP SERVER")
	}
	switch os.Args[1] {
	case "dns":
		serveDNS(os.Args[2])
	case "load", "wait":
		load(os.Args[1], os.Args[2:])
	default:
		log.Fatalf("inbound: unknown mode %q", os.Args[1])
	}
}

// serveDNS answers from zones; every other name is NXDOMAIN with an SOA
// (negative TTL 300s), as a blocklist answers "not listed".
func serveDNS(addr string) {
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		qq := q.Question[0]
		name := strings.ToLower(qq.Name)
		vals, ok := zones[name+" "+dns.TypeToString[qq.Qtype]]
		for _, v := range vals {
			rr, err := dns.NewRR(fmt.Sprintf("%s 3600 IN %s %s", name, dns.TypeToString[qq.Qtype], quote(qq.Qtype, v)))
			if err == nil {
				m.Answer = append(m.Answer, rr)
			}
		}
		if !ok && !nameExists(name) {
			m.Rcode = dns.RcodeNameError
			soa, _ := dns.NewRR("bench. 300 IN SOA ns.bench. h.bench. 1 60 60 60 300")
			m.Ns = []dns.RR{soa}
		}
		_ = w.WriteMsg(m)
	})
	for _, n := range []string{"udp", "tcp"} {
		srv := &dns.Server{Addr: addr, Net: n, Handler: h}
		go func() { log.Fatal(srv.ListenAndServe()) }()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
}

func quote(t uint16, v string) string {
	switch t {
	case dns.TypeTXT:
		return `"` + v + `"`
	case dns.TypeMX:
		return "10 " + v
	}
	return v
}

// nameExists: a name with records of another type answers NOERROR, empty.
func nameExists(name string) bool {
	for k := range zones {
		if strings.HasPrefix(k, name+" ") {
			return true
		}
	}
	return false
}

func load(mode string, args []string) {
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	src := fs.String("src", "127.0.0.8", "source address")
	n := fs.Int("n", 1000, "messages")
	s := fs.Int("s", 20, "parallel sessions")
	from := fs.String("from", "bench@sender.bench", "MAIL FROM")
	to := fs.String("to", "bench@example.org", "RCPT TO")
	size := fs.Int("l", 2048, "message size in bytes")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		log.Fatal("inbound: one SERVER address")
	}
	server := fs.Arg(0)
	if mode == "wait" {
		*n, *s = 1, 1
	}
	body := strings.Repeat(strings.Repeat("x", 78)+"\r\n", max(*size/80, 1))
	var next, failed atomic.Int64
	var firstErr sync.Once
	var wg sync.WaitGroup
	for range *s {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(*n) {
				if err := send(server, *src, *from, *to, body); err != nil {
					failed.Add(1)
					firstErr.Do(func() { log.Printf("inbound: %v", err) })
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		log.Fatalf("inbound: %d of %d messages not accepted", failed.Load(), *n)
	}
}

// send delivers one message over one connection.
func send(server, src, from, to, body string) error {
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", server)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	steps := []struct{ cmd, want string }{
		{"", "220"}, {"EHLO mx.sender.bench\r\n", "250"}, {"MAIL FROM:<" + from + ">\r\n", "250"},
		{"RCPT TO:<" + to + ">\r\n", "250"}, {"DATA\r\n", "354"},
		{"From: <" + from + ">\r\nSubject: bench\r\n\r\n" + body + ".\r\n", "250"}, {"QUIT\r\n", "221"},
	}
	for _, st := range steps {
		if st.cmd != "" {
			if _, err := c.Write([]byte(st.cmd)); err != nil {
				return err
			}
		}
		line, err := readReply(r)
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, st.want) {
			return fmt.Errorf("%q: %s", strings.TrimSpace(st.cmd), line)
		}
	}
	return nil
}

// readReply reads one (possibly multi-line) reply and returns its last
// line.
func readReply(r *bufio.Reader) (string, error) {
	for range 100 {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		if len(line) < 4 || line[3] != '-' {
			return strings.TrimRight(line, "\r\n"), nil
		}
	}
	return "", fmt.Errorf("reply of more than 100 lines")
}
