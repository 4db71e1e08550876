package e2e

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// stillServes asserts that a new client gets a normal session.
func stillServes(t *testing.T, s *server) {
	t.Helper()
	c := dial(t, s.MX)
	c.Ehlo("client.remote.test")
	c.Expect("NOOP", 250, "2.0.0")
	c.Expect("QUIT", 221, "2.0.0")
}

// assertNotDelivered waits a little (delivery is asynchronous) and checks
// that no message containing marker reached alice or the queue.
func assertNotDelivered(t *testing.T, s *server, marker string) {
	t.Helper()
	time.Sleep(300 * time.Millisecond)
	if got := maildirFind(s.Maildir(alice), marker); len(got) > 0 {
		t.Errorf("refused message was delivered:\n%s", got[0])
	}
	for _, id := range s.QueueIDs(t) {
		b, _ := os.ReadFile(s.QueueMsg(id))
		if strings.Contains(string(b), marker) {
			t.Errorf("refused message is in the queue as %s", id)
		}
	}
	tmp, _ := os.ReadDir(filepath.Join(s.Dir, "data", "queue", "tmp"))
	if len(tmp) > 0 {
		t.Errorf("queue/tmp still holds %d files after the refusal", len(tmp))
	}
}

// TestRobustness: law 5. Every input is bounded, a bound gives a precise
// reply, and the server keeps serving everyone else.
func TestRobustness(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{
		set:   map[string]string{"limits.max_message_size": `"64KiB"`, "limits.max_recipients": "3"},
		users: []string{"bob@example.org", "carol@example.org", "dave@example.org"},
	})

	t.Run("garbage and NUL bytes", func(t *testing.T) {
		c := dial(t, s.MX)
		c.Expect("\x01\x02\x03\x04", 500, "5.5.2")
		c.Expect("NOOP\x00", 500, "5.5.2")
		c.Expect("\xff\xfe\xfd garbage", 500, "5.5.2")
		c.Expect("EHLO client\x00.remote.test", 500, "5.5.2")
		// Four errors: the session still works.
		c.Ehlo("client.remote.test")
		c.Expect("QUIT", 221, "2.0.0")
		stillServes(t, s)
	})

	t.Run("overlong command line", func(t *testing.T) {
		c := dial(t, s.MX)
		c.Ehlo("client.remote.test")
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			chunk := []byte(strings.Repeat("A", 64<<10))
			c.conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
			for sent := 0; sent < 10<<20; sent += len(chunk) {
				if _, err := c.conn.Write(chunk); err != nil {
					return // the server closed the connection: expected
				}
			}
		}()
		r, err := c.Read()
		if err != nil || r.Code != 500 || r.Enhanced != "5.5.2" {
			t.Errorf("10 MB line without newline: got %q (%v), want 500 5.5.2", r, err)
		}
		c.ExpectClosed("after an overlong line")
		c.Close()
		wg.Wait()
		stillServes(t, s)
	})

	t.Run("oversize message", func(t *testing.T) {
		c := dial(t, s.MX)
		ehlo := c.Ehlo("client.remote.test")
		if !strings.Contains(ehlo.Text(), "SIZE 65536") {
			t.Errorf("EHLO does not advertise SIZE 65536: %q", ehlo)
		}
		c.Expect("MAIL FROM:<x@remote.test>", 250, "2.1.0")
		c.Expect("RCPT TO:<"+alice+">", 250, "2.1.5")
		msgID := newMessageID(t)
		body := strings.Repeat(strings.Repeat("x", 76)+"\n", 1400) // ~107 KB
		r := c.Data(message("x@remote.test", alice, "too big", msgID, body))
		checkReply(t, "end of an oversize DATA", r, 552, "5.3.4")
		// The session stays in step.
		c.Expect("NOOP", 250, "2.0.0")
		c.Expect("QUIT", 221, "2.0.0")
		assertNotDelivered(t, s, msgID)
	})

	t.Run("SIZE parameter too big", func(t *testing.T) {
		c := dial(t, s.MX)
		c.Ehlo("client.remote.test")
		c.Expect("MAIL FROM:<x@remote.test> SIZE=999999999", 552, "5.3.4")
		c.Expect("MAIL FROM:<x@remote.test> SIZE=65537", 552, "5.3.4")
		c.Expect("MAIL FROM:<x@remote.test> SIZE=65536", 250, "2.1.0")
		c.Expect("QUIT", 221, "2.0.0")
	})

	t.Run("too many recipients", func(t *testing.T) {
		c := dial(t, s.MX)
		c.Ehlo("client.remote.test")
		c.Expect("MAIL FROM:<x@remote.test>", 250, "2.1.0")
		c.Expect("RCPT TO:<"+alice+">", 250, "2.1.5")
		// An alias of an account already named adds no recipient.
		c.Expect("RCPT TO:<postmaster@example.org>", 250, "2.1.5")
		c.Expect("RCPT TO:<bob@example.org>", 250, "2.1.5")
		c.Expect("RCPT TO:<carol@example.org>", 250, "2.1.5")
		c.Expect("RCPT TO:<dave@example.org>", 452, "4.5.3")
		// The three accepted recipients still get the message.
		msgID := newMessageID(t)
		r := c.Data(message("x@remote.test", alice, "three recipients", msgID, "hello\n"))
		checkReply(t, "end of DATA", r, 250, "2.0.0")
		c.Expect("QUIT", 221, "2.0.0")
		waitMaildir(t, s.Maildir("bob@example.org"), msgID)
	})

	t.Run("too many errors", func(t *testing.T) {
		c := dial(t, s.MX)
		for i := 0; i < 4; i++ {
			c.Expect("XYZZY", 500, "5.5.2")
		}
		c.Expect("XYZZY", 500, "5.5.2")
		c.ExpectReply("after the 5th error", 421, "4.7.0")
		c.ExpectClosed("after 421")
		stillServes(t, s)
	})

	t.Run("http request", func(t *testing.T) {
		for _, req := range []string{
			"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
			"POST /form HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n",
			"CONNECT remote.test:25 HTTP/1.1\r\n\r\n",
		} {
			c := dial(t, s.MX)
			c.Write(req)
			c.ExpectClosed(strings.Fields(req)[0])
		}
		stillServes(t, s)
	})

	t.Run("bare LF smuggling", func(t *testing.T) {
		for _, tc := range []struct{ name, end string }{
			{"LF.CRLF", "\n.\r\n"},
			{"CRLF.LF", "\r\n.\n"},
			{"CR.CRLF", "\r.\r\n"},
			{"LF.LF", "\n.\n"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c := dial(t, s.MX)
				c.Ehlo("client.remote.test")
				c.Expect("MAIL FROM:<x@remote.test>", 250, "2.1.0")
				c.Expect("RCPT TO:<"+alice+">", 250, "2.1.5")
				c.Expect("DATA", 354, "")
				msgID := newMessageID(t)
				smuggled := "smuggled-" + strings.TrimSuffix(strings.TrimPrefix(msgID, "<"), ">")
				c.Write(message("x@remote.test", alice, "smuggling", msgID, "") + "line" + tc.end +
					"MAIL FROM:<" + smuggled + "@remote.test>\r\n" +
					"RCPT TO:<" + alice + ">\r\n" +
					"DATA\r\n" +
					"From: <ceo@example.org>\r\nSubject: smuggled\r\nX-Smuggled: " + smuggled + "\r\n\r\n" +
					"smuggled body\r\n.\r\n")
				c.ExpectReply("real end of data after a bare line end", 554, "5.5.2")
				// No other reply is pending: the smuggled commands were not run.
				c.Expect("NOOP", 250, "2.0.0")
				c.Expect("QUIT", 221, "2.0.0")
				assertNotDelivered(t, s, msgID)
				assertNotDelivered(t, s, smuggled)
				for _, l := range s.Logs(t) {
					if l.str("msg") == "cmd" && strings.Contains(l.str("line"), smuggled) {
						t.Errorf("the smuggled command was executed: %v", l)
					}
				}
			})
		}
	})
}

