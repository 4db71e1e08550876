package state

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestGCRA(t *testing.T) {
	const s = int64(time.Second)
	r := Rate{Per: 60, Period: time.Minute, Burst: 3} // one token a second, three at once
	now := int64(1000) * s
	tests := []struct {
		name      string
		tat, n    int64
		ok        bool
		wantTAT   int64
		wantRetry time.Duration
	}{
		{"full bucket", 0, 1, true, now + s, 0},
		{"full bucket, whole burst", 0, 3, true, now + 3*s, 0},
		{"more than the burst never fits", 0, 4, false, 0, time.Minute},
		{"two spent, one left", now + 2*s, 1, true, now + 3*s, 0},
		{"empty bucket", now + 3*s, 1, false, now + 3*s, time.Second},
		{"empty bucket, two asked", now + 3*s, 2, false, now + 3*s, 2 * time.Second},
		{"old tat is a full bucket", now - 100*s, 1, true, now + s, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tat, ok, retry := GCRA(r, tt.tat, now, tt.n)
			if ok != tt.ok || retry != tt.wantRetry || ok && tat != tt.wantTAT {
				t.Errorf("GCRA(tat=%d, n=%d) = %d, %v, %v; want %d, %v, %v", tt.tat, tt.n, tat, ok, retry, tt.wantTAT, tt.ok, tt.wantRetry)
			}
		})
	}
	if _, ok, _ := GCRA(Rate{}, 0, now, 1); ok {
		t.Error("the zero Rate allowed a token")
	}
}

func TestAllowRefillsAndForgets(t *testing.T) {
	m := NewMemory(0)
	r := Rate{Per: 2, Period: time.Hour, Burst: 2}
	now := time.Unix(1_700_000_000, 0)
	for i := range 2 {
		if ok, _ := Allow(m, "k", r, 1, now); !ok {
			t.Fatalf("attempt %d refused within the burst", i+1)
		}
	}
	ok, retry := Allow(m, "k", r, 1, now)
	if ok || retry != 30*time.Minute {
		t.Fatalf("third attempt: ok=%v retry=%v, want refused for 30m", ok, retry)
	}
	if ok, _ := Peek(m, "k", r, 1, now.Add(30*time.Minute)); !ok {
		t.Fatal("a token did not come back after its interval")
	}
	if _, found := m.Get("k", now.Add(time.Hour+time.Second)); found {
		t.Error("a full bucket is still kept")
	}
}

func TestSeen(t *testing.T) {
	m := NewMemory(0)
	now := time.Unix(1_700_000_000, 0)
	if Seen(m, "x", time.Hour, now) {
		t.Fatal("first time reported as seen")
	}
	if !Seen(m, "x", time.Hour, now.Add(59*time.Minute)) {
		t.Fatal("second time within ttl not seen")
	}
	if Seen(m, "x", time.Hour, now.Add(3*time.Hour)) {
		t.Fatal("seen after ttl")
	}
}

// A full store keeps what it has and stores nothing new (callers fail
// open), until records expire.
func TestMemoryBound(t *testing.T) {
	m := NewMemory(shards) // one record per shard
	now := time.Unix(1_700_000_000, 0)
	stored := 0
	for i := range 10 * shards {
		if m.Update("k"+strconv.Itoa(i), now, func(r *Record, _ bool) bool { r.Expires = now.Add(time.Minute).UnixNano(); return true }) {
			stored++
		}
	}
	if stored != shards || m.Len() != shards {
		t.Fatalf("stored %d, holds %d; want %d", stored, m.Len(), shards)
	}
	later := now.Add(2 * time.Minute)
	if !m.Update("new", later, func(r *Record, _ bool) bool { return true }) {
		t.Fatal("no room after every record expired")
	}
}

func TestPersistAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	r := Rate{Per: 1, Period: time.Hour, Burst: 1}
	if ok, _ := Allow(s, "bucket", r, 1, now); !ok {
		t.Fatal("first token refused")
	}
	Seen(s, "seen", time.Hour, now)
	s.Update("gone", now, func(r *Record, _ bool) bool { r.B = 7; return true })
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	s.Update("gone", now, func(*Record, bool) bool { return false })
	s.Update("expired", now, func(r *Record, _ bool) bool { r.Expires = now.Add(-time.Second).UnixNano(); return true })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state.db mode: %v %v, want 0600", fi.Mode().Perm(), err)
	}

	s2, err := Open(path, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if ok, _ := Allow(s2, "bucket", r, 1, now.Add(time.Second)); ok {
		t.Error("the spent bucket came back full after a restart")
	}
	if !Seen(s2, "seen", time.Hour, now.Add(time.Second)) {
		t.Error("a seen key was forgotten across a restart")
	}
	if _, ok := s2.Get("gone", now); ok {
		t.Error("a deleted record came back")
	}
	if n := s2.Len(); n != 2 {
		t.Errorf("loaded %d records, want 2 (bucket, seen)", n)
	}
}

func TestSchemaVersionChecked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec("UPDATE meta SET value = 99 WHERE name = 'schema_version'"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s2, err := Open(path, 0, nil); err == nil {
		s2.Close()
		t.Fatal("a database of another schema version was opened")
	}
}

// BenchmarkAllow is the hot path's cost: one bucket decision in the
// persisted store (the write happens later, in the background flush).
func BenchmarkAllow(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "state.db"), 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	r := Rate{Per: 1 << 40, Period: time.Hour, Burst: 1 << 20}
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "rl:msg:u:user" + strconv.Itoa(i) + "@example.org"
	}
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			Allow(s, keys[i%len(keys)], r, 1, now)
			i++
		}
	})
}

// BenchmarkFlush is the background cost of writing 1000 changed records
// (a second of traffic at 1000 messages/s, one record each).
func BenchmarkFlush(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "state.db"), 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		for j := range 1000 {
			Seen(s, "seen:"+strconv.Itoa(j), time.Hour, now)
		}
		if err := s.Flush(); err != nil {
			b.Fatal(err)
		}
	}
}
