package scheduler_test

// Local delivery through the Scheduler over a real spool on disk, as
// `kanmon serve` runs it: what lands in the Maildirs, what stays in the
// queue, how a failing Maildir is retried, and what happens at restart.

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"kanmon/internal/courier/local"
	"kanmon/internal/directory"
	"kanmon/internal/logging"
	"kanmon/internal/metrics"
	"kanmon/internal/queue"
	"kanmon/internal/scheduler"
	"kanmon/internal/testutil/logbuf"
)

type schedEnv struct {
	dir      string // the spool directory
	spool    *queue.Spool
	mailRoot string
	sched    *scheduler.Scheduler
	logs     *logbuf.Buffer
	envs     map[string]*queue.Envelope // committed by commit, for Enqueue
	met      *metrics.Metrics
}

const (
	retryMin = 200 * time.Millisecond
	retryMax = 800 * time.Millisecond
)

// newSchedEnv prepares a spool and a scheduler without remote delivery
// (remote recipients stay queued); start runs it.
func newSchedEnv(t *testing.T) *schedEnv {
	t.Helper()
	root := t.TempDir()
	e := &schedEnv{dir: filepath.Join(root, "queue"), mailRoot: filepath.Join(root, "mail"), logs: &logbuf.Buffer{}, envs: map[string]*queue.Envelope{}}
	e.spool = openSpool(t, e.dir)
	return e
}

