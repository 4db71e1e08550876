package queue

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kanmon/internal/fsys"
)

func openSpool(t testing.TB, dir string, l Limits) *Spool {
	t.Helper()
	s, err := Open(dir, l)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testEnvelope() Envelope {
	return Envelope{
		From: "sender@remote.test",
		Recipients: []Recipient{
			{Addr: "postmaster@example.org", Account: "alice@example.org"},
			{Addr: "friend@remote.test"},
		},
		Received: time.Date(2030, 5, 6, 7, 8, 9, 123456789, time.UTC),
		Origin:   OriginAuthenticated,
		AuthUser: "alice@example.org",
		ClientIP: "192.0.2.1",
		ConnID:   "cabc",
		Listener: "submission",
		SMTPUTF8: true,
		Body8Bit: true,
	}
}

// testBody has every byte value, bare CR and LF, dots at line starts and
// no final newline: the spool must not touch any of it.
func testBody() []byte {
	var b bytes.Buffer
	b.WriteString("Received: from client\r\nSubject: t\r\n\r\n.\r\n..two\r\nbare\rcr and bare\nlf\r\n")
	for i := range 256 {
		b.WriteByte(byte(i))
	}
	b.WriteString(strings.Repeat("long line ", 10000))
	b.WriteString("\r\nno final newline")
	return b.Bytes()
}

// commit writes one message (in small chunks) and commits it.
func commit(t testing.TB, s *Spool, env Envelope, body []byte) string {
	t.Helper()
	w, err := s.Create(env)
	if err != nil {
		t.Fatal(err)
	}
	for rest := body; len(rest) > 0; {
		n := min(len(rest), 777)
		if k, err := w.Write(rest[:n]); err != nil || k != n {
			t.Fatalf("Write: %d, %v", k, err)
		}
		rest = rest[n:]
	}
	if w.Size() != int64(len(body)) {
		t.Errorf("Size() = %d, want %d", w.Size(), len(body))
	}
	if err := w.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return w.ID()
}

func readBody(t testing.TB, m *Message) []byte {
	t.Helper()
	b, err := io.ReadAll(m.Body())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openSpool(t, dir, Limits{})
	env := testEnvelope()
	body := testBody()
	id := commit(t, s, env, body)
	if id == "" || strings.ContainsAny(id, "/\\.") {
		t.Fatalf("queue id %q", id)
	}
	m, err := s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	env.ID = id
	if got, want := fmt.Sprintf("%+v", m.Envelope), fmt.Sprintf("%+v", env); got != want {
		t.Errorf("envelope after round trip:\n got %s\nwant %s", got, want)
	}
	if !m.Envelope.Received.Equal(env.Received) {
		t.Errorf("Received %v, want %v", m.Envelope.Received, env.Received)
	}
	if m.Size != int64(len(body)) {
		t.Errorf("Size = %d, want %d", m.Size, len(body))
	}
	if got := readBody(t, m); !bytes.Equal(got, body) {
		t.Errorf("body differs after round trip (%d bytes, want %d)", len(got), len(body))
	}
	// Body() starts from the beginning every time.
	if got := readBody(t, m); !bytes.Equal(got, body) {
		t.Errorf("second Body() read differs")
	}
	if len(m.State.Rcpts) != 2 || !m.Pending() || m.State.Held {
		t.Errorf("fresh state %+v: want two pending recipients, not held", m.State)
	}
	if ids, _ := s.IDs(); len(ids) != 1 || ids[0] != id {
		t.Errorf("IDs() = %v, want [%s]", ids, id)
	}
	if got := dirNames(t, filepath.Join(dir, "tmp")); len(got) != 0 {
		t.Errorf("tmp/ holds %v after Commit", got)
	}
}

func TestCreateAssignsIDsAndTime(t *testing.T) {
	t.Parallel()
	s := openSpool(t, t.TempDir(), Limits{})
	seen := map[string]bool{}
	for range 50 {
		before := time.Now()
		w, err := s.Create(Envelope{From: "a@b.c", Recipients: []Recipient{{Addr: "x@example.org"}}})
		if err != nil {
			t.Fatal(err)
		}
		if seen[w.ID()] {
			t.Fatalf("id %s handed out twice", w.ID())
		}
		seen[w.ID()] = true
		w.Write([]byte("x"))
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		m, err := s.Open(w.ID())
		if err != nil {
			t.Fatal(err)
		}
		if m.Envelope.ID != w.ID() || m.Envelope.Received.Before(before.Add(-time.Second)) || m.Envelope.Received.After(time.Now().Add(time.Second)) {
			t.Errorf("envelope id %q received %v", m.Envelope.ID, m.Envelope.Received)
		}
		m.Close()
	}
	// A caller-chosen id is kept.
	w, err := s.Create(Envelope{ID: "qchosen1", From: "a@b.c"})
	if err != nil {
		t.Fatal(err)
	}
	if w.ID() != "qchosen1" {
		t.Errorf("ID() = %q, want qchosen1", w.ID())
	}
	w.Abort()
}

func TestAbortLeavesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openSpool(t, dir, Limits{})
	w, err := s.Create(testEnvelope())
	if err != nil {
		t.Fatal(err)
	}
	w.Write(testBody())
	w.Abort()
	w.Abort() // twice is harmless
	for _, sub := range []string{"tmp", "msg", "state"} {
		if got := dirNames(t, filepath.Join(dir, sub)); len(got) != 0 {
			t.Errorf("%s/ holds %v after Abort", sub, got)
		}
	}
	if n, b := s.Len(); n != 0 || b != 0 {
		t.Errorf("Len() = %d, %d after Abort", n, b)
	}
	if _, err := s.Open(w.ID()); err == nil {
		t.Error("an aborted message can be opened")
	}
	if err := w.Commit(); err == nil {
		t.Error("Commit after Abort succeeded")
	}
	if got := dirNames(t, filepath.Join(dir, "msg")); len(got) != 0 {
		t.Errorf("msg/ holds %v after Commit-after-Abort", got)
	}
}

