package directory_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kanmon/internal/directory"
)

func openDB(t *testing.T) (*directory.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kanmon.db")
	d, err := directory.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, path
}

var ctx = context.Background()

func mustAddUser(t *testing.T, d *directory.DB, addr, hash string) {
	t.Helper()
	if err := d.AddUser(ctx, addr, hash); err != nil {
		t.Fatalf("AddUser(%s): %v", addr, err)
	}
}

func TestUsers(t *testing.T) {
	t.Parallel()
	d, _ := openDB(t)
	if got := d.Users(); len(got) != 0 {
		t.Fatalf("new directory has users %v", got)
	}
	mustAddUser(t, d, "Bob@Example.ORG", "hash-b")
	mustAddUser(t, d, "alice@example.org", "hash-a")
	if got := strings.Join(d.Users(), ","); got != "alice@example.org,bob@example.org" {
		t.Errorf("Users() = %s, want alice and bob, lower-case and sorted", got)
	}
	if h, ok := d.PasswordHash("BOB@example.org"); !ok || h != "hash-b" {
		t.Errorf("PasswordHash(BOB@...) = %q, %v", h, ok)
	}
	if err := d.AddUser(ctx, "ALICE@example.org", "other"); !errors.Is(err, directory.ErrExists) {
		t.Errorf("adding alice twice: %v, want ErrExists", err)
	}
	if h, _ := d.PasswordHash("alice@example.org"); h != "hash-a" {
		t.Errorf("a refused duplicate changed the hash to %q", h)
	}

	if err := d.SetPassword(ctx, "Alice@Example.org", "hash-a2"); err != nil {
		t.Fatalf("SetPassword: %v", err)
	}
	if h, _ := d.PasswordHash("alice@example.org"); h != "hash-a2" {
		t.Errorf("after SetPassword the hash is %q", h)
	}
	if err := d.SetPassword(ctx, "nobody@example.org", "x"); !errors.Is(err, directory.ErrNotFound) {
		t.Errorf("SetPassword of an unknown account: %v, want ErrNotFound", err)
	}

	if err := d.DeleteUser(ctx, "BOB@example.org"); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	if _, ok := d.PasswordHash("bob@example.org"); ok {
		t.Error("bob still has a password after DeleteUser")
	}
	if _, ok := d.Resolve("bob@example.org"); ok {
		t.Error("bob still resolves after DeleteUser")
	}
	if err := d.DeleteUser(ctx, "bob@example.org"); !errors.Is(err, directory.ErrNotFound) {
		t.Errorf("deleting bob twice: %v, want ErrNotFound", err)
	}
	if got := strings.Join(d.Users(), ","); got != "alice@example.org" {
		t.Errorf("Users() = %s", got)
	}
}

func TestAddUserRefusesBadAddresses(t *testing.T) {
	t.Parallel()
	d, _ := openDB(t)
	for _, a := range []string{"../x@example.org", "a/b@example.org", "x@../etc", "no-at-sign", "a b@example.org"} {
		if err := d.AddUser(ctx, a, "h"); err == nil {
			t.Errorf("AddUser(%q) succeeded", a)
		}
	}
	if got := d.Users(); len(got) != 0 {
		t.Errorf("users after refused adds: %v", got)
	}
}

// TestUsersPersist: accounts survive closing and reopening the database.
func TestUsersPersist(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "kanmon.db")
	d, err := directory.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	mustAddUser(t, d, "alice@example.org", "h")
	if err := d.AddAlias(ctx, "postmaster@example.org", "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := d.AddDomain(ctx, "Example.ORG."); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d2, err := directory.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if acct, ok := d2.Resolve("postmaster@example.org"); !ok || acct != "alice@example.org" {
		t.Errorf("after reopen Resolve(postmaster) = %q, %v", acct, ok)
	}
	if got := strings.Join(d2.Domains(), ","); got != "example.org" {
		t.Errorf("after reopen Domains() = %q, want example.org (lower-case, no trailing dot)", got)
	}
}

