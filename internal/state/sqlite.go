package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// schemaVersion is the state database's layout; a database with another
// version is refused rather than misread.
const schemaVersion = 1

const schema = `
CREATE TABLE IF NOT EXISTS meta (
	name TEXT PRIMARY KEY,
	value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
	key TEXT PRIMARY KEY,
	a INTEGER NOT NULL,
	b INTEGER NOT NULL,
	c INTEGER NOT NULL,
	d INTEGER NOT NULL,
	f REAL NOT NULL,
	expires INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS records_expires ON records (expires);
`

// FlushInterval is how often the SQLite store writes what changed.
const FlushInterval = time.Second

// SQLite is a Memory store persisted to an SQLite database: loaded at
// Open, the changed records written in one transaction every
// FlushInterval and at Close.
type SQLite struct {
	*Memory
	db   *sql.DB
	path string
	log  *slog.Logger

	flushMu sync.Mutex // one flush at a time
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// Open opens (creating it 0600 if needed) the state database at path,
// loads its unexpired records and starts the background flush.
func Open(path string, maxRecords int, log *slog.Logger) (*SQLite, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	f.Close()
	dsn := "file:" + filepath.ToSlash(path) + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	s := &SQLite{Memory: NewMemory(maxRecords), db: db, path: path, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	s.Memory.track = true
	if err := s.init(); err != nil {
		db.Close()
		return nil, err
	}
	if err := secure(path); err != nil {
		db.Close()
		return nil, err
	}
	go s.loop()
	return s, nil
}

// secure sets 0600 on the database files: the records name clients and
// correspondents.
func secure(path string) error {
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("state: mode of %s: %w", p, err)
		}
	}
	return nil
}

func (s *SQLite) init() error {
	ctx := context.Background()
	if _, err := s.db.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("state: create schema in %s: %w", s.path, err)
	}
	var v int64
	err := s.db.QueryRowContext(ctx, "SELECT value FROM meta WHERE name = 'schema_version'").Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := s.db.ExecContext(ctx, "INSERT INTO meta (name, value) VALUES ('schema_version', ?)", schemaVersion); err != nil {
			return fmt.Errorf("state: write schema version in %s: %w", s.path, err)
		}
	case err != nil:
		return fmt.Errorf("state: read schema version in %s: %w", s.path, err)
	case v != schemaVersion:
		return fmt.Errorf("state: %s has schema version %d, this kanmon reads %d", s.path, v, schemaVersion)
	}
	now := time.Now().UnixNano()
	rows, err := s.db.QueryContext(ctx, "SELECT key, a, b, c, d, f, expires FROM records WHERE expires = 0 OR expires > ?", now)
	if err != nil {
		return fmt.Errorf("state: load %s: %w", s.path, err)
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		var r Record
		if err := rows.Scan(&k, &r.A, &r.B, &r.C, &r.D, &r.F, &r.Expires); err != nil {
			return fmt.Errorf("state: load %s: %w", s.path, err)
		}
		s.Memory.load(k, r)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("state: load %s: %w", s.path, err)
	}
	return nil
}

// loop flushes every FlushInterval and sweeps expired records every
// minute, until Close.
func (s *SQLite) loop() {
	defer close(s.done)
	t := time.NewTicker(FlushInterval)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			if err := s.Flush(); err != nil {
				s.log.Error("state", "op", "flush", "err", err.Error())
			}
			if now.Sub(last) >= time.Minute {
				last = now
				s.sweep(now)
			}
		}
	}
}

// sweep forgets expired records in memory and on disk.
func (s *SQLite) sweep(now time.Time) {
	s.Memory.Sweep(now)
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	if _, err := s.db.Exec("DELETE FROM records WHERE expires > 0 AND expires <= ?", now.UnixNano()); err != nil {
		s.log.Error("state", "op", "sweep", "err", err.Error())
	}
}

// Flush writes the records changed since the last flush, in one
// transaction. On failure they are marked changed again for the next.
func (s *SQLite) Flush() error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	ch := s.Memory.takeDirty()
	if len(ch) == 0 {
		return nil
	}
	if err := s.write(ch); err != nil {
		for _, c := range ch {
			sh := s.Memory.shard(c.key)
			sh.mu.Lock()
			s.Memory.markLocked(sh, c.key)
			sh.mu.Unlock()
		}
		return err
	}
	return nil
}

func (s *SQLite) write(ch []change) error {
	tx, err := s.db.Begin()
	if err != nil {
		return fmt.Errorf("state: flush %s: %w", s.path, err)
	}
	defer tx.Rollback()
	up, err := tx.Prepare(`INSERT INTO records (key, a, b, c, d, f, expires) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (key) DO UPDATE SET a = excluded.a, b = excluded.b, c = excluded.c, d = excluded.d, f = excluded.f, expires = excluded.expires`)
	if err != nil {
		return fmt.Errorf("state: flush %s: %w", s.path, err)
	}
	defer up.Close()
	del, err := tx.Prepare("DELETE FROM records WHERE key = ?")
	if err != nil {
		return fmt.Errorf("state: flush %s: %w", s.path, err)
	}
	defer del.Close()
	for _, c := range ch {
		if c.present {
			_, err = up.Exec(c.key, c.rec.A, c.rec.B, c.rec.C, c.rec.D, c.rec.F, c.rec.Expires)
		} else {
			_, err = del.Exec(c.key)
		}
		if err != nil {
			return fmt.Errorf("state: flush %s: key %q: %w", s.path, c.key, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("state: flush %s: %w", s.path, err)
	}
	return nil
}

// Close stops the background flush, writes what changed and closes the
// database.
func (s *SQLite) Close() error {
	var err error
	s.once.Do(func() {
		close(s.stop)
		<-s.done
		err = errors.Join(s.Flush(), s.db.Close())
	})
	return err
}
