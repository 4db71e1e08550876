// Package directory keeps kanmon's accounts, aliases and domains in a SQL
// database (SQLite through modernc.org/sqlite, pure Go; the schema uses only
// portable SQL so it can later run on PostgreSQL).
//
// The server reads a snapshot of the tables held in memory, so a recipient
// lookup costs a map access, not a query. The snapshot is refreshed when the
// database changes (SQLite's data_version, checked at most once a second),
// so `kanmon user add` takes effect on a running server without a restart,
// and on Reload (SIGHUP).
//
// SECURITY: the database holds password hashes (argon2id), never passwords.
// Account names are validated here so they are safe as Maildir path parts.
package directory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	mailaddr "kanmon/internal/address"
)

// ErrNotFound is returned when an account or alias does not exist.
var ErrNotFound = errors.New("not found")

// ErrTooDeep is returned when an alias would make a chain longer than
// Resolve follows.
var ErrTooDeep = errors.New("alias chain too long")

// maxAliasDepth is how many alias steps Resolve follows.
const maxAliasDepth = 8

// ErrExists is returned when creating an account or alias that exists.
var ErrExists = errors.New("already exists")

const schema = `
CREATE TABLE IF NOT EXISTS domains (
	name TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS users (
	address TEXT PRIMARY KEY,
	password_hash TEXT NOT NULL,
	created_at TEXT NOT NULL,
	quota INTEGER
);
CREATE TABLE IF NOT EXISTS aliases (
	alias TEXT PRIMARY KEY,
	target TEXT NOT NULL
);
`

// DB is the account directory.
type DB struct {
	sql *sql.DB

	snap      atomic.Pointer[snapshot]
	mu        sync.Mutex // serialises refreshes
	checkedAt atomic.Int64
	version   int64
}

type snapshot struct {
	users  map[string]string // address -> password hash
	quotas map[string]int64  // address -> its own mailbox quota, when set
	// suspended maps a suspended account to the reason (suspend.go).
	suspended map[string]string
	aliases   map[string]string // alias -> target
	domains   map[string]bool
}

// secretMode is the mode of the database and its -wal and -shm files:
// they hold password hashes, so only kanmon's own user may read them.
const secretMode = 0o600

// Open opens (creating if needed) the database at path. The file is
// created 0600 before SQLite opens it, whatever the umask; SQLite gives
// its -wal and -shm files the database's mode, and Open sets 0600 on all
// three afterwards too, so a database left readable by an older version
// is closed on its next open.
func Open(path string) (*DB, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, secretMode)
	if err != nil {
		return nil, fmt.Errorf("directory: open %s: %w", path, err)
	}
	f.Close()
	if err := secureFiles(path); err != nil {
		return nil, err
	}
	dsn := "file:" + filepath.ToSlash(path) + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("directory: open %s: %w", path, err)
	}
	// One connection keeps PRAGMA data_version meaningful (it is per connection).
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("directory: create schema in %s: %w", path, err)
	}
	if err := migrate(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("directory: migrate %s: %w", path, err)
	}
	if err := secureFiles(path); err != nil {
		db.Close()
		return nil, err
	}
	d := &DB{sql: db}
	if err := d.Reload(); err != nil {
		db.Close()
		return nil, err
	}
	return d, nil
}

// DBFiles are the files of the database at path: the database, its
// write-ahead log and its shared-memory index.
func DBFiles(path string) []string { return []string{path, path + "-wal", path + "-shm"} }

// secureFiles sets mode 0600 on the database files that exist and are
// open to anyone else.
func secureFiles(path string) error {
	for _, p := range DBFiles(path) {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err == nil && fi.Mode().Perm()&^secretMode != 0 {
			err = os.Chmod(p, secretMode)
		}
		if err != nil {
			return fmt.Errorf("directory: mode of %s: %w", p, err)
		}
	}
	return nil
}

// Close closes the database.
func (d *DB) Close() error { return d.sql.Close() }

// Reload reads the tables into a fresh in-memory snapshot.
func (d *DB) Reload() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reloadLocked()
}