func TestCommitTwiceRefused(t *testing.T) {
	t.Parallel()
	s := openSpool(t, t.TempDir(), Limits{})
	w, err := s.Create(testEnvelope())
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("body"))
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err == nil {
		t.Error("second Commit succeeded")
	}
	if n, _ := s.Len(); n != 1 {
		t.Errorf("Len() = %d after a double Commit, want 1", n)
	}
}

// TestCrashSafety: after a restart (a new Spool on the same directory) a
// message whose Commit returned nil is there, byte-exact; a message being
// received (never committed) is gone, and so are stray files in tmp/.
func TestCrashSafety(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openSpool(t, dir, Limits{})
	body := testBody()
	kept := commit(t, s, testEnvelope(), body)

	half, err := s.Create(Envelope{From: "half@remote.test", Recipients: []Recipient{{Addr: "x@example.org"}}})
	if err != nil {
		t.Fatal(err)
	}
	half.Write(bytes.Repeat([]byte("partial "), 10000)) // more than the buffer: partly on disk
	if err := os.WriteFile(filepath.Join(dir, "tmp", "stray"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	// "Crash": the writer is never committed nor aborted; a new process opens the spool.

	s2 := openSpool(t, dir, Limits{})
	if got := dirNames(t, filepath.Join(dir, "tmp")); len(got) != 0 {
		t.Errorf("tmp/ holds %v after restart, want nothing", got)
	}
	ids, err := s2.IDs()
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1 || ids[0] != kept {
		t.Fatalf("after restart the queue holds %v, want only the committed %s", ids, kept)
	}
	m, err := s2.Open(kept)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got := readBody(t, m); !bytes.Equal(got, body) {
		t.Error("committed body differs after restart")
	}
	if m.Envelope.From != "sender@remote.test" || len(m.Envelope.Recipients) != 2 {
		t.Errorf("committed envelope after restart: %+v", m.Envelope)
	}
	if _, err := s2.Open(half.ID()); err == nil {
		t.Error("the uncommitted message can be opened after restart")
	}
	if n, _ := s2.Len(); n != 1 {
		t.Errorf("Len() after restart = %d, want 1", n)
	}
}

// TestLen counts messages and their bytes on disk, across a restart, and
// returns to zero when everything is removed.
func TestLen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openSpool(t, dir, Limits{})
	var ids []string
	for i := range 3 {
		ids = append(ids, commit(t, s, testEnvelope(), bytes.Repeat([]byte("x"), 1000*(i+1))))
	}
	var onDisk int64
	for _, id := range ids {
		fi, err := os.Stat(filepath.Join(dir, "msg", id))
		if err != nil {
			t.Fatal(err)
		}
		onDisk += fi.Size()
	}
	if n, b := s.Len(); n != 3 || b != onDisk {
		t.Errorf("Len() = %d, %d; want 3, %d (bytes of msg/ files)", n, b, onDisk)
	}
	if n, b := openSpool(t, dir, Limits{}).Len(); n != 3 || b != onDisk {
		t.Errorf("Len() after reopen = %d, %d; want 3, %d", n, b, onDisk)
	}
	for i, id := range ids {
		if err := s.SaveState(id, State{Rcpts: make([]RcptState, 2)}); err != nil {
			t.Fatal(err)
		}
		if err := s.Remove(id); err != nil {
			t.Fatal(err)
		}
		if n, _ := s.Len(); n != 2-i {
			t.Errorf("after %d removals Len() = %d", i+1, n)
		}
	}
	if n, b := s.Len(); n != 0 || b != 0 {
		t.Errorf("Len() after removing everything = %d, %d; want 0, 0", n, b)
	}
	for _, sub := range []string{"msg", "state"} {
		if got := dirNames(t, filepath.Join(dir, sub)); len(got) != 0 {
			t.Errorf("%s/ holds %v after Remove", sub, got)
		}
	}
	if err := s.Remove(ids[0]); err == nil {
		t.Error("removing a removed message succeeded")
	}
	if n, b := s.Len(); n != 0 || b != 0 {
		t.Errorf("a failed Remove changed Len() to %d, %d", n, b)
	}
}

func TestCheckSpaceMaxMessages(t *testing.T) {
	t.Parallel()
	s := openSpool(t, t.TempDir(), Limits{MaxMessages: 2})
	if err := s.CheckSpace(100); err != nil {
		t.Fatalf("empty queue: %v", err)
	}
	a := commit(t, s, testEnvelope(), []byte("a"))
	if err := s.CheckSpace(100); err != nil {
		t.Fatalf("one of two: %v", err)
	}
	commit(t, s, testEnvelope(), []byte("b"))
	err := s.CheckSpace(0)
	if !errors.Is(err, ErrFull) || !IsNoSpace(err) || !strings.Contains(err.Error(), "queue.max_messages") {
		t.Fatalf("at max_messages: %v, want ErrFull naming queue.max_messages", err)
	}
	if err := s.Remove(a); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSpace(0); err != nil {
		t.Errorf("after a removal: %v, want room again", err)
	}
}

func TestCheckSpaceMaxBytes(t *testing.T) {
	t.Parallel()
	s := openSpool(t, t.TempDir(), Limits{MaxBytes: 10000})
	if err := s.CheckSpace(10000); err != nil {
		t.Errorf("exactly max_size into an empty queue: %v", err)
	}
	err := s.CheckSpace(10001)
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "queue.max_size") {
		t.Errorf("one byte over max_size: %v, want ErrFull naming queue.max_size", err)
	}
	commit(t, s, testEnvelope(), bytes.Repeat([]byte("x"), 6000))
	_, used := s.Len()
	if err := s.CheckSpace(10000 - used); err != nil {
		t.Errorf("filling exactly: %v", err)
	}
	if err := s.CheckSpace(10000 - used + 1); !errors.Is(err, ErrFull) {
		t.Errorf("one byte over with %d queued: %v, want ErrFull", used, err)
	}
}