// TestManyIdleConnections: 200 idle connections do not starve a new
// client.
func TestManyIdleConnections(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{set: map[string]string{"limits.max_connections_per_ip": "250"}})
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 200; i++ {
		c := dial(t, s.MX)
		conns = append(conns, c.conn)
	}
	start := time.Now()
	msgID := newMessageID(t)
	sendMail(t, s.MX, "x@remote.test", []string{alice}, message("x@remote.test", alice, "busy", msgID, "hello\n"))
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("a transaction beside 200 idle connections took %s", d)
	}
	waitMaildir(t, s.Maildir(alice), msgID)
	// The idle ones are still open and answer.
	c := &client{t: t, conn: conns[0], r: bufio.NewReader(conns[0])}
	c.Expect("NOOP", 250, "2.0.0")
}

// TestConnectionLimitPerIP: one address beyond max_connections_per_ip is
// refused at connect with 421 4.7.0; the others keep working.
func TestConnectionLimitPerIP(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{set: map[string]string{"limits.max_connections_per_ip": "3"}})
	s.waitNoSessions(t)
	var open []*client
	for i := 0; i < 3; i++ {
		open = append(open, dial(t, s.MX))
	}
	c := dialNoGreeting(t, s.MX)
	r := c.ExpectReply("4th connection from one address", 421, "4.7.0")
	c.ExpectClosed("after 421 at connect")
	s.WaitLog(t, "connect.refused limit.connections_per_ip", func(l logLine) bool {
		// A log line without a conn would match any reply: require one.
		return l.str("msg") == "connect.refused" && l.str("rule") == "limit.connections_per_ip" &&
			l.str("conn") != "" && strings.Contains(r.String(), l.str("conn"))
	})
	// The admitted ones still work; closing one frees a place.
	open[0].Ehlo("client.remote.test")
	open[1].Expect("QUIT", 221, "2.0.0")
	open[1].ExpectClosed("after QUIT")
	deadline := time.Now().Add(3 * time.Second)
	for {
		nc, err := net.Dial("tcp", s.MX)
		if err != nil {
			t.Fatal(err)
		}
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(nc).ReadString('\n')
		nc.Close()
		if strings.HasPrefix(line, "220 ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a place did not free up after a client quit: %q", line)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