func (d *DB) reloadLocked() error {
	ctx := context.Background()
	s := &snapshot{users: map[string]string{}, quotas: map[string]int64{}, suspended: map[string]string{}, aliases: map[string]string{}, domains: map[string]bool{}}
	if err := d.sql.QueryRowContext(ctx, "PRAGMA data_version").Scan(&d.version); err != nil {
		return fmt.Errorf("directory: data_version: %w", err)
	}
	rows, err := d.sql.QueryContext(ctx, "SELECT address, password_hash, quota, suspended FROM users")
	if err != nil {
		return fmt.Errorf("directory: load users: %w", err)
	}
	for rows.Next() {
		var a, h string
		var q sql.NullInt64
		var sus sql.NullString
		if err := rows.Scan(&a, &h, &q, &sus); err != nil {
			rows.Close()
			return fmt.Errorf("directory: load users: %w", err)
		}
		s.users[a] = h
		if q.Valid {
			s.quotas[a] = q.Int64
		}
		if sus.Valid {
			s.suspended[a] = sus.String
		}
	}
	rows.Close()
	rows, err = d.sql.QueryContext(ctx, "SELECT alias, target FROM aliases")
	if err != nil {
		return fmt.Errorf("directory: load aliases: %w", err)
	}
	for rows.Next() {
		var a, t string
		if err := rows.Scan(&a, &t); err != nil {
			rows.Close()
			return fmt.Errorf("directory: load aliases: %w", err)
		}
		s.aliases[a] = t
	}
	rows.Close()
	rows, err = d.sql.QueryContext(ctx, "SELECT name FROM domains")
	if err != nil {
		return fmt.Errorf("directory: load domains: %w", err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return fmt.Errorf("directory: load domains: %w", err)
		}
		s.domains[n] = true
	}
	rows.Close()
	d.snap.Store(s)
	d.checkedAt.Store(time.Now().UnixNano())
	return nil
}

// current returns the snapshot, refreshing it when the database changed and
// the last check is older than a second.
func (d *DB) current() *snapshot {
	now := time.Now().UnixNano()
	if now-d.checkedAt.Load() > int64(time.Second) && d.mu.TryLock() {
		var v int64
		if err := d.sql.QueryRow("PRAGMA data_version").Scan(&v); err == nil && v != d.version {
			_ = d.reloadLocked() // on failure keep serving the old snapshot
		}
		d.checkedAt.Store(now)
		d.mu.Unlock()
	}
	return d.snap.Load()
}

// Normalize lower-cases an address (ASCII letters only: see
// address.LowerASCII) and checks that it is a plain
// local@domain with a conservative local part, safe as a path component.
func Normalize(address string) (string, error) {
	a := mailaddr.LowerASCII(strings.TrimSpace(address))
	local, domain, ok := strings.Cut(a, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") {
		return "", fmt.Errorf("directory: %q is not an address of the form user@domain", address)
	}
	if len(local) > 64 || local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return "", fmt.Errorf("directory: local part of %q is not allowed", address)
	}
	for _, c := range local {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.ContainsRune("._+-", c)) {
			return "", fmt.Errorf("directory: local part of %q may only use a-z 0-9 . _ + -", address)
		}
	}
	for _, label := range strings.Split(domain, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("directory: domain of %q is not a valid host name", address)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", fmt.Errorf("directory: domain of %q is not a valid host name", address)
			}
		}
	}
	return a, nil
}

// PasswordHash returns the stored hash of an account.
func (d *DB) PasswordHash(address string) (string, bool) {
	h, ok := d.current().users[mailaddr.LowerASCII(address)]
	return h, ok
}

// Resolve maps a recipient address to the account that receives its mail,
// following aliases (at most 8 steps, so an alias loop cannot hang us).
// The second result is false when no account or alias exists.
func (d *DB) Resolve(address string) (string, bool) {
	s := d.current()
	a := mailaddr.LowerASCII(address)
	for i := 0; i < maxAliasDepth; i++ {
		if _, ok := s.users[a]; ok {
			return a, true
		}
		t, ok := s.aliases[a]
		if !ok {
			return "", false
		}
		a = t
	}
	return "", false
}

// depth counts the alias steps from a to its account.
func (d *DB) depth(a string) int {
	s := d.current()
	n := 0
	for ; n < maxAliasDepth; n++ {
		if _, ok := s.users[a]; ok {
			return n
		}
		a = s.aliases[a]
	}
	return n
}

// MaySendAs reports whether the authenticated account may use address as
// its envelope sender: its own address or an alias that resolves to it.
func (d *DB) MaySendAs(account, address string) bool {
	a := mailaddr.LowerASCII(address)
	if a == mailaddr.LowerASCII(account) {
		return true
	}
	target, ok := d.Resolve(a)
	return ok && target == mailaddr.LowerASCII(account)
}

