package scheduler

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kanmon/internal/courier/local"
	"kanmon/internal/courier/remote"
	"kanmon/internal/directory"
	"kanmon/internal/dsn"
	"kanmon/internal/logging"
	"kanmon/internal/metrics"
	"kanmon/internal/queue"
	"kanmon/internal/testutil/logbuf"
)

// rem is the scheduler's remote courier, for tests to adjust before Start.
func rem(s *Scheduler) *remote.Remote { return s.Remote.(*remote.Remote) }

// env is a test setup: a spool, a scheduler and its log.
type testEnv struct {
	spool *queue.Spool
	sched *Scheduler
	logs  *logbuf.Buffer
	root  string
}

// newEnv builds a scheduler with fast retries; mutate adjusts it before
// Start. alice@example.org is a local account (DSNs to her are local).
func newEnv(t *testing.T, mutate func(*Scheduler)) *testEnv {
	t.Helper()
	dir := t.TempDir()
	spool, err := queue.Open(filepath.Join(dir, "queue"), queue.Limits{MaxMessages: 1000, MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	logs := &logbuf.Buffer{}
	e := &testEnv{spool: spool, logs: logs, root: filepath.Join(dir, "mail")}
	log := logging.New(logs, "json", slog.LevelDebug)
	e.sched = &Scheduler{
		Spool: spool, Log: log, Local: &local.Courier{MailRoot: e.root},
		Metrics: metrics.New(func() float64 { return 0 }, func() float64 { return 0 }),
		Workers: 4, RetryMin: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond, Expire: time.Hour,
		Tick: 20 * time.Millisecond,
		Reports: &dsn.Reporter{Spool: spool, Log: log, Hostname: "mx.example.org", Expire: time.Hour,
			LocalAccount: func(a string) (string, bool) {
				if strings.EqualFold(a, "alice@example.org") {
					return "alice@example.org", true
				}
				return "", false
			}},
		Remote: &remote.Remote{HeloName: "mx.example.org", Routes: map[string]string{}, ConnectTimeout: 2 * time.Second,
			CommandTimeout: 5 * time.Second, DataTimeout: 5 * time.Second},
	}
	if mutate != nil {
		mutate(e.sched)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.sched.Start(ctx)
	t.Cleanup(func() {
		cancel()
		e.sched.Wait()
		if t.Failed() {
			t.Logf("scheduler log:\n%s", logs.String())
		}
	})
	return e
}

// submit queues a message and tells the scheduler.
func (e *testEnv) submit(t *testing.T, env queue.Envelope, body string) string {
	t.Helper()
	w, err := e.spool.Create(env)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	e.sched.Enqueue(w.Envelope())
	return w.ID()
}

func testMessage(from, to, subject string) string {
	return "Received: from client (127.0.0.1) by mx.example.org\r\nFrom: " + from + "\r\nTo: " + to +
		"\r\nSubject: " + subject + "\r\nMessage-Id: <" + subject + "@example.org>\r\n\r\nbody of " + subject + "\r\n"
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// queueEmpty reports whether the spool holds nothing.
func (e *testEnv) queueEmpty() bool {
	n, _ := e.spool.Len()
	return n == 0
}

// maildir returns the messages in an account's Maildir new/.
func (e *testEnv) maildir(account string) []string {
	dir := filepath.Join(directory.MailboxPath(e.root, account), "new")
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, d := range ents {
		b, err := os.ReadFile(filepath.Join(dir, d.Name()))
		if err == nil {
			out = append(out, string(b))
		}
	}
	return out
}