// TestCheckSpaceMinFree: free disk space (through the freeBytes hook) is a
// bound; the value is re-read at most every 100ms.
func TestCheckSpaceMinFree(t *testing.T) {
	t.Parallel()
	s := openSpool(t, t.TempDir(), Limits{MinFreeBytes: 5 << 20})
	var mu sync.Mutex
	free := int64(10 << 20)
	calls := 0
	s.freeBytes = func(string) (int64, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return free, nil
	}
	if err := s.CheckSpace(1 << 20); err != nil {
		t.Fatalf("10 MiB free, 1 MiB message, 5 MiB reserve: %v", err)
	}
	err := s.CheckSpace(6 << 20)
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "queue.min_free_space") {
		t.Fatalf("message eating into the reserve: %v, want ErrFull naming queue.min_free_space", err)
	}
	mu.Lock()
	free = 4 << 20
	mu.Unlock()
	time.Sleep(150 * time.Millisecond) // past the statfs cache
	if err := s.CheckSpace(0); !errors.Is(err, ErrFull) {
		t.Errorf("disk below the reserve: %v, want ErrFull", err)
	}
	mu.Lock()
	free = 1 << 30
	mu.Unlock()
	time.Sleep(150 * time.Millisecond)
	if err := s.CheckSpace(1 << 20); err != nil {
		t.Errorf("after space was freed: %v", err)
	}
	// Many checks in a burst cost few statfs calls.
	mu.Lock()
	calls = 0
	mu.Unlock()
	for range 1000 {
		s.CheckSpace(1)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls > 5 {
		t.Errorf("1000 CheckSpace calls in a burst made %d statfs calls", calls)
	}
}

