package e2e

import (
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needRoot fails the test in CI (which runs as root) and skips it
// elsewhere: only root can show that kanmon gives root up.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root (CI runs as root)")
	}
	t.Skip("this test needs root: it starts kanmon as root and checks that it drops to run_as")
}

// nobodyUser is the unprivileged account the tests run kanmon as.
type nobodyUser struct {
	Name     string
	UID, GID int
}

func lookupNobody(t testing.TB) nobodyUser {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("user nobody: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return nobodyUser{u.Username, uid, gid}
}

// lowPort finds a free loopback port below 1024, which only root may
// bind: a server on it shows the ports were bound before the drop.
func lowPort(t testing.TB) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for p := 700; p < 1000; p++ {
		if portsUsed[p] {
			continue
		}
		l, err := net.Listen("tcp", addr(p))
		if err != nil {
			continue
		}
		l.Close()
		portsUsed[p] = true
		return p
	}
	t.Fatal("no free loopback port between 700 and 999")
	return 0
}

// procCreds reads the Uid, Gid and Groups lines of every thread of pid.
func procCreds(t testing.TB, pid int) map[string][3]string {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("no threads of pid %d in /proc: %v", pid, err)
	}
	out := map[string][3]string{}
	for _, p := range tasks {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue // the thread ended meanwhile
		}
		var c [3]string
		for _, line := range strings.Split(string(raw), "\n") {
			k, v, _ := strings.Cut(line, ":")
			switch k {
			case "Uid":
				c[0] = strings.Join(strings.Fields(v), " ")
			case "Gid":
				c[1] = strings.Join(strings.Fields(v), " ")
			case "Groups":
				c[2] = strings.Join(strings.Fields(v), " ")
			}
		}
		out[p] = c
	}
	return out
}

// checkThreads asserts that every thread of pid has real, effective,
// saved and filesystem ids of u, and no supplementary group but u's.
func checkThreads(t testing.TB, pid int, u nobodyUser, when string) int {
	t.Helper()
	wantUID := strings.TrimSpace(strings.Repeat(strconv.Itoa(u.UID)+" ", 4))
	wantGID := strings.TrimSpace(strings.Repeat(strconv.Itoa(u.GID)+" ", 4))
	threads := procCreds(t, pid)
	for p, c := range threads {
		if c[0] != wantUID || c[1] != wantGID {
			t.Errorf("%s: %s: Uid %q Gid %q, want Uid %q Gid %q", when, p, c[0], c[1], wantUID, wantGID)
		}
		for _, g := range strings.Fields(c[2]) {
			if g != strconv.Itoa(u.GID) {
				t.Errorf("%s: %s: supplementary group %s (Groups %q), want only %d", when, p, g, c[2], u.GID)
			}
		}
	}
	return len(threads)
}

// setupRunAs prepares a config directory with kanmon init --user nobody,
// the MX listener on a port below 1024.
func setupRunAs(t *testing.T) (*server, nobodyUser) {
	t.Helper()
	n := lookupNobody(t)
	dir := t.TempDir()
	// nobody must pass through the test's directories to reach its own.
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 3)
	s := &server{
		Dir: dir, Config: filepath.Join(dir, "kanmon.toml"),
		MX: addr(lowPort(t)), Submission: addr(ports[0]), SMTPS: addr(ports[1]), Admin: addr(ports[2]),
		LogPath: filepath.Join(dir, "serve.log"), StdoutPath: filepath.Join(dir, "serve.out"),
	}
	mustKanmon(t, dir, "", "init", "--dir", dir, "--domain", domain, "--hostname", hostname, "--user", n.Name,
		"--mx-addr", s.MX, "--submission-addr", s.Submission, "--smtps-addr", s.SMTPS, "--admin-addr", s.Admin)
	if err := os.Chmod(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	editConfig(t, s.Config, map[string]string{"dns.server": `"127.0.0.1:1"`})
	s.AddUser(t, alice)
	return s, n
}