// Domains returns the domains recorded in the database.
func (d *DB) Domains() []string {
	s := d.current()
	out := make([]string, 0, len(s.domains))
	for n := range s.domains {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// AddDomain records a local domain.
func (d *DB) AddDomain(ctx context.Context, name string) error {
	name = mailaddr.LowerASCII(strings.TrimSuffix(name, "."))
	if _, err := Normalize("x@" + name); err != nil {
		return err
	}
	if _, err := d.sql.ExecContext(ctx, "INSERT INTO domains (name) VALUES (?) ON CONFLICT (name) DO NOTHING", name); err != nil {
		return fmt.Errorf("directory: add domain %s: %w", name, err)
	}
	return d.Reload()
}

// AddUser creates an account with an already hashed password.
func (d *DB) AddUser(ctx context.Context, address, hash string) error {
	a, err := Normalize(address)
	if err != nil {
		return err
	}
	if _, ok := d.Resolve(a); ok {
		return fmt.Errorf("directory: add user %s: %w", a, ErrExists)
	}
	_, err = d.sql.ExecContext(ctx, "INSERT INTO users (address, password_hash, created_at) VALUES (?, ?, ?)",
		a, hash, time.Now().UTC().Format(time.RFC3339))
	if err != nil {
		return fmt.Errorf("directory: add user %s: %w", a, err)
	}
	return d.Reload()
}

// SetPassword replaces an account's password hash.
func (d *DB) SetPassword(ctx context.Context, address, hash string) error {
	a := mailaddr.LowerASCII(address)
	res, err := d.sql.ExecContext(ctx, "UPDATE users SET password_hash = ? WHERE address = ?", hash, a)
	if err != nil {
		return fmt.Errorf("directory: set password of %s: %w", a, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("directory: set password of %s: %w", a, ErrNotFound)
	}
	return d.Reload()
}

// DeleteUser removes an account (its Maildir stays on disk).
func (d *DB) DeleteUser(ctx context.Context, address string) error {
	a := mailaddr.LowerASCII(address)
	res, err := d.sql.ExecContext(ctx, "DELETE FROM users WHERE address = ?", a)
	if err != nil {
		return fmt.Errorf("directory: delete user %s: %w", a, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("directory: delete user %s: %w", a, ErrNotFound)
	}
	return d.Reload()
}

// Users lists the accounts.
func (d *DB) Users() []string {
	s := d.current()
	out := make([]string, 0, len(s.users))
	for a := range s.users {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// AddAlias makes alias deliver to target (an account or another alias).
func (d *DB) AddAlias(ctx context.Context, alias, target string) error {
	a, err := Normalize(alias)
	if err != nil {
		return err
	}
	t, err := Normalize(target)
	if err != nil {
		return err
	}
	if _, ok := d.Resolve(a); ok {
		return fmt.Errorf("directory: add alias %s: %w", a, ErrExists)
	}
	if _, ok := d.Resolve(t); !ok {
		return fmt.Errorf("directory: alias target %s: %w", t, ErrNotFound)
	}
	if d.depth(t) >= maxAliasDepth-1 {
		return fmt.Errorf("directory: alias %s -> %s: %w (at most %d steps)", a, t, ErrTooDeep, maxAliasDepth-1)
	}
	if _, err := d.sql.ExecContext(ctx, "INSERT INTO aliases (alias, target) VALUES (?, ?)", a, t); err != nil {
		return fmt.Errorf("directory: add alias %s: %w", a, err)
	}
	return d.Reload()
}

// DeleteAlias removes an alias.
func (d *DB) DeleteAlias(ctx context.Context, alias string) error {
	a := mailaddr.LowerASCII(alias)
	res, err := d.sql.ExecContext(ctx, "DELETE FROM aliases WHERE alias = ?", a)
	if err != nil {
		return fmt.Errorf("directory: delete alias %s: %w", a, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("directory: delete alias %s: %w", a, ErrNotFound)
	}
	return d.Reload()
}

// Aliases lists alias -> target pairs.
func (d *DB) Aliases() [][2]string {
	s := d.current()
	out := make([][2]string, 0, len(s.aliases))
	for a, t := range s.aliases {
		out = append(out, [2]string{a, t})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// MailboxPath returns the Maildir root of an account under mailRoot.
// Normalize guarantees the parts contain no path separators.
func MailboxPath(mailRoot, account string) string {
	local, domain, _ := strings.Cut(mailaddr.LowerASCII(account), "@")
	return filepath.Join(mailRoot, domain, local)
}
