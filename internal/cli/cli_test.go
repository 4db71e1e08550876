package cli_test

// The command line run in-process, as an operator types it: init,
// check-config, user and alias management, and the exit statuses
// (0 success, 1 failure, 2 usage).

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"kanmon/internal/auth"
	"kanmon/internal/cli"
	"kanmon/internal/config"
	"kanmon/internal/directory"
)

type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return "exit " + strconv.Itoa(r.code) + "\nstdout: " + r.stdout + "\nstderr: " + r.stderr
}

func run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Main(args, cli.Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb})
	return result{code, out.String(), errb.String()}
}

func mustRun(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	r := run(t, stdin, args...)
	if r.code != 0 {
		t.Fatalf("kanmon %s: %s", strings.Join(args, " "), r)
	}
	return r
}

const (
	domain   = "example.org"
	hostname = "mx.example.org"
	password = "Correct-Horse-42"
)

// initDir runs kanmon init in a fresh directory and returns the config path.
func initDir(t *testing.T, extra ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "conf")
	args := append([]string{"init", "--dir", dir, "--domain", domain, "--hostname", hostname}, extra...)
	r := mustRun(t, "", args...)
	path := filepath.Join(dir, "kanmon.toml")
	if !strings.Contains(r.stdout, "wrote "+path) {
		t.Errorf("init said %q, want it to name %s", r.stdout, path)
	}
	return path
}

// dirView reads the account database the commands wrote, with a fresh
// handle for every question (as a newly started server would).
type dirView struct {
	t   *testing.T
	cfg string
}

func openDirectory(t *testing.T, cfgPath string) dirView { return dirView{t, cfgPath} }

func (v dirView) with(f func(d *directory.DB)) {
	v.t.Helper()
	c, err := config.Load(v.cfg)
	if err != nil {
		v.t.Fatal(err)
	}
	d, err := directory.Open(c.DBPath())
	if err != nil {
		v.t.Fatal(err)
	}
	defer d.Close()
	f(d)
}

func (v dirView) PasswordHash(a string) (h string, ok bool) {
	v.t.Helper()
	v.with(func(d *directory.DB) { h, ok = d.PasswordHash(a) })
	return
}

func (v dirView) Resolve(a string) (acct string, ok bool) {
	v.t.Helper()
	v.with(func(d *directory.DB) { acct, ok = d.Resolve(a) })
	return
}

func (v dirView) Domains() (out []string) {
	v.t.Helper()
	v.with(func(d *directory.DB) { out = d.Domains() })
	return
}

func (v dirView) Aliases() (out [][2]string) {
	v.t.Helper()
	v.with(func(d *directory.DB) { out = d.Aliases() })
	return
}

func TestInitWritesAValidConfig(t *testing.T) {
	t.Parallel()
	path := initDir(t)
	dir := filepath.Dir(path)
	r := mustRun(t, "", "check-config", "--config", path)
	if !strings.Contains(r.stdout, "OK") || !strings.Contains(r.stdout, domain) {
		t.Errorf("check-config: %q", r.stdout)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Hostname != hostname || len(c.Domains) != 1 || c.Domains[0] != domain {
		t.Errorf("config hostname %q domains %v", c.Hostname, c.Domains)
	}
	// Nothing runs that was not asked for: no POP3 unless given; the safe
	// defaults otherwise.
	if c.Listeners.POP3 != "" || c.Listeners.POP3S != "" {
		t.Errorf("init without --pop3-addr configured POP3 listeners %q %q", c.Listeners.POP3, c.Listeners.POP3S)
	}
	if len(c.TrustedNetworks) != 0 || c.POP3.AllowPlaintextAuth || c.POP3.PopBeforeSMTP.Duration != 0 {
		t.Errorf("init config is not the safe default: trusted %v, pop3 %+v", c.TrustedNetworks, c.POP3)
	}
	if c.DataDir != filepath.Join(dir, "data") || c.TLS.Cert != filepath.Join(dir, "cert.pem") {
		t.Errorf("data_dir %q cert %q: want under %s", c.DataDir, c.TLS.Cert, dir)
	}
	// A self-signed certificate and a private key only the owner can read.
	fi, err := os.Stat(c.TLS.Key)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("key file mode %v: readable by others", fi.Mode().Perm())
	}
	if _, err := os.Stat(c.TLS.Cert); err != nil {
		t.Error(err)
	}
	// The domain is recorded in the database too.
	if got := openDirectory(t, path).Domains(); len(got) != 1 || got[0] != domain {
		t.Errorf("database domains %v", got)
	}
	if !strings.Contains(r.stdout, path) {
		t.Errorf("check-config output %q does not name the file", r.stdout)
	}
}