// TestCheckSpaceRealDisk: with the real statfs, an absurd reserve is
// refused and a tiny one is not.
func TestCheckSpaceRealDisk(t *testing.T) {
	t.Parallel()
	if err := openSpool(t, t.TempDir(), Limits{MinFreeBytes: 1 << 62}).CheckSpace(0); !errors.Is(err, ErrFull) {
		t.Errorf("reserve of 4 EiB: %v, want ErrFull", err)
	}
	if err := openSpool(t, t.TempDir(), Limits{MinFreeBytes: 1}).CheckSpace(0); err != nil {
		t.Errorf("reserve of 1 byte: %v", err)
	}
}

func TestSaveStateAndOpen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openSpool(t, dir, Limits{})
	id := commit(t, s, testEnvelope(), []byte("body"))
	next := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	st := State{Rcpts: []RcptState{
		{Done: true, Attempts: 1, Last: "delivered to Maildir x"},
		{Attempts: 3, Last: "451 try later", Next: next},
	}, Held: true}
	if err := s.SaveState(id, st); err != nil {
		t.Fatal(err)
	}
	m, err := openSpool(t, dir, Limits{}).Open(id) // as after a restart
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !m.State.Held || len(m.State.Rcpts) != 2 || !m.State.Rcpts[0].Done || m.State.Rcpts[1].Attempts != 3 ||
		m.State.Rcpts[1].Last != "451 try later" || !m.State.Rcpts[1].Next.Equal(next) {
		t.Errorf("state after SaveState and reopen: %+v", m.State)
	}
	if !m.Pending() {
		t.Error("Pending() false with a recipient not done")
	}
	if got := dirNames(t, filepath.Join(dir, "state")); len(got) != 1 || got[0] != id {
		t.Errorf("state/ holds %v, want only %s (no temporary files)", got, id)
	}

	st.Rcpts[1] = RcptState{Failed: true, Reported: true}
	if err := s.SaveState(id, st); err != nil {
		t.Fatal(err)
	}
	m2, err := s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if m2.Pending() {
		t.Errorf("Pending() with every recipient done or failed and reported: %+v", m2.State)
	}

	// A state that does not match the envelope is ignored, not trusted.
	if err := s.SaveState(id, State{Rcpts: []RcptState{{Done: true}}}); err != nil {
		t.Fatal(err)
	}
	m3, err := s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer m3.Close()
	if len(m3.State.Rcpts) != 2 || !m3.Pending() {
		t.Errorf("mismatched state was used: %+v", m3.State)
	}
	// So is a corrupt one.
	if err := os.WriteFile(filepath.Join(dir, "state", id), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	m4, err := s.Open(id)
	if err != nil {
		t.Fatalf("Open with a corrupt state file: %v", err)
	}
	defer m4.Close()
	if len(m4.State.Rcpts) != 2 || !m4.Pending() {
		t.Errorf("corrupt state: %+v", m4.State)
	}
}

