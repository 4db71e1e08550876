package remote

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"kanmon/internal/testutil/smtppeer"
)

// sendN sends n messages one after the other to peer.test (routed to p)
// and fails the test on any result that is not a delivery.
func sendN(t *testing.T, r *Remote, n int) {
	t.Helper()
	for i := range n {
		env := ownUser("bob@peer.test")
		body := func() io.Reader {
			return strings.NewReader(testMessage("alice@example.org", "bob@peer.test", "m"+string(rune('a'+i%26))))
		}
		res := r.Send(context.Background(), &env, "peer.test", []string{"bob@peer.test"}, body)
		if len(res) != 1 || !res[0].OK {
			t.Fatalf("message %d: %+v", i, res)
		}
	}
}

func reuseRemote(p *smtppeer.Peer) *Remote {
	return &Remote{HeloName: "mx.example.org", Routes: map[string]string{"peer.test": p.Addr},
		CommandTimeout: 10 * time.Second, ConnectTimeout: 10 * time.Second}
}

// TestReuseOneConnection: 50 messages to one destination travel over one
// connection (RSET between them), and Close ends it with QUIT.
func TestReuseOneConnection(t *testing.T) {
	t.Parallel()
	p := smtppeer.Start(t, &smtppeer.Peer{})
	r := reuseRemote(p)
	sendN(t, r, 50)
	if got := len(p.Messages()); got != 50 {
		t.Fatalf("peer got %d messages, want 50", got)
	}
	if c := p.Conns(); c > 2 {
		t.Errorf("50 messages used %d connections, want at most 2", c)
	}
	r.Close()
	if q := p.Quits(); q != p.Conns() {
		t.Errorf("after Close: %d QUITs for %d connections", q, p.Conns())
	}
}

// TestReuseBoundedMessages: a connection carries at most ReuseMessages.
func TestReuseBoundedMessages(t *testing.T) {
	t.Parallel()
	p := smtppeer.Start(t, &smtppeer.Peer{})
	r := reuseRemote(p)
	r.ReuseMessages = 10
	sendN(t, r, 25)
	if c := p.Conns(); c != 3 {
		t.Errorf("25 messages at 10 per connection used %d connections, want 3", c)
	}
	r.Close()
}

// TestReusePeerDropsIdle: a peer that closes the connection after each
// message; every message still arrives exactly once, over a new
// connection each.
func TestReusePeerDropsIdle(t *testing.T) {
	t.Parallel()
	p := smtppeer.Start(t, &smtppeer.Peer{DropAfter: 1})
	r := reuseRemote(p)
	sendN(t, r, 10)
	if got := len(p.Messages()); got != 10 {
		t.Fatalf("peer got %d messages, want exactly 10", got)
	}
	if c := p.Conns(); c != 10 {
		t.Errorf("%d connections, want 10", c)
	}
	r.Close()
}

// TestReuseRsetRefused: a peer that refuses RSET gets each message on a
// new connection, once.
func TestReuseRsetRefused(t *testing.T) {
	t.Parallel()
	p := smtppeer.Start(t, &smtppeer.Peer{Rset: "502 5.5.1 RSET not here"})
	r := reuseRemote(p)
	sendN(t, r, 5)
	if got := len(p.Messages()); got != 5 {
		t.Fatalf("peer got %d messages, want exactly 5", got)
	}
	if c := p.Conns(); c != 5 {
		t.Errorf("%d connections, want 5", c)
	}
	r.Close()
}

// TestReuseIdleEnds: an idle connection ends with QUIT after ReuseIdle
// and leaves the pool.
func TestReuseIdleEnds(t *testing.T) {
	t.Parallel()
	p := smtppeer.Start(t, &smtppeer.Peer{})
	r := reuseRemote(p)
	r.ReuseIdle = 100 * time.Millisecond
	sendN(t, r, 1)
	deadline := time.Now().Add(10 * time.Second)
	for p.Quits() < 1 || r.connPool().idleConns() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("idle connection not ended: quits %d, idle %d", p.Quits(), r.connPool().idleConns())
		}
		time.Sleep(20 * time.Millisecond)
	}
	sendN(t, r, 1)
	if c := p.Conns(); c != 2 {
		t.Errorf("%d connections, want 2 (the first ended when idle)", c)
	}
	r.Close()
}

// TestReuseNotAfter421: a 421 reply means the peer is closing; the
// connection is not kept.
func TestReuseNotAfter421(t *testing.T) {
	t.Parallel()
	p := smtppeer.Start(t, &smtppeer.Peer{Rcpt: func(n int, _ string) string {
		if n == 0 {
			return "421 4.3.2 closing"
		}
		return ""
	}})
	r := reuseRemote(p)
	env := ownUser("bob@peer.test")
	body := func() io.Reader { return strings.NewReader(testMessage("alice@example.org", "bob@peer.test", "x")) }
	res := r.Send(context.Background(), &env, "peer.test", []string{"bob@peer.test"}, body)
	if len(res) != 1 || res[0].OK || res[0].Code != 421 {
		t.Fatalf("first message: %+v", res)
	}
	if n := r.connPool().idleConns(); n != 0 {
		t.Errorf("connection kept after 421 (%d idle)", n)
	}
	sendN(t, r, 1)
	r.Close()
}