func TestDomains(t *testing.T) {
	t.Parallel()
	d, _ := openDB(t)
	for _, n := range []string{"example.org", "example.net", "example.org"} {
		if err := d.AddDomain(ctx, n); err != nil {
			t.Fatalf("AddDomain(%s): %v", n, err)
		}
	}
	if got := strings.Join(d.Domains(), ","); got != "example.net,example.org" {
		t.Errorf("Domains() = %s", got)
	}
	for _, bad := range []string{"", "exa mple.org", "../etc", "a/b"} {
		if err := d.AddDomain(ctx, bad); err == nil {
			t.Errorf("AddDomain(%q) succeeded", bad)
		}
	}
}

func TestAliases(t *testing.T) {
	t.Parallel()
	d, _ := openDB(t)
	mustAddUser(t, d, "alice@example.org", "h")
	mustAddUser(t, d, "bob@example.org", "h")
	if err := d.AddAlias(ctx, "Postmaster@Example.org", "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	// A chain: abuse -> postmaster -> alice.
	if err := d.AddAlias(ctx, "abuse@example.org", "postmaster@example.org"); err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]string{
		"alice@example.org":      "alice@example.org",
		"ALICE@example.org":      "alice@example.org",
		"postmaster@example.org": "alice@example.org",
		"abuse@EXAMPLE.org":      "alice@example.org",
		"bob@example.org":        "bob@example.org",
	} {
		if got, ok := d.Resolve(addr); !ok || got != want {
			t.Errorf("Resolve(%s) = %q, %v; want %q", addr, got, ok, want)
		}
	}
	if got, ok := d.Resolve("nobody@example.org"); ok {
		t.Errorf("Resolve(nobody) = %q, true", got)
	}

	// Refusals.
	if err := d.AddAlias(ctx, "sales@example.org", "nobody@example.org"); !errors.Is(err, directory.ErrNotFound) {
		t.Errorf("alias to a missing target: %v, want ErrNotFound", err)
	}
	if err := d.AddAlias(ctx, "postmaster@example.org", "bob@example.org"); !errors.Is(err, directory.ErrExists) {
		t.Errorf("alias that exists: %v, want ErrExists", err)
	}
	if err := d.AddAlias(ctx, "bob@example.org", "alice@example.org"); !errors.Is(err, directory.ErrExists) {
		t.Errorf("alias over an account: %v, want ErrExists", err)
	}
	if err := d.AddUser(ctx, "postmaster@example.org", "h"); !errors.Is(err, directory.ErrExists) {
		t.Errorf("account over an alias: %v, want ErrExists", err)
	}
	for _, bad := range [][2]string{{"../x@example.org", "alice@example.org"}, {"x@example.org", "../alice@example.org"}} {
		if err := d.AddAlias(ctx, bad[0], bad[1]); err == nil {
			t.Errorf("AddAlias(%q, %q) succeeded", bad[0], bad[1])
		}
	}
	if _, ok := d.Resolve("sales@example.org"); ok {
		t.Error("a refused alias resolves")
	}

	want := [][2]string{{"abuse@example.org", "postmaster@example.org"}, {"postmaster@example.org", "alice@example.org"}}
	got := d.Aliases()
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("Aliases() = %v, want %v", got, want)
	}

	if err := d.DeleteAlias(ctx, "ABUSE@example.org"); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Resolve("abuse@example.org"); ok {
		t.Error("abuse resolves after DeleteAlias")
	}
	if err := d.DeleteAlias(ctx, "abuse@example.org"); !errors.Is(err, directory.ErrNotFound) {
		t.Errorf("deleting an alias twice: %v, want ErrNotFound", err)
	}

	// An alias whose account was deleted resolves to nothing.
	if err := d.DeleteUser(ctx, "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	if got, ok := d.Resolve("postmaster@example.org"); ok {
		t.Errorf("alias of a deleted account resolves to %q", got)
	}
}