func TestOpenRefusesBadIDs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openSpool(t, dir, Limits{})
	// A file outside the spool that a traversal would reach.
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte(magic+"2\n{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"", ".", "..", "../secret", "a/b", `a\b`, ".hidden", "/etc/passwd"} {
		if m, err := s.Open(id); err == nil {
			m.Close()
			t.Errorf("Open(%q) succeeded", id)
		}
	}
}

func TestOpenRefusesDamagedFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openSpool(t, dir, Limits{})
	for name, content := range map[string]string{
		"qempty":     "",
		"qnomagic":   "hello\n",
		"qbadlen":    magic + "abc\n{}",
		"qzerolen":   magic + "0\n",
		"qhugelen":   magic + "99999999999\n{}",
		"qshort":     magic + "100\n{}",
		"qnotjson":   magic + "5\nhello",
		"qnonewline": magic + "2",
	} {
		if err := os.WriteFile(filepath.Join(dir, "msg", name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if m, err := s.Open(name); err == nil {
			m.Close()
			t.Errorf("Open of a damaged file %s (%q) succeeded", name, content)
		}
	}
}

// TestConcurrentCommits: 200 goroutines commit at once (group commit of
// the directory fsync); every Commit returns nil and every message is on
// disk, complete. Run with -race.
func TestConcurrentCommits(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openSpool(t, dir, Limits{})
	const n = 200
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			w, err := s.Create(Envelope{From: "s@remote.test", Recipients: []Recipient{{Addr: fmt.Sprintf("u%d@example.org", i)}}})
			if err != nil {
				errs[i] = err
				return
			}
			fmt.Fprintf(w, "message %d\r\n", i)
			ids[i] = w.ID()
			errs[i] = w.Commit()
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
	}
	got, err := s.IDs()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d messages in msg/, want %d", len(got), n)
	}
	if c, _ := s.Len(); c != n {
		t.Errorf("Len() = %d, want %d", c, n)
	}
	s2 := openSpool(t, dir, Limits{})
	for i, id := range ids {
		m, err := s2.Open(id)
		if err != nil {
			t.Fatalf("message %d (%s): %v", i, id, err)
		}
		body := readBody(t, m)
		m.Close()
		if want := fmt.Sprintf("message %d\r\n", i); string(body) != want || m.Envelope.Recipients[0].Addr != fmt.Sprintf("u%d@example.org", i) {
			t.Errorf("message %d: body %q, rcpt %v", i, body, m.Envelope.Recipients)
		}
	}
}

// TestGroupSyncErrors: a failed directory fsync fails every commit it
// covered (law 1: a commit whose rename may not be durable must not be
// acknowledged), even when the next group's fsync fails too; and it does
// not fail a later commit that a successful fsync covers.
func TestGroupSyncErrors(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "later")
	g := &groupSync{fs: fsys.OS, dir: dir}
	var wg sync.WaitGroup
	const rounds, callers = 200, 50
	lost := 0
	for range rounds {
		errs := make([]error, callers)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = g.sync()
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err == nil {
				lost++
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d syncs of a missing directory returned nil: a waiter covered by a failed fsync "+
			"reads the error range after the next failed group overwrote it (errFrom/errTo), so its Commit "+
			"would return nil and the server would say 250 for a message that may not be durable", lost, rounds*callers)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, callers)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = g.sync()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("sync %d after the directory exists: %v (a stale error was reported)", i, err)
		}
	}
}

// failingFile is a spool file whose writes or fsync fail, as on a full or
// broken disk.
type failingFile struct {
	f        *os.File
	room     int   // bytes that fit before writes fail
	syncErr  error // returned by Sync when set
	writeErr error
}

func (f *failingFile) Write(p []byte) (int, error) {
	if len(p) > f.room {
		n, _ := f.f.Write(p[:f.room])
		f.room = 0
		return n, f.writeErr
	}
	f.room -= len(p)
	return f.f.Write(p)
}