func TestInitRefusesToOverwrite(t *testing.T) {
	t.Parallel()
	path := initDir(t)
	dir := filepath.Dir(path)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := run(t, "", "init", "--dir", dir, "--domain", "other.example", "--hostname", "mail.other.example")
	if r.code != 1 || !strings.Contains(r.stderr, "exists") || !strings.Contains(r.stderr, "--force") {
		t.Fatalf("second init: %s; want exit 1 saying the file exists and --force", r)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("a refused init changed kanmon.toml")
	}
	mustRun(t, "", "init", "--dir", dir, "--domain", "other.example", "--hostname", "mail.other.example", "--force")
	c, err := config.Load(path)
	if err != nil {
		t.Fatalf("config after init --force: %v", err)
	}
	if c.Hostname != "mail.other.example" || c.Domains[0] != "other.example" {
		t.Errorf("after --force: hostname %q domains %v", c.Hostname, c.Domains)
	}
	mustRun(t, "", "check-config", "--config", path)
}

func TestInitListenerFlags(t *testing.T) {
	t.Parallel()
	path := initDir(t, "--mx-addr", "127.0.0.1:2525", "--submission-addr", "127.0.0.1:2587", "--smtps-addr", "",
		"--pop3-addr", "127.0.0.1:2110", "--pop3s-addr", "127.0.0.1:2995", "--admin-addr", "")
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	l := c.Listeners
	if l.MX != "127.0.0.1:2525" || l.Submission != "127.0.0.1:2587" || l.SMTPS != "" || l.POP3 != "127.0.0.1:2110" ||
		l.POP3S != "127.0.0.1:2995" || l.Admin != "" {
		t.Errorf("listeners %+v", l)
	}
}

func TestInitWithOwnCertificate(t *testing.T) {
	t.Parallel()
	certDir := t.TempDir()
	own := initDir(t) // borrow a generated pair
	c, _ := config.Load(own)
	cert, key := filepath.Join(certDir, "c.pem"), filepath.Join(certDir, "k.pem")
	for src, dst := range map[string]string{c.TLS.Cert: cert, c.TLS.Key: key} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := initDir(t, "--cert", cert, "--key", key)
	c2, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c2.TLS.Cert != cert || c2.TLS.Key != key {
		t.Errorf("tls %q %q, want the given files", c2.TLS.Cert, c2.TLS.Key)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(path), "cert.pem")); err == nil {
		t.Error("init generated a certificate although one was given")
	}
}

// TestInitNeverWritesABrokenConfig: a value that does not validate stops
// init before kanmon.toml is written.
func TestInitNeverWritesABrokenConfig(t *testing.T) {
	t.Parallel()
	for name, args := range map[string][]string{
		"bad domain":   {"--domain", "exa mple.org", "--hostname", hostname},
		"bad hostname": {"--domain", domain, "--hostname", "mx_example"},
		"bad address":  {"--domain", domain, "--hostname", hostname, "--mx-addr", "127.0.0.1"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "conf")
			r := run(t, "", append([]string{"init", "--dir", dir}, args...)...)
			if r.code == 0 {
				t.Fatalf("init accepted %v", args)
			}
			if _, err := os.Stat(filepath.Join(dir, "kanmon.toml")); err == nil {
				t.Errorf("init %v wrote kanmon.toml although it failed", args)
			}
		})
	}
}

var generatedRE = regexp.MustCompile(`password (\S+) \(shown once\)`)

