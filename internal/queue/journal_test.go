package queue

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"sync"
	"testing"

	"kanmon/internal/fsys"
)

func inFlight(t *testing.T, s *Spool) []string {
	t.Helper()
	ids, err := s.InFlight()
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestJournalInterleavedAttempts: attempts start and end in any order,
// from several goroutines at once (the scheduler's workers); after a
// reopen exactly the ids started and not ended are in flight.
func TestJournalInterleavedAttempts(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Limits{})
	steps := []struct {
		sign byte
		id   string
	}{{'+', "qa"}, {'+', "qb"}, {'+', "qc"}, {'-', "qa"}, {'+', "qa"}, {'-', "qc"}, {'-', "qd"}}
	for _, st := range steps {
		var err error
		if st.sign == '+' {
			err = s.MarkInFlight(st.id)
		} else {
			err = s.ClearInFlight(st.id)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// 8 workers, 50 attempts each; the odd ones are left open (crashed).
	var wg sync.WaitGroup
	var want []string
	for w := range 8 {
		for i := range 50 {
			if i%2 == 1 {
				want = append(want, fmt.Sprintf("w%d-%02d", w, i))
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				id := fmt.Sprintf("w%d-%02d", w, i)
				if err := s.MarkInFlight(id); err != nil {
					t.Error(err)
				}
				if i%2 == 0 {
					if err := s.ClearInFlight(id); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	want = append(want, "qa", "qb")
	sort.Strings(want)
	if got := inFlight(t, s); !reflect.DeepEqual(got, want) {
		t.Errorf("in flight in the running spool = %v\nwant %v", got, want)
	}
	if got := inFlight(t, openSpool(t, dir, Limits{})); !reflect.DeepEqual(got, want) {
		t.Errorf("in flight after reopen = %v\nwant %v", got, want)
	}
}

// TestJournalPartialLastLine: a process killed in the middle of a write
// leaves a record without its newline; it and lines that are not records
// are ignored, the whole records before count.
func TestJournalPartialLastLine(t *testing.T) {
	dir := t.TempDir()
	long := make([]byte, 5000)
	for i := range long {
		long[i] = 'x'
	}
	journal := "+qa\n+qb\n" + "+" + string(long) + "\n" + "garbage\n+../x\n\n+qc\n-qb\n+qd"
	if err := os.WriteFile(filepath.Join(dir, journalName), []byte(journal), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openSpool(t, dir, Limits{})
	if got, want := inFlight(t, s), []string{"qa", "qc"}; !reflect.DeepEqual(got, want) {
		t.Errorf("in flight = %v, want %v", got, want)
	}
	// The rewrite at open dropped the partial line: a new record does
	// not glue to it.
	if err := s.MarkInFlight("qe"); err != nil {
		t.Fatal(err)
	}
	if got, want := inFlight(t, openSpool(t, dir, Limits{})), []string{"qa", "qc", "qe"}; !reflect.DeepEqual(got, want) {
		t.Errorf("in flight after a new record and reopen = %v, want %v", got, want)
	}
}

// TestJournalCompactionKeepsOpenEntries: past its size bound the journal
// is rewritten with only the open entries, while running; records after
// that go to the new file.
func TestJournalCompactionKeepsOpenEntries(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Limits{})
	s.inflight.compactAt = 200
	if err := s.MarkInFlight("qkeep"); err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		id := fmt.Sprintf("qdone%03d", i)
		if err := s.MarkInFlight(id); err != nil {
			t.Fatal(err)
		}
		if err := s.ClearInFlight(id); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.MarkInFlight("qlater"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, journalName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 200+40 {
		t.Errorf("journal is %d bytes after 1000 records with a bound of 200: not compacted", fi.Size())
	}
	if got, want := inFlight(t, openSpool(t, dir, Limits{})), []string{"qkeep", "qlater"}; !reflect.DeepEqual(got, want) {
		t.Errorf("in flight after compaction and reopen = %v, want %v", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, journalName+".new")); err == nil {
		t.Errorf("temporary journal left behind")
	}
}

// TestJournalReadsOldMarkers is the upgrade path: inflight/<id> markers
// left by an older version count as in flight, are carried into the
// journal, and the directory is removed.
func TestJournalReadsOldMarkers(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "inflight"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"qold1", "qold2"} {
		if err := os.WriteFile(filepath.Join(dir, "inflight", id), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, journalName), []byte("+qnew\n+qold1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openSpool(t, dir, Limits{})
	want := []string{"qnew", "qold1", "qold2"}
	if got := inFlight(t, s); !reflect.DeepEqual(got, want) {
		t.Errorf("in flight = %v, want %v", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "inflight")); err == nil {
		t.Errorf("old inflight/ directory still there")
	}
	if got := inFlight(t, openSpool(t, dir, Limits{})); !reflect.DeepEqual(got, want) {
		t.Errorf("in flight after a second open = %v, want %v (the journal must hold the old markers)", got, want)
	}
	if err := s.ClearInFlight("qold2"); err != nil {
		t.Fatal(err)
	}
}

// FuzzJournalLoad: whatever the journal holds, opening the spool does
// not fail or panic, lists only valid ids, and the rewritten journal
// lists the same ids again.
func FuzzJournalLoad(f *testing.F) {
	f.Add([]byte("+qa\n-qa\n+qb\n"))
	f.Add([]byte("+qa\n+q"))
	f.Add([]byte("-\n+\n\n+../x\n+.h\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, journalName), data, 0o600); err != nil {
			t.Fatal(err)
		}
		j, err := openJournal(fsys.OS, dir)
		if err != nil {
			t.Fatal(err)
		}
		defer j.f.Close()
		first := j.sorted()
		for _, id := range first {
			if !validID(id) {
				t.Errorf("invalid id %q listed", id)
			}
		}
		j2, err := openJournal(fsys.OS, dir)
		if err != nil {
			t.Fatal(err)
		}
		defer j2.f.Close()
		if second := j2.sorted(); !reflect.DeepEqual(first, second) {
			t.Errorf("reopen lists %v, first open %v", second, first)
		}
	})
}