func (f *failingFile) Sync() error {
	if f.syncErr != nil {
		return f.syncErr
	}
	return f.f.Sync()
}

func (f *failingFile) Close() error { return f.f.Close() }

// TestCommitFailsOnFullDisk: a write error (ENOSPC) makes Commit fail with
// an error IsNoSpace recognises, and leaves nothing in the queue.
func TestCommitFailsOnFullDisk(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openSpool(t, dir, Limits{})
	s.SetCreateHook(func(path string) (io.WriteCloser, error) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, err
		}
		return &failingFile{f: f, room: 100, writeErr: &os.PathError{Op: "write", Path: path, Err: syscall.ENOSPC}}, nil
	})
	w, err := s.Create(testEnvelope())
	if err != nil {
		t.Fatal(err)
	}
	w.Write(bytes.Repeat([]byte("x"), 100000))
	err = w.Commit()
	if err == nil {
		t.Fatal("Commit succeeded on a full disk")
	}
	if !IsNoSpace(err) {
		t.Errorf("IsNoSpace(%v) = false", err)
	}
	for _, sub := range []string{"tmp", "msg"} {
		if got := dirNames(t, filepath.Join(dir, sub)); len(got) != 0 {
			t.Errorf("%s/ holds %v after a failed Commit", sub, got)
		}
	}
	if n, b := s.Len(); n != 0 || b != 0 {
		t.Errorf("Len() = %d, %d after a failed Commit", n, b)
	}
}

// TestCommitFailsWhenFsyncFails: law 1. If the file cannot be fsynced the
// message is not accepted (Commit fails) and not left in msg/.
func TestCommitFailsWhenFsyncFails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openSpool(t, dir, Limits{})
	s.SetCreateHook(func(path string) (io.WriteCloser, error) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, err
		}
		return &failingFile{f: f, room: 1 << 30, syncErr: syscall.EIO}, nil
	})
	w, err := s.Create(testEnvelope())
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("body"))
	if err := w.Commit(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Commit with a failing fsync: %v, want EIO", err)
	}
	if got := dirNames(t, filepath.Join(dir, "msg")); len(got) != 0 {
		t.Errorf("msg/ holds %v although fsync failed", got)
	}
}

func TestCreateFailure(t *testing.T) {
	t.Parallel()
	s := openSpool(t, t.TempDir(), Limits{})
	s.SetCreateHook(func(path string) (io.WriteCloser, error) {
		return nil, &os.PathError{Op: "open", Path: path, Err: syscall.EDQUOT}
	})
	if _, err := s.Create(testEnvelope()); err == nil || !IsNoSpace(err) {
		t.Fatalf("Create with a quota error: %v, want an error IsNoSpace recognises", err)
	}
}

func TestIsNoSpace(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{syscall.ENOSPC, true},
		{syscall.EDQUOT, true},
		{&os.PathError{Op: "write", Path: "/q/tmp/x", Err: syscall.ENOSPC}, true},
		{fmt.Errorf("queue: commit q1: %w", &os.PathError{Op: "write", Err: syscall.EDQUOT}), true},
		{ErrFull, true},
		{fmt.Errorf("%w: 3 messages queued", ErrFull), true},
		{syscall.EIO, false},
		{errors.New("no space left on device"), false}, // only the real error counts, not its text
		{os.ErrNotExist, false},
		{nil, false},
	} {
		if got := IsNoSpace(tc.err); got != tc.want {
			t.Errorf("IsNoSpace(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestSpoolPermissions(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "queue")
	s := openSpool(t, dir, Limits{})
	id := commit(t, s, testEnvelope(), []byte("private"))
	for _, p := range []string{filepath.Join(dir, "msg"), filepath.Join(dir, "tmp"), filepath.Join(dir, "state"), filepath.Join(dir, "msg", id)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v: readable by others", p, fi.Mode().Perm())
		}
	}
	if s.Dir() != dir {
		t.Errorf("Dir() = %q", s.Dir())
	}
}
