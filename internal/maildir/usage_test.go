package maildir

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestUsageCountsNewAndCur(t *testing.T) {
	d := Dir(filepath.Join(t.TempDir(), "box"))
	if n, err := d.Usage(); err != nil || n != 0 {
		t.Fatalf("missing Maildir: %d, %v", n, err)
	}
	if _, err := d.Deliver(bytes.NewReader(make([]byte, 300))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(string(d), "cur", "x:2,S"), make([]byte, 200), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(string(d), "tmp", "half"), make([]byte, 999), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := d.Usage(); err != nil || n != 500 {
		t.Fatalf("Usage = %d, %v; want 500 (new + cur, not tmp)", n, err)
	}
}

func TestUsageCache(t *testing.T) {
	d := Dir(filepath.Join(t.TempDir(), "box"))
	now := time.Unix(1000, 0)
	u := NewUsageCache(5 * time.Second)
	u.now = func() time.Time { return now }
	if n, _ := u.Usage(d); n != 0 {
		t.Fatalf("empty: %d", n)
	}
	if _, err := d.Deliver(bytes.NewReader(make([]byte, 100))); err != nil {
		t.Fatal(err)
	}
	u.Add(d, 40) // accepted, not delivered yet
	if n, _ := u.Usage(d); n != 40 {
		t.Fatalf("within the period: %d, want the cached 0 plus 40 charged", n)
	}
	now = now.Add(5 * time.Second)
	if n, _ := u.Usage(d); n != 100 {
		t.Fatalf("after the period: %d, want a fresh scan (100)", n)
	}
}
