package e2e

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mode returns the permission bits of path.
func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return fi.Mode().Perm()
}

// checkDataDir walks the data directory: every file is for kanmon's user
// only (0600 or stricter), every directory 0700, except the data
// directory itself (want) and public/ (0755), which only the socket uses.
func checkDataDir(t *testing.T, data string, want fs.FileMode) {
	t.Helper()
	if m := mode(t, data); m != want {
		t.Errorf("data directory %s: mode %04o, want %04o", data, m, want)
	}
	for _, secret := range []string{"kanmon.db", "admin.token"} {
		if m := mode(t, filepath.Join(data, secret)); m != 0o600 {
			t.Errorf("%s: mode %04o, want 0600", secret, m)
		}
	}
	filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == data {
			return err
		}
		rel, _ := filepath.Rel(data, p)
		fi, err := d.Info()
		if err != nil {
			return nil // removed meanwhile (a queue file delivered)
		}
		m := fi.Mode().Perm()
		switch {
		case rel == "public":
			if m != 0o755 {
				t.Errorf("%s: mode %04o, want 0755 (local users reach the socket here)", rel, m)
			}
		case strings.HasPrefix(rel, "public"+string(filepath.Separator)):
			if fi.Mode()&fs.ModeSocket == 0 {
				t.Errorf("%s: only the socket belongs in public/", rel)
			}
		case d.IsDir():
			if m != 0o700 {
				t.Errorf("%s/: mode %04o, want 0700", rel, m)
			}
		case m&0o077 != 0:
			t.Errorf("%s: mode %04o, readable by others (want 0600)", rel, m)
		}
		return nil
	})
}

// TestFileModes: kanmon init and kanmon serve keep every secret (the
// account database with its -wal and -shm files, the admin token, the TLS
// key) 0600 and the data directory closed; with local submission on, the
// socket sits in public/, the one directory local users may reach, and
// the data directory lets them pass (0711) but not list or read it.
func TestFileModes(t *testing.T) {
	t.Parallel()
	s := setupServer(t, options{})
	data := filepath.Join(s.Dir, "data")
	checkDataDir(t, data, 0o700)
	if m := mode(t, filepath.Join(s.Dir, "key.pem")); m != 0o600 {
		t.Errorf("key.pem after init: mode %04o, want 0600", m)
	}

	editConfig(t, s.Config, map[string]string{"sendmail.enabled": "true", "sendmail.default_domain": `"example.org"`})
	s.Start(t)
	t.Cleanup(func() { s.Stop(t) })
	sendMail(t, s.MX, "x@remote.test", []string{alice}, message("x@remote.test", alice, "modes", newMessageID(t), "hello\n"))
	waitMaildir(t, s.Maildir(alice), "modes")
	checkDataDir(t, data, 0o711)
	for _, f := range []string{"kanmon.db-wal", "kanmon.db-shm"} {
		if m := mode(t, filepath.Join(data, f)); m != 0o600 {
			t.Errorf("%s while serving: mode %04o, want 0600", f, m)
		}
	}
	sock := filepath.Join(data, "public", "kanmon.sock")
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&fs.ModeSocket == 0 {
		t.Fatalf("no sendmail socket at %s: %v", sock, err)
	}
	asOtherUser(t, s, data, sock)
}

// asOtherUser checks, as the unprivileged user nobody, that the secrets
// cannot be read nor the data directory listed, while the sendmail socket
// answers.
func asOtherUser(t *testing.T, s *server, data, sock string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true: this check runs as root, to switch to the user nobody")
		}
		t.Logf("not root: the check as another local user is left out")
		return
	}
	setpriv := needTool(t, "setpriv")
	swaksBin := needTool(t, "swaks")
	// Let nobody pass through the test's own directories (below the
	// temporary directory, which is already open) to the data directory,
	// as it would through /var/lib.
	tmp := filepath.Clean(os.TempDir())
	for d := filepath.Dir(data); strings.HasPrefix(d, tmp+string(filepath.Separator)); d = filepath.Dir(d) {
		if err := os.Chmod(d, mode(t, d)|0o011); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, setpriv, append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--"}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, f := range []string{"kanmon.db", "kanmon.db-wal", "admin.token"} {
		if out, err := run("cat", filepath.Join(data, f)); err == nil {
			t.Errorf("user nobody read %s (%d bytes)", f, len(out))
		}
	}
	if out, err := run("ls", data); err == nil {
		t.Errorf("user nobody listed the data directory: %s", out)
	}
	out, err := run(swaksBin, "--socket", sock, "--quit-after", "BANNER", "--timeout", "10")
	if !strings.Contains(out, "<-  220 ") {
		t.Errorf("user nobody could not reach the sendmail socket (%v):\n%s", err, out)
	}
}

// TestFileModesTightenedOnStart: a data directory left open by an older
// version (database and token 0644, directory 0755) is tightened when the
// server starts, with a file_mode log line for each change.
func TestFileModesTightenedOnStart(t *testing.T) {
	t.Parallel()
	s := setupServer(t, options{})
	data := filepath.Join(s.Dir, "data")
	for p, m := range map[string]fs.FileMode{
		data: 0o755, filepath.Join(data, "kanmon.db"): 0o644, filepath.Join(data, "admin.token"): 0o644,
		filepath.Join(s.Dir, "key.pem"): 0o644,
	} {
		if err := os.Chmod(p, m); err != nil {
			t.Fatal(err)
		}
	}
	s.Start(t)
	t.Cleanup(func() { s.Stop(t) })
	checkDataDir(t, data, 0o700)
	if m := mode(t, filepath.Join(s.Dir, "key.pem")); m != 0o600 {
		t.Errorf("key.pem after start: mode %04o, want 0600", m)
	}
	for _, name := range []string{"data", "kanmon.db", "admin.token", "key.pem"} {
		s.WaitLog(t, "file_mode line for "+name, func(l logLine) bool {
			return l.str("msg") == "file_mode" && filepath.Base(l.str("path")) == name && l.str("to") != ""
		})
	}
}
