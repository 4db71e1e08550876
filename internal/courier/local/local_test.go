package local

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kanmon/internal/directory"
	"kanmon/internal/queue"
)

// message commits one message to a fresh spool and opens it.
func message(t *testing.T, env queue.Envelope, body string) *queue.Message {
	t.Helper()
	spool, err := queue.Open(filepath.Join(t.TempDir(), "queue"), queue.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := spool.Create(env)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(body))
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	m, err := spool.Open(w.ID())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestDeliverAndFail: one recipient's copy lands in new/ with
// Return-Path and Delivered-To on top; a broken Maildir gives the other
// a 451 4.2.0 in plain words, with the path in Detail only.
func TestDeliverAndFail(t *testing.T) {
	root := t.TempDir()
	broken := directory.MailboxPath(root, "carol@example.org")
	if err := os.MkdirAll(filepath.Dir(broken), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(broken, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	rcpts := []queue.Recipient{
		{Addr: "info@example.org", Account: "bob@example.org"},
		{Addr: "carol@example.org", Account: "carol@example.org"},
	}
	m := message(t, queue.Envelope{From: "", Recipients: rcpts}, "Subject: x\r\n\r\nbody\r\n")
	res := (&Courier{MailRoot: root}).Deliver(context.Background(), m, rcpts)
	if len(res) != 2 || !res[0].OK || res[1].OK || res[1].Permanent {
		t.Fatalf("results %+v: want delivered, then deferred", res)
	}
	newDir := filepath.Join(directory.MailboxPath(root, "bob@example.org"), "new")
	ents, err := os.ReadDir(newDir)
	if err != nil || len(ents) != 1 {
		t.Fatalf("new/: %v %v", ents, err)
	}
	got, _ := os.ReadFile(filepath.Join(newDir, ents[0].Name()))
	if want := "Return-Path: <>\r\nDelivered-To: bob@example.org\r\nSubject: x\r\n\r\nbody\r\n"; string(got) != want {
		t.Errorf("delivered %q, want %q", got, want)
	}
	if r := res[1].Reply(); !strings.HasPrefix(r, "451 4.2.0 ") || strings.Contains(r, root) {
		t.Errorf("reply %q: want 451 4.2.0 without a path", r)
	}
	if !strings.Contains(res[1].Detail, broken) {
		t.Errorf("detail %q does not name the Maildir", res[1].Detail)
	}
}

// TestQuarantineGoesToJunk: a message whose prepend block carries the
// quarantine mark lands in the Maildir++ folder .Junk (with its
// maildirfolder marker), not in new/; the same mark inside the message
// itself, where a sender could put it, does nothing.
func TestQuarantineGoesToJunk(t *testing.T) {
	root := t.TempDir()
	rcpts := []queue.Recipient{{Addr: "bob@example.org", Account: "bob@example.org"}}
	spool, err := queue.Open(filepath.Join(t.TempDir(), "queue"), queue.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	commit := func(prepend, body string) *queue.Message {
		w, err := spool.CreateWithPrepend(queue.Envelope{From: "a@remote.test", Recipients: rcpts})
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(body))
		if err := w.SetPrepend([]byte(prepend)); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		m, err := spool.Open(w.ID())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	c := &Courier{MailRoot: root}
	box := directory.MailboxPath(root, "bob@example.org")
	m := commit("Authentication-Results: mx; dmarc=fail\r\nX-Kanmon-Quarantine: dmarc\r\n", "Subject: junk\r\n\r\nx\r\n")
	if res := c.Deliver(context.Background(), m, rcpts); !res[0].OK {
		t.Fatalf("%+v", res)
	}
	ents, _ := os.ReadDir(filepath.Join(box, ".Junk", "new"))
	if len(ents) != 1 {
		t.Fatalf(".Junk/new holds %d messages, want 1", len(ents))
	}
	if _, err := os.Stat(filepath.Join(box, ".Junk", "maildirfolder")); err != nil {
		t.Errorf("no maildirfolder marker: %v", err)
	}
	m = commit("Authentication-Results: mx; dmarc=pass\r\n", "X-Kanmon-Quarantine: dmarc\r\nSubject: fine\r\n\r\nx\r\n")
	c.Deliver(context.Background(), m, rcpts)
	if ents, _ := os.ReadDir(filepath.Join(box, "new")); len(ents) != 1 {
		t.Fatalf("new/ holds %d messages, want 1", len(ents))
	}
}
