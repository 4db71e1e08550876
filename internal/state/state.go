// Package state is kanmon's state database: the short-lived facts that
// policy keeps about clients, senders and accounts (rate-limit buckets,
// greylisting triplets, recipients an account has written to, hourly
// volumes), as opposed to the directory's accounts.
//
// Every fact is a Record under a string key, with an expiry. Callers read
// and change a record atomically with Update, and build their own shapes
// on it: a token bucket (Allow), a "seen before" set (Seen), a counter.
// The Store interface is small so that a database shared by several nodes
// serving one domain (PostgreSQL, say) can stand behind it; the store here
// is one node's: Memory, optionally persisted to SQLite (Open).
//
// Why memory first: the accept path must not pay a synchronous database
// write per message (~1000 messages/s at well under 1 ms of CPU each), so
// records live in memory and the SQLite store writes the changed ones in
// one transaction every second and at a clean shutdown, and loads them at
// start. A crash loses at most the last second of counts: rate limits
// and greylisting then err towards the client, which is acceptable for
// counters that only ever delay or refuse mail.
//
// SECURITY: keys hold addresses chosen by clients (greylisting triplets),
// so the number of records is bounded (MaxRecords); when the store is
// full of live records a new key is not stored, and callers fail open
// (never refuse mail because the store is full). The database file is
// created 0600.
package state

import (
	"hash/maphash"
	"sync"
	"time"
)

// Record is one fact. Its fields mean what the caller that owns the key
// says (a bucket's theoretical arrival time, a counter, a first-seen
// time, an average); a zero Record is "nothing known".
type Record struct {
	A, B, C, D int64
	F          float64
	// Expires is when the record is forgotten (Unix nanoseconds); 0 keeps
	// it until deleted.
	Expires int64
}

// Store holds records. Implementations are safe for concurrent use.
type Store interface {
	// Get returns the record under key, if present and unexpired at now.
	Get(key string, now time.Time) (Record, bool)
	// Update reads the record under key (the zero Record and false when
	// absent or expired), lets fn change it, and stores the result
	// atomically; fn returning false deletes the record instead. Update
	// reports false when the record could not be stored (the store is
	// full); fn has run anyway, on a record that is then not kept.
	Update(key string, now time.Time, fn func(r *Record, found bool) (keep bool)) bool
	// Close persists what changed and releases the store.
	Close() error
}

// MaxRecords bounds a store's records by default.
const MaxRecords = 2_000_000

// shards splits the map so sessions on many cores rarely wait for each
// other.
const shards = 64

// Memory is a Store in memory only (tests, and the in-memory side of the
// SQLite store).
type Memory struct {
	seed   maphash.Seed
	max    int // per shard
	shards [shards]shard
	// dirty tracking, for persistence: only when track is set.
	track bool
}

type shard struct {
	mu    sync.Mutex
	m     map[string]Record
	dirty map[string]struct{}
}

// NewMemory returns an empty store bounded to maxRecords (MaxRecords when
// maxRecords < 1).
func NewMemory(maxRecords int) *Memory {
	if maxRecords < 1 {
		maxRecords = MaxRecords
	}
	m := &Memory{seed: maphash.MakeSeed(), max: max(maxRecords/shards, 1)}
	for i := range m.shards {
		m.shards[i].m = map[string]Record{}
	}
	return m
}

func (m *Memory) shard(key string) *shard {
	return &m.shards[maphash.String(m.seed, key)%shards]
}

func live(r Record, now int64) bool { return r.Expires == 0 || r.Expires > now }

// Get returns the record under key if present and unexpired.
func (m *Memory) Get(key string, now time.Time) (Record, bool) {
	s := m.shard(key)
	s.mu.Lock()
	r, ok := s.m[key]
	s.mu.Unlock()
	if !ok || !live(r, now.UnixNano()) {
		return Record{}, false
	}
	return r, true
}

// Update changes the record under key atomically (see Store).
func (m *Memory) Update(key string, now time.Time, fn func(r *Record, found bool) bool) bool {
	n := now.UnixNano()
	s := m.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.m[key]
	if ok && !live(r, n) {
		r, ok = Record{}, false
	}
	keep := fn(&r, ok)
	switch {
	case !keep:
		if _, had := s.m[key]; had {
			delete(s.m, key)
			m.markLocked(s, key)
		}
		return true
	case !ok && len(s.m) >= m.max && !s.sweepLocked(n, m.max):
		return false
	}
	s.m[key] = r
	m.markLocked(s, key)
	return true
}

func (m *Memory) markLocked(s *shard, key string) {
	if m.track {
		if s.dirty == nil {
			s.dirty = map[string]struct{}{}
		}
		s.dirty[key] = struct{}{}
	}
}

// sweepLocked drops the shard's expired records; it reports whether
// there is room for one more below limit.
func (s *shard) sweepLocked(now int64, limit int) bool {
	for k, r := range s.m {
		if !live(r, now) {
			delete(s.m, k)
		}
	}
	return len(s.m) < limit
}

// Sweep forgets every expired record and returns how many remain.
func (m *Memory) Sweep(now time.Time) int {
	n, total := now.UnixNano(), 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		for k, r := range s.m {
			if !live(r, n) {
				delete(s.m, k)
			}
		}
		total += len(s.m)
		s.mu.Unlock()
	}
	return total
}

// Len is the number of records held, expired ones included.
func (m *Memory) Len() int {
	total := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		total += len(s.m)
		s.mu.Unlock()
	}
	return total
}

// Close does nothing for a memory store.
func (m *Memory) Close() error { return nil }

// change is one record to persist: deleted when !present.
type change struct {
	key     string
	rec     Record
	present bool
}

// takeDirty returns the records changed since the last call.
func (m *Memory) takeDirty() []change {
	var out []change
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		for k := range s.dirty {
			r, ok := s.m[k]
			out = append(out, change{key: k, rec: r, present: ok})
		}
		s.dirty = nil
		s.mu.Unlock()
	}
	return out
}

// load puts a record read from disk, without marking it changed.
func (m *Memory) load(key string, r Record) {
	s := m.shard(key)
	s.mu.Lock()
	s.m[key] = r
	s.mu.Unlock()
}
