package e2e

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"kanmon/internal/testutil/postfix"
)

// TestRemoteDeliveryToSmtpSink: alice submits (STARTTLS + AUTH) to a
// remote recipient; the running kanmon delivers it through the static
// route (delivery.routes) to Postfix's smtp-sink on loopback, logs one
// delivery line with the mx and the reply, and empties its queue.
func TestRemoteDeliveryToSmtpSink(t *testing.T) {
	t.Parallel()
	needTool(t, "swaks")
	sink := postfix.StartSink(t, "")
	s := startServer(t, options{set: map[string]string{"delivery.routes": `{ "remote.test" = "` + sink.Addr + `" }`}})
	msgID := newMessageID(t)
	out, code := swaks(t, "--server", s.Submission, "-tls", "--auth", "PLAIN", "--auth-user", alice, "--auth-password", alicePassword,
		"--from", alice, "--to", "friend@remote.test", "--header", "Message-Id: "+msgID, "--header", "Subject: to the sink")
	if code != 0 {
		t.Fatalf("swaks exit %d:\n%s", code, out)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		msgs, _ := sink.Messages()
		found := false
		for _, m := range msgs {
			if strings.Contains(string(m), msgID) {
				found = true
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtp-sink never got %s\n%s", msgID, s.LogTail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
	host, _, _ := net.SplitHostPort(sink.Addr)
	s.WaitLog(t, "delivery line", func(l logLine) bool {
		return l.str("msg") == "delivery" && l.str("rcpt") == "friend@remote.test" && l.str("result") == "delivered" &&
			l.str("mx") == host && strings.HasPrefix(l.str("reply"), "250")
	})
	for len(s.QueueIDs(t)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("queue not empty: %v", s.QueueIDs(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestQueueCommands: with the next hop down, a message stays queued; the
// operator sees it with `kanmon queue list --json`, holds, releases and
// finally deletes it by filter through the running server.
func TestQueueCommands(t *testing.T) {
	t.Parallel()
	needTool(t, "swaks")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()
	s := startServer(t, options{set: map[string]string{"delivery.routes": `{ "remote.test" = "` + down + `" }`}})
	out, code := swaks(t, "--server", s.Submission, "-tls", "--auth", "PLAIN", "--auth-user", alice, "--auth-password", alicePassword,
		"--from", alice, "--to", "friend@remote.test")
	if code != 0 {
		t.Fatalf("swaks exit %d:\n%s", code, out)
	}
	s.WaitLog(t, "deferred delivery", func(l logLine) bool {
		return l.str("msg") == "delivery" && l.str("result") == "deferred"
	})
	var list []struct {
		ID    string `json:"id"`
		From  string `json:"from"`
		Lane  string `json:"lane"`
		Held  bool   `json:"held"`
		Rcpts []struct {
			Addr     string `json:"addr"`
			Status   string `json:"status"`
			Attempts int    `json:"attempts"`
		} `json:"rcpts"`
	}
	raw := mustKanmon(t, s.Dir, "", "queue", "list", "--json", "--config", s.Config)
	if err := json.Unmarshal([]byte(raw), &list); err != nil {
		t.Fatalf("queue list --json: %v\n%s", err, raw)
	}
	if len(list) != 1 || list[0].From != alice || list[0].Lane != "normal" || list[0].Rcpts[0].Status != "pending" || list[0].Rcpts[0].Attempts < 1 {
		t.Fatalf("queue list: %+v", list)
	}
	id := list[0].ID
	mustKanmon(t, s.Dir, "", "queue", "hold", id, "--config", s.Config)
	if out := mustKanmon(t, s.Dir, "", "queue", "list", "--config", s.Config); !strings.Contains(out, "held") {
		t.Errorf("after hold, list says:\n%s", out)
	}
	if out := mustKanmon(t, s.Dir, "", "queue", "show", id, "--config", s.Config); !strings.Contains(out, "rcpt: friend@remote.test pending") {
		t.Errorf("queue show:\n%s", out)
	}
	mustKanmon(t, s.Dir, "", "queue", "release", id, "--config", s.Config)
	if out, code := runKanmon(t, s.Dir, "", "queue", "delete", "--filter", "--config", s.Config); code != 2 {
		t.Errorf("delete --filter without criteria: exit %d, want 2\n%s", code, out)
	}
	out = mustKanmon(t, s.Dir, "", "queue", "delete", "--filter", "--domain", "remote.test", "--config", s.Config)
	if !strings.Contains(out, id) {
		t.Errorf("queue delete by filter:\n%s", out)
	}
	if ids := s.QueueIDs(t); len(ids) != 0 {
		t.Errorf("queue still holds %v", ids)
	}
	s.WaitLog(t, "removed line", func(l logLine) bool {
		return l.str("msg") == "queue" && l.str("queue_id") == id && l.str("op") == "removed" && l.str("reason") == "operator"
	})
}
