package queue

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCreateFailureGivesBackItsSlot: when the temporary file cannot be
// made on the real file system (here: tmp/ is gone), Create fails and
// the message it was going to receive no longer counts against
// queue.max_messages; otherwise every such failure would shrink the
// queue for good until new mail were refused.
func TestCreateFailureGivesBackItsSlot(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Limits{MaxMessages: 1})
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.Rename(tmp, tmp+".gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(Envelope{From: "a@remote.test", Recipients: []Recipient{{Addr: "b@example.org"}}}); err == nil {
		t.Fatal("Create succeeded without a tmp directory")
	}
	if n := s.receiving.Load(); n != 0 {
		t.Errorf("%d messages still counted as being received after a failed Create, want 0", n)
	}
	if err := s.CheckSpace(0); err != nil {
		t.Errorf("CheckSpace after a failed Create: %v, want room for one message", err)
	}
	if err := os.Rename(tmp+".gone", tmp); err != nil {
		t.Fatal(err)
	}
	w, err := s.Create(Envelope{From: "a@remote.test", Recipients: []Recipient{{Addr: "b@example.org"}}})
	if err != nil {
		t.Fatalf("Create once tmp/ is back: %v", err)
	}
	w.Abort()
}