func TestUserCommands(t *testing.T) {
	t.Parallel()
	path := initDir(t)
	d := openDirectory(t, path)

	r := mustRun(t, password+"\n", "user", "add", "Alice@Example.org", "--config", path, "--password-stdin")
	if strings.Contains(r.stdout+r.stderr, password) {
		t.Errorf("user add echoed the password: %s", r)
	}
	if !strings.Contains(r.stdout, "alice@example.org") {
		t.Errorf("user add said %q", r.stdout)
	}
	h, ok := d.PasswordHash("alice@example.org")
	if !ok || !auth.CheckPassword(h, password) || !strings.HasPrefix(h, "$argon2id$") {
		t.Fatalf("stored hash %q (found %v) does not verify the password", h, ok)
	}

	// Flags may come before the address; a password without a newline works.
	mustRun(t, "Bob-Password-7", "user", "add", "--config", path, "--password-stdin", "bob@example.org")
	if h, _ := d.PasswordHash("bob@example.org"); !auth.CheckPassword(h, "Bob-Password-7") {
		t.Error("bob's password (no trailing newline) does not verify")
	}

	// Without --password-stdin a password is generated and shown once.
	r = mustRun(t, "", "user", "add", "carol@example.org", "--config", path)
	m := generatedRE.FindStringSubmatch(r.stdout)
	if m == nil || len(m[1]) < 12 {
		t.Fatalf("generated password not shown: %q", r.stdout)
	}
	if h, _ := d.PasswordHash("carol@example.org"); !auth.CheckPassword(h, m[1]) {
		t.Error("the generated password shown does not verify")
	}

	r = run(t, "Another-Pass-1\n", "user", "add", "alice@example.org", "--config", path, "--password-stdin")
	if r.code != 1 || !strings.Contains(r.stderr, "exists") {
		t.Errorf("duplicate user add: %s; want exit 1 saying it exists", r)
	}
	if h, _ := d.PasswordHash("alice@example.org"); !auth.CheckPassword(h, password) {
		t.Error("a refused duplicate add changed alice's password")
	}

	r = run(t, "short\n", "user", "add", "dave@example.org", "--config", path, "--password-stdin")
	if r.code != 1 || !strings.Contains(r.stderr, "at least 8") {
		t.Errorf("short password: %s", r)
	}
	r = run(t, "", "user", "add", "erin@example.org", "--config", path, "--password-stdin")
	if r.code != 1 {
		t.Errorf("empty stdin: %s", r)
	}

	r = run(t, password+"\n", "user", "add", "mallory@elsewhere.example", "--config", path, "--password-stdin")
	if r.code != 1 || !strings.Contains(r.stderr, "not in this server's domains") {
		t.Errorf("user in a foreign domain: %s; want exit 1 naming the domain problem", r)
	}
	for _, bad := range []string{"../x@example.org", "a/b@example.org", "noat"} {
		if r := run(t, password+"\n", "user", "add", bad, "--config", path, "--password-stdin"); r.code != 1 {
			t.Errorf("user add %q: %s; want exit 1", bad, r)
		}
	}

	r = mustRun(t, "", "user", "list", "--config", path)
	if r.stdout != "alice@example.org\nbob@example.org\ncarol@example.org\n" {
		t.Errorf("user list = %q", r.stdout)
	}

	mustRun(t, "New-Password-99\n", "user", "passwd", "alice@example.org", "--config", path, "--password-stdin")
	h, _ = d.PasswordHash("alice@example.org")
	if !auth.CheckPassword(h, "New-Password-99") || auth.CheckPassword(h, password) {
		t.Error("after user passwd the new password must verify and the old one not")
	}
	if r := run(t, "New-Password-99\n", "user", "passwd", "nobody@example.org", "--config", path, "--password-stdin"); r.code != 1 ||
		!strings.Contains(r.stderr, "not found") {
		t.Errorf("passwd of an unknown user: %s", r)
	}

	r = mustRun(t, "", "user", "del", "BOB@example.org", "--config", path)
	if !strings.Contains(r.stdout, "bob@example.org") {
		t.Errorf("user del said %q", r.stdout)
	}
	if _, ok := d.PasswordHash("bob@example.org"); ok {
		t.Error("bob still exists after user del")
	}
	if r := run(t, "", "user", "del", "bob@example.org", "--config", path); r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("deleting bob twice: %s", r)
	}
	if r := mustRun(t, "", "user", "list", "--config", path); r.stdout != "alice@example.org\ncarol@example.org\n" {
		t.Errorf("user list after del = %q", r.stdout)
	}
}

