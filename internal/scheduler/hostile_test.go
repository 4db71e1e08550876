package scheduler

import (
	"net"
	"strings"
	"testing"
	"time"
)

// startEndlessGreeting is a receiving server that answers "220 " and then
// 64 KiB chunks without a newline, for up to a second per connection.
func startEndlessGreeting(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	chunk := []byte(strings.Repeat("x", 64<<10))
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(time.Second))
				c.Write([]byte("220 "))
				for range 1 << 14 {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestRemoteHostileLogged: the scheduler's delivery line for an
// attempt carries the queue id, the peer and the reason, and the message
// stays queued.
func TestRemoteHostileLogged(t *testing.T) {
	p := startEndlessGreeting(t)
	e := newEnv(t, func(s *Scheduler) { rem(s).Routes["remote.test"] = p })
	id := e.submit(t, ownUser("bob@remote.test"), testMessage("alice@example.org", "bob@remote.test", "hostile"))
	waitFor(t, "a deferred delivery line", func() bool {
		return e.logs.Has("delivery", func(l map[string]any) bool {
			return l["queue_id"] == id && l["result"] == "deferred" && l["mx"] == "127.0.0.1" &&
				strings.HasPrefix(l["reply"].(string), "451 4.4.2 "+p+": greeting: remote server sent a reply line over 4096 bytes")
		})
	})
	if e.queueEmpty() {
		t.Errorf("the message left the queue")
	}
}
