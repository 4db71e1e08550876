package queue_test

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"kanmon/internal/fsys"
	"kanmon/internal/fsys/fsystest"
	"kanmon/internal/maildir"
	"kanmon/internal/queue"
)

// powerRig is a queue and a Maildir on one file system that can lose
// power, with what was acknowledged: the bytes of every message whose
// Commit returned nil (the moment the server says "250").
type powerRig struct {
	t     *testing.T
	fs    *fsystest.FS
	spool *queue.Spool
	box   maildir.Dir
	acked map[string][]byte
	rng   *rand.Rand
}

func newPowerRig(t *testing.T, seed uint64) *powerRig {
	r := &powerRig{t: t, fs: fsystest.New(), box: maildir.Dir("/data/mail/example.org/alice"),
		acked: map[string][]byte{}, rng: rand.New(rand.NewPCG(seed, 1))}
	r.reopen()
	return r
}

func (r *powerRig) reopen() {
	r.t.Helper()
	s, err := queue.OpenFS(r.fs, "/data/queue", queue.Limits{})
	if err != nil {
		r.t.Fatalf("reopen queue: %v\n%s", err, r.fs.Dump())
	}
	r.spool = s
}

// accept receives one message, as the DATA phase does, and records it as
// acknowledged once Commit returns nil.
func (r *powerRig) accept() string {
	r.t.Helper()
	w, err := r.spool.Create(queue.Envelope{From: "bob@example.com", Recipients: []queue.Recipient{{Addr: "alice@example.org", Account: "alice@example.org"}}})
	if err != nil {
		r.t.Fatal(err)
	}
	var body bytes.Buffer
	fmt.Fprintf(&body, "Message-ID: <%s@test>\r\nSubject: power\r\n\r\n", w.ID())
	for range 1 + r.rng.IntN(300) {
		fmt.Fprintf(&body, "line %d of %s\r\n", r.rng.Int(), w.ID())
	}
	if _, err := w.Write(body.Bytes()); err != nil {
		r.t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		r.t.Fatal(err)
	}
	r.acked[w.ID()] = body.Bytes()
	return w.ID()
}

// deliverOldest does what the local courier does with the oldest queued
// message: write it to the Maildir, then remove it from the queue.
// It reports false when the queue is empty.
func (r *powerRig) deliverOldest() bool {
	r.t.Helper()
	ids, err := r.spool.IDs()
	if err != nil {
		r.t.Fatal(err)
	}
	if len(ids) == 0 {
		return false
	}
	m, err := r.spool.Open(ids[0])
	if err != nil {
		r.t.Fatalf("open %s: %v\n%s", ids[0], err, r.fs.Dump())
	}
	_, err = r.box.DeliverFS(r.fs, io.MultiReader(strings.NewReader("Delivered-To: alice@example.org\r\n"), m.Body()))
	m.Close()
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.spool.Remove(ids[0]); err != nil {
		r.t.Fatal(err)
	}
	return true
}

// powerLoss cuts the power, reopens the queue, and checks that every
// acknowledged message is intact in the queue or in the Maildir.
func (r *powerRig) powerLoss(step string) {
	r.t.Helper()
	r.fs.PowerLoss()
	r.reopen()
	inBox := map[string]bool{}
	ents, _ := r.fs.ReadDir(filepath.Join(string(r.box), "new"))
	for _, e := range ents {
		raw, err := fsys.ReadFile(r.fs, filepath.Join(string(r.box), "new", e.Name()))
		if err != nil {
			r.t.Fatal(err)
		}
		rest, ok := bytes.CutPrefix(raw, []byte("Delivered-To: alice@example.org\r\n"))
		id, _, _ := strings.Cut(strings.TrimPrefix(string(rest), "Message-ID: <"), "@")
		if body, known := r.acked[id]; ok && known && bytes.Equal(rest, body) {
			inBox[id] = true
		}
	}
	for id, body := range r.acked {
		if inBox[id] {
			continue
		}
		m, err := r.spool.Open(id)
		if err != nil {
			r.t.Fatalf("after %s: acknowledged message %s is in neither the queue nor the Maildir: %v\nfiles left:\n%s", step, id, err, r.fs.Dump())
		}
		got, err := io.ReadAll(m.Body())
		m.Close()
		if err != nil || !bytes.Equal(got, body) {
			r.t.Fatalf("after %s: acknowledged message %s came back with %d of %d bytes (err %v)\nfiles left:\n%s", step, id, len(got), len(body), err, r.fs.Dump())
		}
	}
}

// TestPowerLossKeepsAcknowledgedMail is law 1 against a power cut, which
// kill -9 cannot simulate: the file system forgets every byte and every
// directory entry that was not fsynced. Each step below fails if one
// fsync is missing:
//   - queue file fsync: the name survives, the data does not;
//   - queue msg/ fsync: the data survives, the name does not;
//   - Maildir file fsync and new/ fsync: the message was removed from the
//     queue (made durable by the next commit's msg/ fsync) while its
//     Maildir copy was not durable yet;
//   - the fsync of a new Maildir's parent directories: the first delivery
//     to a fresh account vanishes with its directory.
func TestPowerLossKeepsAcknowledgedMail(t *testing.T) {
	t.Parallel()
	r := newPowerRig(t, 1)
	r.accept()
	r.powerLoss("one commit")

	r.accept()
	r.accept()
	if !r.deliverOldest() {
		t.Fatal("queue empty after a power loss that kept two acknowledged messages")
	}
	r.accept() // its msg/ fsync makes the removal above durable
	r.powerLoss("delivery to a new Maildir, then a commit")

	for r.deliverOldest() {
	}
	r.accept()
	r.powerLoss("delivery of everything, then a commit")
	if len(r.acked) != 5 {
		t.Fatalf("acked %d messages, want 5", len(r.acked))
	}
}

// TestPowerLossRandom interleaves commits, deliveries and power cuts in
// a seeded random order (bounded to 250 steps for each of 4 seeds).
func TestPowerLossRandom(t *testing.T) {
	t.Parallel()
	for seed := range uint64(4) {
		r := newPowerRig(t, seed)
		for step := range 250 {
			switch n := r.rng.IntN(10); {
			case n < 5:
				r.accept()
			case n < 9:
				r.deliverOldest()
			default:
				r.powerLoss(fmt.Sprintf("seed %d step %d", seed, step))
			}
		}
		r.powerLoss(fmt.Sprintf("seed %d end", seed))
	}
}
