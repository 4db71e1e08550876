package queue

import (
	"errors"
	"io/fs"
	"strings"
	"sync"
	"testing"

	"kanmon/internal/fsys"
)

// missCounter is the real file system, recording every open or remove
// of a file that does not exist.
type missCounter struct {
	fsys.FS
	mu     sync.Mutex
	misses []string
}

func (m *missCounter) miss(op, name string, err error) {
	if errors.Is(err, fs.ErrNotExist) {
		m.mu.Lock()
		m.misses = append(m.misses, op+" "+name)
		m.mu.Unlock()
	}
}

func (m *missCounter) OpenFile(name string, flag int, perm fs.FileMode) (fsys.File, error) {
	f, err := m.FS.OpenFile(name, flag, perm)
	m.miss("open", name, err)
	return f, err
}

func (m *missCounter) Remove(name string) error {
	err := m.FS.Remove(name)
	m.miss("remove", name, err)
	return err
}

// TestNoMissingFileCallsPerMessage: a message committed, opened for
// delivery and removed without ever having a state file tries no file
// that does not exist (the state file used to be opened and removed in
// vain for every message); one whose state was saved still gets it back
// and has it removed.
func TestNoMissingFileCallsPerMessage(t *testing.T) {
	t.Parallel()
	mc := &missCounter{FS: fsys.OS}
	s, err := OpenFS(mc, t.TempDir(), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	id := commit(t, s, testEnvelope(), []byte("Subject: x\r\n\r\nbody\r\n"))
	m, err := s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if err := s.Remove(id); err != nil {
		t.Fatal(err)
	}
	if len(mc.misses) != 0 {
		t.Errorf("calls on missing files: %s", strings.Join(mc.misses, "; "))
	}

	id = commit(t, s, testEnvelope(), []byte("Subject: y\r\n\r\nbody\r\n"))
	st := State{Rcpts: []RcptState{{Done: true}, {Attempts: 2}}}
	if err := s.SaveState(id, st); err != nil {
		t.Fatal(err)
	}
	m, err = s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if m.State.Rcpts[1].Attempts != 2 || !m.State.Rcpts[0].Done {
		t.Errorf("saved state not read back: %+v", m.State)
	}
	if err := s.Remove(id); err != nil {
		t.Fatal(err)
	}
	if _, err := fsys.OS.Stat(s.statePath(id)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("state file left after Remove: %v", err)
	}
}