// TestAliasLoopBounded: an alias loop (which the API refuses to build,
// but which a hand-edited database can hold) ends with "no such
// recipient" at once instead of hanging.
func TestAliasLoopBounded(t *testing.T) {
	t.Parallel()
	d, path := openDB(t)
	raw, err := sql.Open("sqlite", "file:"+filepath.ToSlash(path)+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`INSERT INTO aliases (alias, target) VALUES
		('loop1@example.org', 'loop2@example.org'), ('loop2@example.org', 'loop1@example.org'),
		('self@example.org', 'self@example.org')`); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, a := range []string{"loop1@example.org", "loop2@example.org", "self@example.org"} {
			if got, ok := d.Resolve(a); ok {
				t.Errorf("Resolve(%s) in a loop = %q, true", a, got)
			}
			if d.MaySendAs("loop1@example.org", a) && a != "loop1@example.org" {
				t.Errorf("MaySendAs through a loop allowed %s", a)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Resolve on an alias loop did not return within 5s")
	}
	// A new alias into the loop is refused: its target resolves to nothing.
	if err := d.AddAlias(ctx, "x@example.org", "loop1@example.org"); !errors.Is(err, directory.ErrNotFound) {
		t.Errorf("alias into a loop: %v, want ErrNotFound", err)
	}
}

// TestAliasChainBounded: a long chain is cut off after a bounded number
// of steps; adding to a chain that no longer resolves is refused.
func TestAliasChainBounded(t *testing.T) {
	t.Parallel()
	d, _ := openDB(t)
	mustAddUser(t, d, "end@example.org", "h")
	prev := "end@example.org"
	refused := -1
	for i := 1; i <= 20; i++ {
		a := "hop" + strings.Repeat("x", i) + "@example.org"
		if err := d.AddAlias(ctx, a, prev); err != nil {
			if !errors.Is(err, directory.ErrNotFound) && !errors.Is(err, directory.ErrTooDeep) {
				t.Fatalf("hop %d: %v", i, err)
			}
			refused = i
			break
		}
		if got, ok := d.Resolve(a); !ok || got != "end@example.org" {
			// Accepted but does not resolve: mail to it would be refused
			// as "no such user" although `kanmon alias add` said ok.
			t.Fatalf("AddAlias(%s -> %s) succeeded, but Resolve(%s) = %q, %v: the alias was accepted past the depth Resolve follows",
				a, prev, a, got, ok)
		}
		prev = a
	}
	if refused < 0 {
		t.Fatal("a chain of 20 aliases was accepted: Resolve follows chains without a bound")
	}
	if refused < 3 {
		t.Errorf("chain refused already at hop %d: short chains must work", refused)
	}
}

func TestMaySendAs(t *testing.T) {
	t.Parallel()
	d, _ := openDB(t)
	mustAddUser(t, d, "alice@example.org", "h")
	mustAddUser(t, d, "bob@example.org", "h")
	for _, a := range [][2]string{
		{"postmaster@example.org", "alice@example.org"},
		{"abuse@example.org", "postmaster@example.org"},
		{"sales@example.org", "bob@example.org"},
	} {
		if err := d.AddAlias(ctx, a[0], a[1]); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		account, from string
		want          bool
	}{
		{"alice@example.org", "alice@example.org", true},
		{"alice@example.org", "Alice@EXAMPLE.org", true},
		{"Alice@Example.org", "alice@example.org", true},
		{"alice@example.org", "postmaster@example.org", true},
		{"alice@example.org", "abuse@example.org", true},
		{"alice@example.org", "bob@example.org", false},
		{"alice@example.org", "sales@example.org", false},
		{"alice@example.org", "nobody@example.org", false},
		{"alice@example.org", "alice@example.net", false},
		{"alice@example.org", "", false},
		{"bob@example.org", "postmaster@example.org", false},
		{"bob@example.org", "sales@example.org", true},
	} {
		if got := d.MaySendAs(tc.account, tc.from); got != tc.want {
			t.Errorf("MaySendAs(%s, %q) = %v, want %v", tc.account, tc.from, got, tc.want)
		}
	}
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	good := map[string]string{
		"alice@example.org":                      "alice@example.org",
		"Alice@Example.ORG":                      "alice@example.org",
		"  bob@example.org\t":                    "bob@example.org",
		"first.last+tag@mail.example.org":        "first.last+tag@mail.example.org",
		"a_b-c@ex-ample.org":                     "a_b-c@ex-ample.org",
		"1@2.example":                            "1@2.example",
		strings.Repeat("a", 64) + "@example.org": strings.Repeat("a", 64) + "@example.org",
	}
	for in, want := range good {
		got, err := directory.Normalize(in)
		if err != nil || got != want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := []string{
		"", "alice", "@example.org", "alice@", "@",
		"a@b@example.org",
		// Path traversal and separators: the local part and the domain
		// become directory names under the mail root.
		"../x@example.org", "..@example.org", ".@example.org", "x@..", "x@.", "x@../etc",
		"a/b@example.org", "/etc/passwd@example.org", `a\b@example.org`, "x@example.org/..", "x@exa/mple.org",
		"x@example.org/../../etc", "..%2f@example.org",
		".alice@example.org", "alice.@example.org", "a..b@example.org",
		"a b@example.org", "a\tb@example.org", "a\x00b@example.org", "a\nb@example.org",
		`"alice"@example.org`, "a%b@example.org", "a!b@example.org", "a:b@example.org", "a*b@example.org",
		"ü@example.org", "alice@exämple.org",
		strings.Repeat("a", 65) + "@example.org",
		"alice@-example.org", "alice@example-.org", "alice@example..org", "alice@.example.org", "alice@example.org.",
		"alice@exa_mple.org", "alice@[127.0.0.1]", "alice@" + strings.Repeat("a", 64) + ".org",
	}
	for _, in := range bad {
		if got, err := directory.Normalize(in); err == nil {
			t.Errorf("Normalize(%q) = %q, nil; want an error", in, got)
		}
	}
}

// TestMailboxPath: a normalized account maps to mailRoot/domain/local and
// never leaves mailRoot.
func TestMailboxPath(t *testing.T) {
	t.Parallel()
	root := filepath.Join(t.TempDir(), "mail")
	if got, want := directory.MailboxPath(root, "Alice@Example.ORG"), filepath.Join(root, "example.org", "alice"); got != want {
		t.Errorf("MailboxPath = %q, want %q", got, want)
	}
	for _, a := range []string{"alice@example.org", "first.last+tag@mail.example.org", "a_b-c@x.y", "a.b.c@d.e"} {
		n, err := directory.Normalize(a)
		if err != nil {
			t.Fatal(err)
		}
		p := directory.MailboxPath(root, n)
		rel, err := filepath.Rel(root, p)
		if err != nil || strings.HasPrefix(rel, "..") || strings.Count(rel, string(filepath.Separator)) != 1 {
			t.Errorf("MailboxPath(%q) = %q: not exactly two levels under %q", n, p, root)
		}
	}
}

// TestRefreshAcrossHandles: `kanmon user add` in another process (here a
// second handle on the same file) reaches a running server within about
// two seconds, without Reload.
func TestRefreshAcrossHandles(t *testing.T) {
	t.Parallel()
	server, path := openDB(t)
	if _, ok := server.PasswordHash("carol@example.org"); ok {
		t.Fatal("carol exists before being added")
	}
	admin, err := directory.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	mustAddUser(t, admin, "carol@example.org", "hash-c")
	if err := admin.AddAlias(ctx, "info@example.org", "carol@example.org"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, 3*time.Second, "the server handle to see carol", func() bool {
		h, ok := server.PasswordHash("carol@example.org")
		return ok && h == "hash-c"
	})
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Errorf("the new account took %v to appear, want about 2s at most", d)
	}
	if got, ok := server.Resolve("info@example.org"); !ok || got != "carol@example.org" {
		t.Errorf("alias added by the other handle: Resolve = %q, %v", got, ok)
	}

	// A password change and a deletion travel the same way.
	if err := admin.SetPassword(ctx, "carol@example.org", "hash-c2"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "the password change", func() bool {
		h, _ := server.PasswordHash("carol@example.org")
		return h == "hash-c2"
	})
	if err := admin.DeleteUser(ctx, "carol@example.org"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "the deletion", func() bool {
		_, ok := server.PasswordHash("carol@example.org")
		return !ok
	})
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOpenFileModes: the database and its -wal and -shm files hold
// password hashes: 0600 whatever the umask, and an older database left
// 0644 is tightened on open.
func TestOpenFileModes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "kanmon.db")
	check := func(when string) {
		t.Helper()
		seen := 0
		for _, p := range directory.DBFiles(path) {
			fi, err := os.Stat(p)
			if err != nil {
				continue
			}
			seen++
			if m := fi.Mode().Perm(); m != 0o600 {
				t.Errorf("%s: %s has mode %o, want 600", when, filepath.Base(p), m)
			}
		}
		if seen < 2 {
			t.Errorf("%s: only %d database files exist: the write-ahead log files were not checked", when, seen)
		}
	}
	d, err := directory.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.AddDomain(context.Background(), "example.org"); err != nil {
		t.Fatal(err)
	}
	check("new database")
	d.Close()
	for _, p := range directory.DBFiles(path) {
		os.Chmod(p, 0o644)
	}
	d, err = directory.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.AddDomain(context.Background(), "example.net"); err != nil {
		t.Fatal(err)
	}
	check("database reopened after chmod 644")
}

