package maildir

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func newDir(t *testing.T) Dir {
	t.Helper()
	d := Dir(filepath.Join(t.TempDir(), "box"))
	if err := d.Create(); err != nil {
		t.Fatal(err)
	}
	return d
}

func entries(t *testing.T, d Dir, sub string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(string(d), sub))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func readAll(t *testing.T, d Dir, m Message) string {
	t.Helper()
	f, err := d.Open(m)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestListMovesNewToCur: delivered messages are listed in delivery order
// with their unique names as keys, moved to cur/ with ":2," and their
// size recorded as ",W=".
func TestListMovesNewToCur(t *testing.T) {
	d := newDir(t)
	var names []string
	bodies := []string{"Subject: 1\r\n\r\none\r\n", "Subject: 2\r\n\r\ntwo\r\n", "Subject: 3\r\n\r\nthree\r\n"}
	for _, b := range bodies {
		n, err := d.Deliver(strings.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	msgs, err := d.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 3 {
		t.Fatalf("List = %v", msgs)
	}
	for i, m := range msgs {
		if m.Key != names[i] || m.UID() != names[i] || m.Size != int64(len(bodies[i])) {
			t.Errorf("message %d = %+v, want key %s size %d", i, m, names[i], len(bodies[i]))
		}
		if want := filepath.Join(string(d), "cur", names[i]+",W="+strconv.Itoa(len(bodies[i]))+":2,"); m.Path != want {
			t.Errorf("path %s, want %s", m.Path, want)
		}
		if got := readAll(t, d, m); got != bodies[i] {
			t.Errorf("content %q", got)
		}
	}
	if n := entries(t, d, "new"); len(n) != 0 {
		t.Errorf("new/ still holds %v", n)
	}
	again, err := d.List()
	if err != nil || len(again) != 3 {
		t.Fatal(again, err)
	}
	for i := range again {
		if again[i] != msgs[i] {
			t.Errorf("second listing %+v differs from %+v", again[i], msgs[i])
		}
	}
}

// TestListOrder sorts by the time and sequence in the unique name, not by
// the name as a string.
func TestListOrder(t *testing.T) {
	d := newDir(t)
	keys := []string{"999999999.M5P1Q1.h", "1000000000.M1P9Q1.h", "1000000000.M20P1Q3.h", "1000000000.M20P1Q10.h", "1000000001.M0P1Q2.h"}
	for _, k := range []int{3, 0, 4, 1, 2} {
		if err := os.WriteFile(filepath.Join(string(d), "new", keys[k]), []byte("x\r\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	msgs, err := d.List()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range msgs {
		got = append(got, m.Key)
	}
	if strings.Join(got, " ") != strings.Join(keys, " ") {
		t.Errorf("order %v, want %v", got, keys)
	}
}

func TestWireSize(t *testing.T) {
	long := strings.Repeat("z", 70000)
	for in, want := range map[string]int64{
		"":                    0,
		"a":                   3,
		"a\r\n":               3,
		"a\n":                 3,
		"\n\n":                4,
		"\r\n\r\n":            4,
		"a\rb\r\n":            5,
		"a\r":                 4,
		long + "\n" + long:    int64(2*len(long) + 4),
		long + "\r\n" + "end": int64(len(long) + 5 + 2),
	} {
		got, err := WireSize(strings.NewReader(in))
		if err != nil || got != want {
			t.Errorf("WireSize(%.20q... len %d) = %d, %v; want %d", in, len(in), got, err, want)
		}
	}
	// CR and LF split across the reader's buffer boundary.
	in := strings.Repeat("y", 32*1024-1) + "\r\n"
	if got, _ := WireSize(strings.NewReader(in)); got != int64(len(in)) {
		t.Errorf("CRLF across the buffer: %d, want %d", got, len(in))
	}
}

// TestListForeignFiles: a file another tool put in cur/ (LF endings, no
// size attribute, flags) is measured once and named with its size; dot
// files, directories and symlinks are not messages.
func TestListForeignFiles(t *testing.T) {
	d := newDir(t)
	cur := filepath.Join(string(d), "cur")
	if err := os.WriteFile(filepath.Join(cur, "1600000000.123_4.oldhost,S=12:2,RS"), []byte("A: b\n\nbody\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(cur, ".hidden"), []byte("x"), 0o600)
	os.Mkdir(filepath.Join(cur, "subdir"), 0o700)
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("not mail"), 0o600)
	if err := os.Symlink(secret, filepath.Join(string(d), "new", "1700000000.M1P1Q1.link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(cur, "1700000000.M1P1Q2.link:2,")); err != nil {
		t.Fatal(err)
	}
	msgs, err := d.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("List = %+v, want only the foreign message", msgs)
	}
	m := msgs[0]
	if m.Key != "1600000000.123_4.oldhost" || m.Size != 14 || filepath.Base(m.Path) != "1600000000.123_4.oldhost,S=12,W=14:2,RS" {
		t.Errorf("foreign message %+v", m)
	}
	if _, err := os.Stat(m.Path); err != nil {
		t.Error(err)
	}
}

// TestOpenAfterRename: a file renamed since the listing (flags changed by
// another reader) is still found by its key.
func TestOpenAfterRename(t *testing.T) {
	d := newDir(t)
	if _, err := d.Deliver(strings.NewReader("hello\r\n")); err != nil {
		t.Fatal(err)
	}
	msgs, _ := d.List()
	if err := os.Rename(msgs[0].Path, msgs[0].Path+"S"); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, d, msgs[0]); got != "hello\r\n" {
		t.Errorf("content %q", got)
	}
	os.Remove(msgs[0].Path + "S")
	if _, err := d.Open(msgs[0]); !os.IsNotExist(err) {
		t.Errorf("Open of a removed message: %v", err)
	}
}

func TestRemove(t *testing.T) {
	d := newDir(t)
	for i := range 4 {
		if _, err := d.Deliver(strings.NewReader("m" + strconv.Itoa(i) + "\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	msgs, _ := d.List()
	if err := d.Remove([]string{msgs[0].Key, msgs[2].Key, "no-such-key"}); err != nil {
		t.Fatal(err)
	}
	left, err := d.List()
	if err != nil || len(left) != 2 || left[0].Key != msgs[1].Key || left[1].Key != msgs[3].Key {
		t.Errorf("after Remove: %+v %v", left, err)
	}
	for _, n := range entries(t, d, ".") {
		if strings.HasPrefix(n, journalPrefix) {
			t.Errorf("journal %s left behind", n)
		}
	}
	if n := entries(t, d, "tmp"); len(n) != 0 {
		t.Errorf("tmp/ holds %v", n)
	}
	if err := d.Remove(nil); err != nil {
		t.Error(err)
	}
}

// TestRemoveFinishedAfterCrash: a journal left by a Remove that died after
// writing it is applied by the next List, before anything is listed.
func TestRemoveFinishedAfterCrash(t *testing.T) {
	d := newDir(t)
	for i := range 3 {
		d.Deliver(strings.NewReader("m" + strconv.Itoa(i) + "\r\n"))
	}
	msgs, _ := d.List()
	// What Remove does before unlinking anything.
	if _, err := d.writeJournal([]string{msgs[0].Key, msgs[1].Key}); err != nil {
		t.Fatal(err)
	}
	left, err := d.List()
	if err != nil || len(left) != 1 || left[0].Key != msgs[2].Key {
		t.Fatalf("after the crash: %+v %v", left, err)
	}
	for _, n := range entries(t, d, ".") {
		if strings.HasPrefix(n, journalPrefix) {
			t.Errorf("journal %s not dropped", n)
		}
	}
}

func TestListMissingMaildir(t *testing.T) {
	msgs, err := Dir(filepath.Join(t.TempDir(), "none")).List()
	if err != nil || len(msgs) != 0 {
		t.Errorf("List of a missing Maildir = %v, %v", msgs, err)
	}
}

func TestUID(t *testing.T) {
	ok := "1700000000.M1P2Q3.host"
	if UID(ok) != ok {
		t.Errorf("UID(%s) = %s", ok, UID(ok))
	}
	for _, k := range []string{strings.Repeat("a", 71), "has space", "tab\there", "ümlaut", ""} {
		u := UID(k)
		if u == k || len(u) < 1 || len(u) > 70 || UID(k) != u {
			t.Errorf("UID(%q) = %q", k, u)
		}
		for _, c := range []byte(u) {
			if c < 0x21 || c > 0x7e {
				t.Errorf("UID(%q) = %q has %q", k, u, c)
			}
		}
	}
	if UID(strings.Repeat("a", 71)) == UID(strings.Repeat("a", 72)) {
		t.Error("hash collision")
	}
	if len(UID(strings.Repeat("a", 70))) != 70 {
		t.Error("a 70-character key is a valid UID")
	}
}

// TestListUnparsableNameUsesMtime orders names without a time by the
// file's modification time.
func TestListUnparsableNameUsesMtime(t *testing.T) {
	d := newDir(t)
	cur := filepath.Join(string(d), "cur")
	for i, n := range []string{"zzz-first", "aaa-second"} {
		p := filepath.Join(cur, n+":2,")
		os.WriteFile(p, []byte("x\r\n"), 0o600)
		mt := time.Unix(1000000000+int64(i), 0)
		os.Chtimes(p, mt, mt)
	}
	msgs, err := d.List()
	if err != nil || len(msgs) != 2 || msgs[0].Key != "zzz-first" {
		t.Errorf("List = %+v, %v", msgs, err)
	}
	if !bytes.Equal([]byte(readAll(t, d, msgs[1])), []byte("x\r\n")) {
		t.Error("content")
	}
}