func openSpool(t *testing.T, dir string) *queue.Spool {
	t.Helper()
	s, err := queue.Open(dir, queue.Limits{MaxMessages: 1000, MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (e *schedEnv) start(t *testing.T) {
	t.Helper()
	spool := e.spool
	e.met = metrics.New(func() float64 { n, _ := spool.Len(); return float64(n) }, func() float64 { _, b := spool.Len(); return float64(b) })
	e.sched = &scheduler.Scheduler{
		Spool: spool, Local: &local.Courier{MailRoot: e.mailRoot}, Log: logging.New(e.logs, "json", slog.LevelDebug), Metrics: e.met,
		Workers: 2, RetryMin: retryMin, RetryMax: retryMax, Tick: 20 * time.Millisecond,
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.sched.Start(ctx)
	t.Cleanup(func() {
		cancel()
		e.sched.Wait()
		if t.Failed() {
			t.Logf("scheduler log:\n%s", e.logs.String())
		}
	})
}

func (e *schedEnv) commit(t *testing.T, env queue.Envelope, body []byte) string {
	t.Helper()
	w, err := e.spool.Create(env)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	e.envs[w.ID()] = w.Envelope()
	return w.ID()
}

// maildirFiles returns the contents of the files in an account's new/.
func (e *schedEnv) maildirFiles(account string) []string {
	dir := filepath.Join(directory.MailboxPath(e.mailRoot, account), "new")
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, d := range ents {
		if b, err := os.ReadFile(filepath.Join(dir, d.Name())); err == nil {
			out = append(out, string(b))
		}
	}
	return out
}

func (e *schedEnv) state(t *testing.T, id string) (queue.State, bool) {
	t.Helper()
	m, err := e.spool.Open(id)
	if err != nil {
		return queue.State{}, false
	}
	defer m.Close()
	return m.State, true
}

func (e *schedEnv) counter(kind, result string) float64 {
	mfs, err := e.met.Registry.Gather()
	if err != nil {
		return -1
	}
	for _, mf := range mfs {
		if mf.GetName() != "kanmon_deliveries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["kind"] == kind && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// body is a message as the SMTP server queues it; the dot lines, the bare
// CR and the 8-bit bytes must arrive unchanged.
var body = []byte("Received: from client.remote.test ([192.0.2.1]) by mx.example.org\r\n" +
	"From: sender@remote.test\r\nTo: alice@example.org, info@example.org\r\nSubject: two accounts\r\n" +
	"Message-Id: <two@remote.test>\r\n\r\nline one\r\n.\r\n..dot\r\nbare\rcr\r\n\xe2\x9c\x93 8bit\r\n")

// TestDeliverToTwoLocalAccounts: one committed message for two accounts
// (one through an alias) lands in both Maildirs with Return-Path and
// Delivered-To on top of the byte-exact message, and leaves the queue.
func TestDeliverToTwoLocalAccounts(t *testing.T) {
	t.Parallel()
	e := newSchedEnv(t)
	e.start(t)
	id := e.commit(t, queue.Envelope{
		From: "sender@remote.test", Origin: queue.OriginInbound, ConnID: "ctest1",
		Recipients: []queue.Recipient{
			{Addr: "alice@example.org", Account: "alice@example.org"},
			{Addr: "info@example.org", Account: "bob@example.org"},
		},
	}, body)
	e.sched.Enqueue(e.envs[id])
	waitUntil(t, 10*time.Second, "both copies and an empty queue", func() bool {
		n, _ := e.spool.Len()
		return n == 0 && len(e.maildirFiles("alice@example.org")) == 1 && len(e.maildirFiles("bob@example.org")) == 1
	})
	for _, acct := range []string{"alice@example.org", "bob@example.org"} {
		got := e.maildirFiles(acct)[0]
		want := "Return-Path: <sender@remote.test>\r\nDelivered-To: " + acct + "\r\n" + string(body)
		if got != want {
			t.Errorf("%s's copy:\n got %q\nwant %q", acct, got, want)
		}
		tmp, _ := os.ReadDir(filepath.Join(directory.MailboxPath(e.mailRoot, acct), "tmp"))
		if len(tmp) != 0 {
			t.Errorf("%s's Maildir tmp/ holds %d files after delivery", acct, len(tmp))
		}
	}
	if ids, _ := e.spool.IDs(); len(ids) != 0 {
		t.Errorf("queue holds %v after delivery to every recipient", ids)
	}
	if _, b := e.spool.Len(); b != 0 {
		t.Errorf("queue bytes %d after delivery, want 0", b)
	}
	if st, _ := os.ReadDir(filepath.Join(e.dir, "state")); len(st) != 0 {
		t.Errorf("state/ holds %d files after removal", len(st))
	}
	if n := e.counter("local", "delivered"); n != 2 {
		t.Errorf("kanmon_deliveries_total{kind=local,result=delivered} = %v, want 2", n)
	}
	// The log says which message went where.
	waitUntil(t, 2*time.Second, "the delivery log lines", func() bool {
		return strings.Count(e.logs.String(), `"queue_id":"`+id+`"`) >= 3
	})
	for _, want := range []string{`"rcpt":"info@example.org"`, `"account":"bob@example.org"`, `"result":"delivered"`, `"op":"removed"`} {
		if !strings.Contains(e.logs.String(), want) {
			t.Errorf("log has no %s", want)
		}
	}
}

// TestNullSenderReturnPath: the null sender gives "Return-Path: <>".
func TestNullSenderReturnPath(t *testing.T) {
	t.Parallel()
	e := newSchedEnv(t)
	e.start(t)
	id := e.commit(t, queue.Envelope{From: "", Origin: queue.OriginInbound,
		Recipients: []queue.Recipient{{Addr: "alice@example.org", Account: "alice@example.org"}}}, body)
	e.sched.Enqueue(e.envs[id])
	waitUntil(t, 10*time.Second, "the copy", func() bool { return len(e.maildirFiles("alice@example.org")) == 1 })
	if got := e.maildirFiles("alice@example.org")[0]; !strings.HasPrefix(got, "Return-Path: <>\r\nDelivered-To: alice@example.org\r\n") {
		t.Errorf("copy starts %q", got[:60])
	}
}

// TestRemoteRecipientsStayQueued: without remote delivery, the local
// recipient is delivered and the remote one waits in the queue, neither
// failed nor counted as attempted.
func TestRemoteRecipientsStayQueued(t *testing.T) {
	t.Parallel()
	e := newSchedEnv(t)
	e.start(t)
	id := e.commit(t, queue.Envelope{
		From: "alice@example.org", Origin: queue.OriginAuthenticated, AuthUser: "alice@example.org",
		Recipients: []queue.Recipient{
			{Addr: "friend@remote.test"},
			{Addr: "bob@example.org", Account: "bob@example.org"},
		},
	}, body)
	e.sched.Enqueue(e.envs[id])
	waitUntil(t, 10*time.Second, "the local copy", func() bool { return len(e.maildirFiles("bob@example.org")) == 1 })
	waitUntil(t, 5*time.Second, "the state of the local recipient", func() bool {
		st, ok := e.state(t, id)
		return ok && st.Rcpts[1].Done
	})
	time.Sleep(3 * retryMax) // several scheduling rounds
	st, ok := e.state(t, id)
	if !ok {
		t.Fatal("the message with a remote recipient left the queue")
	}
	if r := st.Rcpts[0]; r.Done || r.Failed || r.Attempts != 0 {
		t.Errorf("remote recipient state %+v: want waiting, not done, not failed, no attempts", r)
	}
	if len(e.maildirFiles("bob@example.org")) != 1 {
		t.Errorf("the local recipient got %d copies, want exactly 1", len(e.maildirFiles("bob@example.org")))
	}
	if n, _ := e.spool.Len(); n != 1 {
		t.Errorf("Len() = %d, want 1", n)
	}
	if strings.Contains(e.logs.String(), `"op":"bounced"`) {
		t.Error("a DSN was generated for a recipient that is only waiting")
	}
}

// TestFailingMaildirRetriedWithBackoff: when an account's Maildir cannot
// be written (its path is a file), the recipient is deferred, not failed;
// each attempt is recorded in the state with the next attempt backed off
// (RetryMin doubling up to RetryMax); once the problem is fixed the
// message is delivered and leaves the queue.
func TestFailingMaildirRetriedWithBackoff(t *testing.T) {
	t.Parallel()
	e := newSchedEnv(t)
	broken := directory.MailboxPath(e.mailRoot, "carol@example.org")
	if err := os.MkdirAll(filepath.Dir(broken), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(broken, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.start(t)
	id := e.commit(t, queue.Envelope{From: "sender@remote.test", Origin: queue.OriginInbound,
		Recipients: []queue.Recipient{{Addr: "carol@example.org", Account: "carol@example.org"}}}, body)
	e.sched.Enqueue(e.envs[id])

	type seen struct {
		st queue.RcptState
		at time.Time
	}
	var history []seen
	waitUntil(t, 15*time.Second, "four recorded attempts", func() bool {
		st, ok := e.state(t, id)
		if !ok {
			t.Fatal("the message left the queue while its Maildir is broken")
		}
		r := st.Rcpts[0]
		if r.Attempts > 0 && (len(history) == 0 || history[len(history)-1].st.Attempts != r.Attempts) {
			history = append(history, seen{r, time.Now()})
		}
		return r.Attempts >= 4
	})
	for i, h := range history {
		if h.st.Done || h.st.Failed {
			t.Fatalf("attempt %d: state %+v: a local write error must defer, not fail", h.st.Attempts, h.st)
		}
		// The recorded reply may reach a person (a DSN, kanmon queue
		// show): a reply in plain words, no file path.
		if !strings.HasPrefix(h.st.Last, "451 4.2.0 ") || strings.Contains(h.st.Last, "/") {
			t.Errorf("attempt %d: last error %q: want a 451 4.2.0 reply without a path", h.st.Attempts, h.st.Last)
		}
		if h.st.Next.IsZero() {
			t.Errorf("attempt %d: next attempt %v not recorded", h.st.Attempts, h.st.Next)
		}
		if i > 0 && h.st.Attempts != history[i-1].st.Attempts+1 {
			t.Logf("attempts seen: %d after %d (an intermediate state was not observed)", h.st.Attempts, history[i-1].st.Attempts)
		}
	}
	// The path is for the operator: in the log line's err.
	if !e.logs.Has("delivery", func(l map[string]any) bool {
		err, _ := l["err"].(string)
		return l["queue_id"] == id && l["result"] == "deferred" && strings.Contains(err, broken)
	}) {
		t.Errorf("no deferred delivery line whose err names the Maildir %s", broken)
	}
	// The gap between consecutive planned attempts is the backoff of the
	// later attempt (plus scheduling slack): 200ms, 400ms, 800ms (capped).
	want := map[int]time.Duration{2: 2 * retryMin, 3: 4 * retryMin, 4: retryMax}
	byAttempt := map[int]queue.RcptState{}
	for _, h := range history {
		byAttempt[h.st.Attempts] = h.st
	}
	for k := 2; k <= 4; k++ {
		prev, ok1 := byAttempt[k-1]
		cur, ok2 := byAttempt[k]
		if !ok1 || !ok2 {
			// A check that silently skips what it did not see cannot fail:
			// attempts are 200ms+ apart and the state is read every 5ms.
			t.Errorf("states after attempts %d and %d were not both observed (seen %v): their backoff is unchecked", k-1, k, attemptsSeen(history, func(h seen) int { return h.st.Attempts }))
			continue
		}
		gap := cur.Next.Sub(prev.Next)
		if gap < want[k] || gap > want[k]+600*time.Millisecond {
			t.Errorf("attempt %d planned %v after attempt %d's plan, want about %v (backoff doubling from %v, capped at %v)",
				k, gap, k-1, want[k], retryMin, retryMax)
		}
	}
	if first, ok := byAttempt[1]; !ok {
		t.Errorf("the state after attempt 1 was never observed: the first retry's delay is unchecked")
	} else if d := first.Next.Sub(history[0].at); d > retryMin {
		t.Errorf("first retry planned %v after the state was seen, want at most %v", d, retryMin)
	}
	if n := e.counter("local", "deferred"); n < 4 {
		t.Errorf("kanmon_deliveries_total{local,deferred} = %v, want at least 4", n)
	}
	if len(e.maildirFiles("carol@example.org")) != 0 {
		t.Fatal("a copy appeared in a broken Maildir")
	}

	// The operator fixes the mailbox: the next retry delivers.
	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, retryMax+5*time.Second, "delivery after the fix", func() bool {
		n, _ := e.spool.Len()
		return n == 0 && len(e.maildirFiles("carol@example.org")) == 1
	})
	if got, want := e.maildirFiles("carol@example.org")[0], "Return-Path: <sender@remote.test>\r\nDelivered-To: carol@example.org\r\n"+string(body); got != want {
		t.Errorf("copy after retry:\n got %q\nwant %q", got, want)
	}
	if strings.Contains(e.logs.String(), `"op":"bounced"`) {
		t.Error("a DSN was sent for mail from outside")
	}
}

// TestRecoversQueueAtStart: messages already in the spool when the
// scheduler starts (after a restart: a new Spool on the same directory)
// are delivered without anyone enqueuing them, and a recipient recorded
// as done is not delivered again.
func TestRecoversQueueAtStart(t *testing.T) {
	t.Parallel()
	e := newSchedEnv(t)
	e.commit(t, queue.Envelope{From: "a@remote.test", Origin: queue.OriginInbound,
		Recipients: []queue.Recipient{{Addr: "alice@example.org", Account: "alice@example.org"}}}, []byte("Subject: first\r\n\r\none\r\n"))
	second := e.commit(t, queue.Envelope{From: "b@remote.test", Origin: queue.OriginInbound,
		Recipients: []queue.Recipient{
			{Addr: "alice@example.org", Account: "alice@example.org"},
			{Addr: "bob@example.org", Account: "bob@example.org"},
		}}, []byte("Subject: second\r\n\r\ntwo\r\n"))
	// The previous run delivered the second message to alice, then stopped.
	if err := e.spool.SaveState(second, queue.State{Rcpts: []queue.RcptState{{Done: true, Attempts: 1, Last: "delivered"}, {}}}); err != nil {
		t.Fatal(err)
	}
	// A tmp file of a message never acknowledged.
	if err := os.WriteFile(filepath.Join(e.dir, "tmp", "qhalf"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}

	e.spool = openSpool(t, e.dir) // restart
	e.start(t)
	waitUntil(t, 10*time.Second, "the recovered messages", func() bool {
		n, _ := e.spool.Len()
		return n == 0 && len(e.maildirFiles("alice@example.org")) == 1 && len(e.maildirFiles("bob@example.org")) == 1
	})
	if got := e.maildirFiles("alice@example.org")[0]; !strings.Contains(got, "Subject: first") {
		t.Errorf("alice got %q, want only the first message (the second was already delivered to her)", got)
	}
	if got := e.maildirFiles("bob@example.org")[0]; !strings.Contains(got, "Subject: second") {
		t.Errorf("bob got %q", got)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(e.maildirFiles("alice@example.org")); n != 1 {
		t.Errorf("alice has %d copies: a recipient done before the restart was delivered again", n)
	}
}

// TestHeldMessageWaits: a message held by the operator is not delivered.
func TestHeldMessageWaits(t *testing.T) {
	t.Parallel()
	e := newSchedEnv(t)
	id := e.commit(t, queue.Envelope{From: "a@remote.test", Origin: queue.OriginInbound,
		Recipients: []queue.Recipient{{Addr: "alice@example.org", Account: "alice@example.org"}}}, body)
	if err := e.spool.SaveState(id, queue.State{Rcpts: make([]queue.RcptState, 1), Held: true}); err != nil {
		t.Fatal(err)
	}
	e.start(t)
	e.sched.Enqueue(e.envs[id])
	time.Sleep(3 * retryMax)
	if n := len(e.maildirFiles("alice@example.org")); n != 0 {
		t.Errorf("a held message was delivered (%d copies)", n)
	}
	if n, _ := e.spool.Len(); n != 1 {
		t.Errorf("Len() = %d, want the held message still queued", n)
	}
}

// TestManyMessagesConcurrently: many messages enqueued at once are each
// delivered exactly once.
func TestManyMessagesConcurrently(t *testing.T) {
	t.Parallel()
	e := newSchedEnv(t)
	e.start(t)
	const n = 60
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := e.spool.Create(queue.Envelope{From: "a@remote.test", Origin: queue.OriginInbound,
				Recipients: []queue.Recipient{{Addr: "alice@example.org", Account: "alice@example.org"}}})
			if err != nil {
				t.Error(err)
				return
			}
			w.Write([]byte("Subject: m" + string(rune('A'+i%26)) + "\r\n\r\nx\r\n"))
			if err := w.Commit(); err != nil {
				t.Error(err)
				return
			}
			e.sched.Enqueue(w.Envelope())
		}()
	}
	wg.Wait()
	waitUntil(t, 20*time.Second, "every message delivered", func() bool {
		q, _ := e.spool.Len()
		return q == 0 && len(e.maildirFiles("alice@example.org")) >= n
	})
	time.Sleep(200 * time.Millisecond)
	if got := len(e.maildirFiles("alice@example.org")); got != n {
		t.Errorf("%d copies for %d messages", got, n)
	}
}

// attemptsSeen lists the attempt numbers of the states a test observed.
func attemptsSeen[T any](history []T, attempts func(T) int) []int {
	out := make([]int, 0, len(history))
	for _, h := range history {
		out = append(out, attempts(h))
	}
	return out
}