// TestServesAsRunAs: kanmon serve started as root with run_as binds a
// port below 1024, then every thread runs as run_as (uid, gid, no other
// groups, per /proc/PID/task/*/status) while it accepts, delivers and
// serves mail, and the log says so.
func TestServesAsRunAs(t *testing.T) {
	t.Parallel()
	needRoot(t)
	s, n := setupRunAs(t)
	if err := s.start(t); err != nil {
		t.Fatalf("starting kanmon as root with run_as = %q: %v", n.Name, err)
	}
	t.Cleanup(func() { s.Stop(t) })
	checkThreads(t, s.PID(), n, "after start")
	s.WaitLog(t, "privileges op=dropped", func(l logLine) bool {
		return l.str("msg") == "privileges" && l.str("op") == "dropped" && l.str("user") == n.Name
	})

	// Inbound mail is accepted, queued and delivered by the dropped process.
	msgID := newMessageID(t)
	sendMail(t, s.MX, "sender@remote.test", []string{alice}, message("sender@remote.test", alice, "as run_as", msgID, "hello\n"))
	waitMaildir(t, s.Maildir(alice), msgID)
	files, _ := filepath.Glob(filepath.Join(s.Maildir(alice), "*"))
	for _, got := range files {
		fi, err := os.Stat(got)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != n.UID {
			t.Errorf("delivered file %s belongs to uid %d, want %d (%s)", got, st.Uid, n.UID, n.Name)
		}
	}
	// Submission with AUTH (password check, TLS) works as well.
	out, code := swaks(t, "--server", s.Submission, "-tls", "--auth", "PLAIN", "--auth-user", alice,
		"--auth-password", alicePassword, "--from", alice, "--to", alice, "--timeout", "20")
	if code != 0 || !hasReply(swaksReplies(out), 250, "2.0.0") {
		t.Errorf("submission as run_as: exit %d\n%s", code, out)
	}
	time.Sleep(200 * time.Millisecond) // let delivery threads start
	if k := checkThreads(t, s.PID(), n, "while serving"); k < 2 {
		t.Errorf("only %d threads seen; the check means little", k)
	}
}

// TestServeRefusesRootWithoutRunAs: root without run_as is refused, with
// a sentence naming the key, before anything is served.
func TestServeRefusesRootWithoutRunAs(t *testing.T) {
	t.Parallel()
	needRoot(t)
	s := setupServer(t, options{set: map[string]string{"run_as": `""`}})
	out, code := runKanmon(t, s.Dir, "", "serve", "--config", s.Config)
	if code == 0 || !strings.Contains(out, `run_as = "kanmon"`) || !strings.Contains(out, "refusing to serve as root") {
		t.Fatalf("kanmon serve as root without run_as: exit %d, want a refusal naming run_as:\n%s", code, out)
	}
	if greeting(s.MX) {
		t.Errorf("the refused server greets on %s", s.MX)
	}
	// The demo mode has no config to name a user in: refused as root too.
	out, code = runKanmon(t, t.TempDir(), "", "serve")
	if code == 0 || !strings.Contains(out, "run_as") {
		t.Fatalf("demo mode as root: exit %d, want a refusal naming run_as:\n%s", code, out)
	}
}

// TestInitUser: kanmon init --user hands the data directory and its files
// to that user with the secure modes, and keeps the config root's.
func TestInitUser(t *testing.T) {
	t.Parallel()
	needRoot(t)
	s, n := setupRunAs(t)
	data := filepath.Join(s.Dir, "data")
	for _, c := range []struct {
		path string
		uid  int
		mode os.FileMode
	}{
		{data, n.UID, 0o700},
		{filepath.Join(data, "kanmon.db"), n.UID, 0o600},
		{filepath.Join(data, "admin.token"), n.UID, 0o600},
		{filepath.Join(s.Dir, "key.pem"), n.UID, 0o600},
		{s.Config, 0, 0o640},
	} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != c.uid || fi.Mode().Perm() != c.mode {
			t.Errorf("%s: uid %d mode %04o, want uid %d mode %04o", c.path, st.Uid, fi.Mode().Perm(), c.uid, c.mode)
		}
	}
	raw, _ := os.ReadFile(s.Config)
	if !strings.Contains(string(raw), `run_as = "`+n.Name+`"`) {
		t.Errorf("kanmon.toml does not set run_as = %q", n.Name)
	}
	if fi, err := os.Stat(s.Config); err == nil && int(fi.Sys().(*syscall.Stat_t).Gid) != n.GID {
		t.Errorf("kanmon.toml: group %d, want %d (readable by %s)", fi.Sys().(*syscall.Stat_t).Gid, n.GID, n.Name)
	}
}