func TestAliasCommands(t *testing.T) {
	t.Parallel()
	path := initDir(t)
	mustRun(t, password+"\n", "user", "add", "alice@example.org", "--config", path, "--password-stdin")
	d := openDirectory(t, path)

	r := mustRun(t, "", "alias", "add", "Postmaster@example.org", "alice@example.org", "--config", path)
	if !strings.Contains(r.stdout, "postmaster@example.org -> alice@example.org") {
		t.Errorf("alias add said %q", r.stdout)
	}
	if acct, ok := d.Resolve("postmaster@example.org"); !ok || acct != "alice@example.org" {
		t.Errorf("postmaster resolves to %q, %v", acct, ok)
	}
	mustRun(t, "", "alias", "add", "--config", path, "abuse@example.org", "postmaster@example.org")
	if r := mustRun(t, "", "alias", "list", "--config", path); r.stdout != "abuse@example.org -> postmaster@example.org\npostmaster@example.org -> alice@example.org\n" {
		t.Errorf("alias list = %q", r.stdout)
	}

	for name, args := range map[string][]string{
		"missing target":   {"sales@example.org", "nobody@example.org"},
		"existing alias":   {"postmaster@example.org", "alice@example.org"},
		"alias over user":  {"alice@example.org", "postmaster@example.org"},
		"foreign domain":   {"alias@elsewhere.example", "alice@example.org"},
		"path in the name": {"../x@example.org", "alice@example.org"},
	} {
		r := run(t, "", append([]string{"alias", "add"}, append(args, "--config", path)...)...)
		if r.code != 1 {
			t.Errorf("alias add (%s) %v: %s; want exit 1", name, args, r)
		}
	}
	if got := len(d.Aliases()); got != 2 {
		t.Errorf("%d aliases after refused adds, want 2", got)
	}

	mustRun(t, "", "alias", "del", "abuse@example.org", "--config", path)
	if _, ok := d.Resolve("abuse@example.org"); ok {
		t.Error("abuse still resolves after alias del")
	}
	if r := run(t, "", "alias", "del", "abuse@example.org", "--config", path); r.code != 1 {
		t.Errorf("alias del twice: %s", r)
	}
	if r := mustRun(t, "", "alias", "list", "--config", path); r.stdout != "postmaster@example.org -> alice@example.org\n" {
		t.Errorf("alias list after del = %q", r.stdout)
	}
}

// TestUsageErrors: a command used wrongly exits 2 with a message on
// stderr and changes nothing.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	path := initDir(t)
	for name, args := range map[string][]string{
		"no command":                     {},
		"unknown command":                {"frobnicate"},
		"init without flags":             {"init"},
		"init without hostname":          {"init", "--dir", t.TempDir(), "--domain", domain},
		"init cert without key":          {"init", "--dir", t.TempDir(), "--domain", domain, "--hostname", hostname, "--cert", "c.pem"},
		"init unknown flag":              {"init", "--dir", t.TempDir(), "--domain", domain, "--hostname", hostname, "--bogus"},
		"check-config without --config":  {"check-config"},
		"check-config unknown flag":      {"check-config", "--config", path, "--verbose"},
		"user without subcommand":        {"user"},
		"user unknown subcommand":        {"user", "rename", "--config", path},
		"user add without --config":      {"user", "add", "x@example.org"},
		"user add without address":       {"user", "add", "--config", path},
		"user add two addresses":         {"user", "add", "x@example.org", "y@example.org", "--config", path},
		"user del without address":       {"user", "del", "--config", path},
		"user list unknown flag":         {"user", "list", "--config", path, "--all"},
		"alias without subcommand":       {"alias"},
		"alias add one argument":         {"alias", "add", "x@example.org", "--config", path},
		"alias del without alias":        {"alias", "del", "--config", path},
		"alias unknown subcommand":       {"alias", "show", "--config", path},
		"user passwd without --config":   {"user", "passwd", "x@example.org"},
		"user add flag without argument": {"user", "add", "x@example.org", "--config"},
	} {
		t.Run(name, func(t *testing.T) {
			r := run(t, "", args...)
			if r.code != 2 {
				t.Errorf("kanmon %v: %s; want exit 2", args, r)
			}
			if r.stderr == "" {
				t.Errorf("kanmon %v: nothing on stderr", args)
			}
		})
	}
	if r := mustRun(t, "", "user", "list", "--config", path); r.stdout != "" {
		t.Errorf("usage errors created users: %q", r.stdout)
	}
	if r := mustRun(t, "", "help"); !strings.Contains(r.stdout, "usage:") {
		t.Errorf("help: %q", r.stdout)
	}
}

