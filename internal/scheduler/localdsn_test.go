package scheduler

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kanmon/internal/directory"
	"kanmon/internal/queue"
)

// TestLocalFailureDSNNamesNoPath: when a local Maildir cannot be written
// until the message expires, the DSN our user gets says so in plain
// words; the Go error with the Maildir's path stays in the log.
func TestLocalFailureDSNNamesNoPath(t *testing.T) {
	e := newEnv(t, func(s *Scheduler) { s.Expire, s.Reports.Expire = 400*time.Millisecond, 400*time.Millisecond })
	root := e.root
	broken := directory.MailboxPath(root, "carol@example.org")
	if err := os.MkdirAll(filepath.Dir(broken), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(broken, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := ownUser()
	env.Recipients = []queue.Recipient{{Addr: "carol@example.org", Account: "carol@example.org"}}
	id := e.submit(t, env, testMessage("alice@example.org", "carol@example.org", "local-dsn"))
	waitFor(t, "the DSN", func() bool { return len(e.maildir("alice@example.org")) == 1 })
	dsn := e.maildir("alice@example.org")[0]
	var diag string
	for _, l := range strings.Split(dsn, "\r\n") {
		if strings.HasPrefix(l, "Diagnostic-Code:") {
			diag = l
		}
	}
	want := "Diagnostic-Code: smtp; 4.4.7 expired: undelivered after 400ms in the queue; last error: 451 4.2.0 the recipient's mailbox could not be written"
	if !strings.HasPrefix(diag, want) {
		t.Errorf("Diagnostic-Code %q, want it to start %q", diag, want)
	}
	if strings.Contains(dsn, root) || strings.Contains(dsn, "not a directory") || strings.Contains(dsn, "maildir:") {
		t.Errorf("the DSN shows a path or a Go error:\n%s", dsn)
	}
	if !e.logs.Has("delivery", func(l map[string]any) bool {
		err, _ := l["err"].(string)
		return l["queue_id"] == id && l["result"] == "deferred" && strings.Contains(err, root)
	}) {
		t.Errorf("no deferred delivery line whose err names the Maildir")
	}
}
