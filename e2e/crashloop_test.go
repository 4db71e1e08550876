package e2e

import (
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// silentPeer is a receiving server that accepts TCP connections and never
// says a word, so a delivery attempt to it stays in flight until it hangs
// up. It reports each connection on conns.
type silentPeer struct {
	ln    net.Listener
	conns chan struct{}
	mu    sync.Mutex
	open  []net.Conn
}

func startSilentPeer(t *testing.T) *silentPeer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &silentPeer{ln: ln, conns: make(chan struct{}, 16)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.open = append(p.open, c)
			p.mu.Unlock()
			select {
			case p.conns <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(p.close)
	return p
}

// hangUp closes every connection: an attempt in flight ends (deferred).
func (p *silentPeer) hangUp() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.open {
		c.Close()
	}
	p.open = nil
}

func (p *silentPeer) close() {
	p.ln.Close()
	p.hangUp()
}

// waitConn reports whether a connection arrives within d.
func (p *silentPeer) waitConn(d time.Duration) bool {
	select {
	case <-p.conns:
		return true
	case <-time.After(d):
		return false
	}
}

// TestCrashLoopMessageHeld is the crash loop a hostile receiving server
// can cause: each delivery attempt of one message kills kanmon (here with
// SIGKILL while the attempt is in flight, as the OOM killer would), and
// the message used to be retried at every start. Now, in flight at two
// consecutive unclean stops, it is held at the next start: no third
// connection, `kanmon queue list` says why, the server keeps accepting
// mail, and `kanmon queue release` sends the message on again.
func TestCrashLoopMessageHeld(t *testing.T) {
	t.Parallel()
	needTool(t, "swaks")
	peer := startSilentPeer(t)
	s := startServer(t, options{set: map[string]string{"delivery.routes": `{ "remote.test" = "` + peer.ln.Addr().String() + `" }`}})
	// Cleanups run last-in first-out: hang up before the server's SIGTERM,
	// so a failing test does not wait for a silent greeting to time out.
	t.Cleanup(peer.hangUp)
	out, code := swaks(t, "--server", s.Submission, "-tls", "--auth", "PLAIN", "--auth-user", alice, "--auth-password", alicePassword,
		"--from", alice, "--to", "friend@remote.test", "--header", "Subject: crash loop")
	if code != 0 {
		t.Fatalf("swaks exit %d:\n%s", code, out)
	}
	ids := s.QueueIDs(t)
	if len(ids) != 1 {
		t.Fatalf("queue holds %v, want one message", ids)
	}
	id := ids[0]

	for stop := 1; stop <= 2; stop++ {
		if !peer.waitConn(20 * time.Second) {
			t.Fatalf("attempt %d: the peer saw no connection within 20s\n%s", stop, s.LogTail(30))
		}
		s.Kill(t) // unclean stop while the attempt is in flight
		s.Start(t)
	}
	if peer.waitConn(5 * time.Second) {
		t.Fatalf("a third attempt after two unclean stops in flight\n%s", s.LogTail(30))
	}

	reason := "in flight at 2 consecutive unclean stops; release with kanmon queue release " + id
	s.WaitLog(t, "queue op=held", func(l logLine) bool {
		return l.str("msg") == "queue" && l.str("op") == "held" && l.str("queue_id") == id && l.str("reason") == reason
	})
	if out := mustKanmon(t, s.Dir, "", "queue", "list", "--config", s.Config); !strings.Contains(out, "held: "+reason) {
		t.Errorf("queue list does not say why the message is held:\n%s", out)
	}
	var list []struct {
		ID           string `json:"id"`
		Held         bool   `json:"held"`
		HoldReason   string `json:"hold_reason"`
		UncleanStops int    `json:"unclean_stops"`
	}
	raw := mustKanmon(t, s.Dir, "", "queue", "list", "--json", "--config", s.Config)
	if err := json.Unmarshal([]byte(raw), &list); err != nil {
		t.Fatalf("queue list --json: %v\n%s", err, raw)
	}
	if len(list) != 1 || list[0].ID != id || !list[0].Held || list[0].HoldReason != reason || list[0].UncleanStops != 2 {
		t.Errorf("queue list --json: %+v", list)
	}
	if v := metricValue(t, scrape(t, s), `kanmon_queue_unclean_stops_total{result="held"}`); v != 1 {
		t.Errorf(`kanmon_queue_unclean_stops_total{result="held"} = %v, want 1`, v)
	}

	// The server still serves everyone else.
	msgID := newMessageID(t)
	sendMail(t, s.MX, "sender@remote.test", []string{alice}, message("sender@remote.test", alice, "still here", msgID, "hello"))
	waitMaildir(t, s.Maildir(alice), msgID)

	out = mustKanmon(t, s.Dir, "", "queue", "release", id, "--config", s.Config)
	if !strings.Contains(out, id) {
		t.Errorf("queue release:\n%s", out)
	}
	if !peer.waitConn(20 * time.Second) {
		t.Fatalf("no attempt within 20s after release\n%s", s.LogTail(30))
	}
	peer.hangUp() // the attempt ends (deferred), so the final SIGTERM is quick
	s.WaitLog(t, "deferred after release", func(l logLine) bool {
		return l.str("msg") == "delivery" && l.str("queue_id") == id && l.str("result") == "deferred"
	})
}