// TestCheckConfigReportsErrors: check-config names the file, line and key
// of every problem and exits 1.
func TestCheckConfigReportsErrors(t *testing.T) {
	t.Parallel()
	path := initDir(t)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	var recLine, lvlLine int
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "max_recipients"):
			lines[i], recLine = "max_recipients = 0", i+1
		case strings.HasPrefix(l, "log_level"):
			lines[i], lvlLine = `log_level = "chatty"`, i+1
		}
	}
	if recLine == 0 || lvlLine == 0 {
		t.Fatal("template lacks max_recipients or log_level")
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o640); err != nil {
		t.Fatal(err)
	}
	r := run(t, "", "check-config", "--config", path)
	if r.code != 1 {
		t.Fatalf("check-config of a broken file: %s; want exit 1", r)
	}
	for _, want := range []string{
		path + ":" + strconv.Itoa(recLine) + ": limits.max_recipients:",
		path + ":" + strconv.Itoa(lvlLine) + ": log_level:",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("check-config output lacks %q:\n%s", want, r.stderr)
		}
	}
	if r := run(t, "", "check-config", "--config", filepath.Join(t.TempDir(), "missing.toml")); r.code != 1 {
		t.Errorf("check-config of a missing file: %s; want exit 1", r)
	}
	// Commands that need the config refuse a broken one.
	if r := run(t, password+"\n", "user", "add", "x@example.org", "--config", path, "--password-stdin"); r.code != 1 {
		t.Errorf("user add with a broken config: %s; want exit 1", r)
	}
}

func TestUserQuota(t *testing.T) {
	t.Parallel()
	path := initDir(t)
	mustRun(t, password+"\n", "user", "add", "alice@example.org", "--config", path, "--password-stdin")
	mustRun(t, password+"\n", "user", "add", "bob@example.org", "--config", path, "--password-stdin", "--quota", "10MiB")
	mustRun(t, "", "alias", "add", "info@example.org", "alice@example.org", "--config", path)

	r := mustRun(t, "", "user", "quota", "alice@example.org", "--config", path)
	if !strings.Contains(r.stdout, "quota 1073741824 octets (limits.mailbox_quota), used 0 octets") {
		t.Errorf("default quota: %s", r)
	}
	r = mustRun(t, "", "user", "quota", "bob@example.org", "--config", path)
	if !strings.Contains(r.stdout, "quota 10485760 octets (its own)") {
		t.Errorf("user add --quota: %s", r)
	}
	r = mustRun(t, "", "user", "quota", "ALICE@example.org", "500MiB", "--config", path)
	if !strings.Contains(r.stdout, "alice@example.org: quota 524288000 octets (its own)") {
		t.Errorf("user quota SIZE: %s", r)
	}
	r = mustRun(t, "", "user", "quota", "alice@example.org", "0", "--config", path)
	if !strings.Contains(r.stdout, "quota none (its own)") {
		t.Errorf("user quota 0: %s", r)
	}
	r = mustRun(t, "", "user", "quota", "alice@example.org", "default", "--config", path)
	if !strings.Contains(r.stdout, "(limits.mailbox_quota)") {
		t.Errorf("user quota default: %s", r)
	}
	for name, args := range map[string][]string{
		"alias":      {"user", "quota", "info@example.org", "1MiB"},
		"unknown":    {"user", "quota", "nobody@example.org", "1MiB"},
		"bad size":   {"user", "quota", "alice@example.org", "lots"},
		"negative":   {"user", "quota", "alice@example.org", "-5"},
		"no address": {"user", "quota"},
	} {
		if r := run(t, "", append(args, "--config", path)...); r.code == 0 {
			t.Errorf("%s: accepted: %s", name, r)
		}
	}
}

// TestCheckConfigWarnsDeprecatedDNSServer: the old delivery.dns_server is
// still read, and check-config warns with its file, line and the new key;
// the init template writes the new [dns] section only.
func TestCheckConfigWarnsDeprecatedDNSServer(t *testing.T) {
	t.Parallel()
	path := initDir(t)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "dns_server =") || !strings.Contains(string(raw), "\n[dns]\n") {
		t.Fatalf("the template should have [dns] and no dns_server:\n%s", raw)
	}
	lines := strings.Split(string(raw), "\n")
	at := 0
	for i, l := range lines {
		if l == "[delivery]" {
			lines[i], at = "[delivery]\ndns_server = \"127.0.0.1:5353\"", i+2
		}
	}
	if at == 0 {
		t.Fatal("template lacks [delivery]")
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o640); err != nil {
		t.Fatal(err)
	}
	r := run(t, "", "check-config", "--config", path)
	if r.code != 0 || !strings.Contains(r.stdout, ": OK") {
		t.Fatalf("check-config with the old key: %s; want exit 0 and OK", r)
	}
	want := "warning: " + path + ":" + strconv.Itoa(at) + ": delivery.dns_server: deprecated: set server in the [dns] section instead (dns.server)"
	if !strings.Contains(r.stderr, want) {
		t.Errorf("check-config stderr lacks %q:\n%s", want, r.stderr)
	}
}
