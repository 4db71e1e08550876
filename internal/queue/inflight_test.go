package queue

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestInFlightMarkersSurviveReopen: a marker set before an attempt is
// still listed when the spool is opened again (the restart after a
// crash), and a cleared one is not; clearing twice is harmless.
func TestInFlightMarkersSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Limits{})
	a := commit(t, s, testEnvelope(), []byte("a\r\n"))
	b := commit(t, s, testEnvelope(), []byte("b\r\n"))
	for _, id := range []string{a, b} {
		if err := s.MarkInFlight(id); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.ClearInFlight(b); err != nil {
		t.Fatal(err)
	}
	if err := s.ClearInFlight(b); err != nil {
		t.Errorf("clearing a cleared marker: %v", err)
	}
	s2 := openSpool(t, dir, Limits{})
	got, err := s2.InFlight()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []string{a}) {
		t.Errorf("in flight after reopen = %v, want [%s]", got, a)
	}
	if b, err := os.ReadFile(filepath.Join(dir, journalName)); err != nil || string(b) != "+"+a+"\n" {
		t.Errorf("journal after reopen = %q, %v; want only the open entry", b, err)
	}
}

// TestInFlightRejectsPathNames: an id never leaves the spool or splits a
// journal record.
func TestInFlightRejectsPathNames(t *testing.T) {
	s := openSpool(t, t.TempDir(), Limits{})
	for _, id := range []string{"", "../msg/x", ".hidden", `a\b`, "a\n+b", strings.Repeat("x", 80)} {
		if err := s.MarkInFlight(id); err == nil {
			t.Errorf("MarkInFlight(%q) accepted", id)
		}
		if err := s.ClearInFlight(id); err == nil {
			t.Errorf("ClearInFlight(%q) accepted", id)
		}
	}
}

// TestStateKeepsHoldReasonAndUncleanStops: the new state fields round-trip
// through SaveState and Open.
func TestStateKeepsHoldReasonAndUncleanStops(t *testing.T) {
	s := openSpool(t, t.TempDir(), Limits{})
	id := commit(t, s, testEnvelope(), []byte("x\r\n"))
	m, err := s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	st := m.State
	m.Close()
	st.Held, st.HoldReason, st.UncleanStops = true, "because", 2
	if err := s.SaveState(id, st); err != nil {
		t.Fatal(err)
	}
	m, err = s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !m.State.Held || m.State.HoldReason != "because" || m.State.UncleanStops != 2 {
		t.Errorf("state after reopen: %+v", m.State)
	}
}

// BenchmarkMarkClearInFlight is what the in-flight journal adds to one
// delivery attempt: two small appends to inflight.log.
func BenchmarkMarkClearInFlight(b *testing.B) {
	s := openSpool(b, b.TempDir(), Limits{})
	id := NewID()
	for b.Loop() {
		if err := s.MarkInFlight(id); err != nil {
			b.Fatal(err)
		}
		if err := s.ClearInFlight(id); err != nil {
			b.Fatal(err)
		}
	}
}