// Unicode case folding must not reach an ASCII account: "alİce" (U+0130)
// is not alice and U+212A KELVIN SIGN is not k. Only ASCII letters fold.
func TestLookupFoldsASCIIOnly(t *testing.T) {
	t.Parallel()
	d, _ := openDB(t)
	mustAddUser(t, d, "alice@example.org", "hash-a")
	mustAddUser(t, d, "k@example.org", "hash-k")
	for _, a := range []string{"al\u0130ce@example.org", "\u212A@example.org"} {
		if acct, ok := d.Resolve(a); ok {
			t.Errorf("Resolve(%q) reached %s", a, acct)
		}
		if _, ok := d.PasswordHash(a); ok {
			t.Errorf("PasswordHash(%q) found an account", a)
		}
		if d.MaySendAs("alice@example.org", a) || d.MaySendAs("k@example.org", a) {
			t.Errorf("MaySendAs(..., %q) = true", a)
		}
		if _, err := directory.Normalize(a); err == nil {
			t.Errorf("Normalize(%q) accepted a non-ASCII local part", a)
		}
	}
	if acct, ok := d.Resolve("ALICE@Example.org"); !ok || acct != "alice@example.org" {
		t.Errorf("ASCII case is still folded: Resolve(ALICE@...) = %q, %v", acct, ok)
	}
}

