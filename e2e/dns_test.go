package e2e

import (
	"bufio"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/foxcpp/go-mockdns"
)

// dnsTrace records every reply of the fixture DNS server (go-mockdns
// logs each one whole, question section included).
type dnsTrace struct {
	mu      sync.Mutex
	replies []string
}

func (d *dnsTrace) Printf(f string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.replies = append(d.replies, fmt.Sprintf(f, args...))
}

func (d *dnsTrace) all() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.replies...)
}

var dnsStatus = regexp.MustCompile(`status: ([A-Z]+)`)

// sinkSMTP is a minimal receiving SMTP server: it accepts every command
// and hands each message (the DATA lines) to got. Bounded: 16
// connections, 1 MiB a message, 30s a connection.
func sinkSMTP(t *testing.T, ln net.Listener, got chan<- string) {
	t.Helper()
	go func() {
		for range 16 {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				br := bufio.NewReader(c)
				fmt.Fprintf(c, "220 mx.remote.test fixture\r\n")
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
					case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
						fmt.Fprintf(c, "250 mx.remote.test\r\n")
					case cmd == "DATA":
						fmt.Fprintf(c, "354 go on\r\n")
						var msg strings.Builder
						for msg.Len() < 1<<20 {
							l, err := br.ReadString('\n')
							if err != nil {
								return
							}
							if l == ".\r\n" {
								break
							}
							msg.WriteString(l)
						}
						got <- msg.String()
						fmt.Fprintf(c, "250 2.0.0 taken\r\n")
					case cmd == "QUIT":
						fmt.Fprintf(c, "221 2.0.0 bye\r\n")
						return
					default:
						fmt.Fprintf(c, "250 2.0.0 ok\r\n")
					}
				}
			}()
		}
	}()
}

// TestDNSThroughConfiguredServer is law 6 end to end: kanmon serve with
// dns.server pointed at a fixture DNS server this test runs on
// loopback delivers to remote.test's MX, which only the fixture knows
// (mx.remote.test, 127.0.0.25, port 25). The fixture sees the questions,
// and every one of them is for a name it serves: a lookup through any
// other resolver could not have found the MX, and a question the fixture
// could not answer fails the test.
func TestDNSThroughConfiguredServer(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.25:25")
	if err != nil {
		skipOrFail(t, "cannot listen on 127.0.0.25:25 (needs root and loopback aliases): %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan string, 4)
	sinkSMTP(t, ln, got)

	trace := &dnsTrace{}
	zones := map[string]mockdns.Zone{
		"remote.test.":    {MX: []net.MX{{Host: "mx.remote.test.", Pref: 10}}},
		"mx.remote.test.": {A: []string{"127.0.0.25"}},
	}
	dns, err := mockdns.NewServerWithLogger(zones, trace, false)
	if err != nil {
		t.Fatalf("fixture DNS server: %v", err)
	}
	t.Cleanup(func() { dns.Close() })

	// The old key name; the [dns] table replaces it and keeps reading it.
	s := startServer(t, options{set: map[string]string{"dns.server": `"` + dns.LocalAddr().String() + `"`}})
	needTool(t, "swaks")
	msgID := newMessageID(t)
	out, code := swaks(t, "--server", s.Submission, "-tls", "--auth", "PLAIN", "--auth-user", alice, "--auth-password", alicePassword,
		"--from", alice, "--to", "friend@remote.test", "--header", "Message-Id: "+msgID)
	if code != 0 {
		t.Fatalf("swaks exit %d:\n%s", code, out)
	}
	select {
	case m := <-got:
		if !strings.Contains(m, msgID) {
			t.Errorf("the MX got another message:\n%s", m)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("mx.remote.test (found only through the fixture DNS) never got the message\n%s", s.LogTail(30))
	}
	s.WaitLog(t, "delivery through the MX", func(l logLine) bool {
		return l.str("msg") == "delivery" && l.str("result") == "delivered" && l.str("mx") == "mx.remote.test"
	})

	replies := trace.all()
	sawMX := false
	for _, r := range replies {
		if !strings.Contains(r, "DNS TRACE") {
			t.Errorf("fixture DNS: %s", r) // lookup or write errors
			continue
		}
		if m := dnsStatus.FindStringSubmatch(r); m == nil || m[1] != "NOERROR" {
			t.Errorf("a question the fixture did not answer (every DNS question must be for a fixture name):\n%s", r)
		}
		if strings.Contains(r, "remote.test.\tIN\t MX") {
			sawMX = true
		}
	}
	if !sawMX {
		t.Errorf("the fixture never saw the MX question for remote.test; replies:\n%s", strings.Join(replies, "\n"))
	}
}
