package queue

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
)

// The prepend block goes on top of the message when it is read, the
// counted size is the file's, and the envelope reads back unchanged.
func TestPrependBlockReadsOnTop(t *testing.T) {
	for _, pre := range []string{"DKIM-Signature: v=1; a=ed25519-sha256; b=xyz\r\n", ""} {
		s := openSpool(t, t.TempDir(), Limits{})
		w, err := s.CreateWithPrepend(testEnvelope())
		if err != nil {
			t.Fatal(err)
		}
		body := testBody()
		w.Write(body)
		if err := w.SetPrepend([]byte(pre)); err != nil {
			t.Fatal(err)
		}
		if w.Size() != int64(len(pre)+len(body)) {
			t.Fatalf("writer size %d", w.Size())
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		m, err := s.Open(w.ID())
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(m.Body())
		again, _ := io.ReadAll(m.Body())
		m.Close()
		want := pre + string(body)
		if string(got) != want || string(again) != want {
			t.Fatalf("body with prepend %q: got %d bytes, want %d (starts %q)", pre, len(got), len(want), got[:min(60, len(got))])
		}
		if m.Size != int64(len(want)) || m.Envelope.AuthUser != "alice@example.org" {
			t.Fatalf("size %d envelope %+v", m.Size, m.Envelope)
		}
		fi, _ := os.Stat(s.msgPath(w.ID()))
		if _, b := s.Len(); b != fi.Size() {
			t.Fatalf("queue counts %d bytes, the file has %d", b, fi.Size())
		}
	}
}

func TestPrependBounds(t *testing.T) {
	s := openSpool(t, t.TempDir(), Limits{})
	w, _ := s.Create(testEnvelope())
	defer w.Abort()
	if err := w.SetPrepend([]byte("X: y\r\n")); err == nil {
		t.Fatal("SetPrepend on a file without a prepend block succeeded")
	}
	w2, _ := s.CreateWithPrepend(testEnvelope())
	defer w2.Abort()
	if err := w2.SetPrepend(bytes.Repeat([]byte("x"), MaxPrepend+1)); err == nil {
		t.Fatal("oversize prepend accepted")
	}
}

// A file whose footer was damaged is refused, never read with a wrong
// boundary between the block and the message.
func TestPrependDamagedFooterRefused(t *testing.T) {
	s := openSpool(t, t.TempDir(), Limits{})
	w, _ := s.CreateWithPrepend(testEnvelope())
	w.Write([]byte("Subject: x\r\n\r\nbody\r\n"))
	w.SetPrepend([]byte("X-A: b\r\n"))
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(s.msgPath(w.ID()))
	for _, bad := range []string{
		strings.Replace(string(raw), "KANMON-PREPEND 0000000008", "KANMON-PREPEND 9999999999", 1),
		strings.Replace(string(raw), "KANMON-PREPEND", "KANMON-PREPENX", 1),
		string(raw[:len(raw)-5]),
	} {
		os.WriteFile(s.msgPath(w.ID()), []byte(bad), 0o600)
		if m, err := s.Open(w.ID()); err == nil {
			m.Close()
			t.Errorf("damaged footer opened: %q", bad[len(bad)-30:])
		}
	}
}