// Per-account quotas, and the migration that adds them to a database made
// before they existed.
func TestQuotaAndMigration(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "old.db")
	old, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Exec(`CREATE TABLE users (address TEXT PRIMARY KEY, password_hash TEXT NOT NULL, created_at TEXT NOT NULL);
		INSERT INTO users VALUES ('alice@example.org', 'h', '2024-01-01T00:00:00Z');`); err != nil {
		t.Fatal(err)
	}
	old.Close()
	d, err := directory.Open(path)
	if err != nil {
		t.Fatalf("opening a database without users.quota: %v", err)
	}
	defer d.Close()
	if q, ok := d.Quota("alice@example.org"); ok {
		t.Fatalf("migrated account has quota %d, want the default", q)
	}
	if err := d.SetQuota(ctx, "ALICE@example.org", 5000); err != nil {
		t.Fatal(err)
	}
	if q, ok := d.Quota("alice@example.org"); !ok || q != 5000 {
		t.Fatalf("Quota = %d, %v after SetQuota 5000", q, ok)
	}
	m := directory.NewMailboxes(d, t.TempDir(), 1<<30)
	if q := m.Quota("alice@example.org"); q != 5000 {
		t.Fatalf("Mailboxes.Quota = %d, want the account's 5000", q)
	}
	if err := d.SetQuota(ctx, "alice@example.org", -1); err != nil {
		t.Fatal(err)
	}
	if q := m.Quota("alice@example.org"); q != 1<<30 {
		t.Fatalf("after clearing, Mailboxes.Quota = %d, want the default", q)
	}
	if err := d.SetQuota(ctx, "nobody@example.org", 1); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("SetQuota of a missing account: %v", err)
	}
	if u, err := m.Usage("alice@example.org"); err != nil || u != 0 {
		t.Fatalf("usage of a Maildir not yet made: %d, %v", u, err)
	}
}
