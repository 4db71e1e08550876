package e2e

import (
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// demoPorts are the fixed ports of the demo mode (config.Default).
var demoPorts = []int{2525, 2587, 2465, 2110, 2995, 8025}

// TestDemoMode: `kanmon serve` without a config, in an empty directory,
// prints a demo password once and accepts mail for demo@localhost on
// 127.0.0.1:2525. It uses fixed ports, so it does not run in parallel.
func TestDemoMode(t *testing.T) {
	for _, p := range demoPorts {
		l, err := net.Listen("tcp", addr(p))
		if err != nil {
			skipOrFail(t, "demo port 127.0.0.1:%d is busy (%v); the demo-mode test needs every demo port", p, err)
		}
		l.Close()
	}
	dir := t.TempDir()
	s := &server{
		Dir: dir, MX: addr(2525), Submission: addr(2587), SMTPS: addr(2465), Admin: addr(8025),
		LogPath: filepath.Join(t.TempDir(), "serve.log"), StdoutPath: filepath.Join(t.TempDir(), "serve.out"),
	}
	asRoot := os.Geteuid() == 0
	if asRoot {
		// Started as root, the demo serves as nobody: the directory it
		// runs in must be reachable by nobody, as a checkout usually is.
		for _, d := range []string{filepath.Dir(dir), dir} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.start(t); err != nil {
		t.Fatalf("kanmon serve (demo): %v", err)
	}
	t.Cleanup(func() { s.Stop(t) })
	if asRoot {
		checkThreads(t, s.proc.pid, lookupNobody(t), "the demo started as root")
	}

	out, err := os.ReadFile(s.StdoutPath)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`demo@localhost with password (\S+) \(shown once\)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("demo mode did not print a password:\n%s", out)
	}
	pw := string(m[1])
	if n := strings.Count(string(out), pw); n != 1 {
		t.Errorf("the demo password appears %d times on stdout, want once", n)
	}

	msgID := newMessageID(t)
	sendMail(t, s.MX, "x@remote.test", []string{"demo@localhost"}, message("x@remote.test", "demo@localhost", "demo", msgID, "hello demo\n"))
	waitMaildir(t, filepath.Join(dir, "kanmon-data", "mail", "localhost", "demo", "new"), msgID)

	// The printed password works on submission.
	c := dial(t, s.Submission)
	c.Ehlo("client.remote.test")
	c.StartTLS()
	c.Ehlo("client.remote.test")
	c.Expect("AUTH PLAIN "+plainPayload("demo@localhost", pw), 235, "2.7.0")
	c.Expect("QUIT", 221, "2.0.0")

	raw := s.LogRaw(t)
	if strings.Contains(raw, pw) || strings.Contains(raw, base64.StdEncoding.EncodeToString([]byte(pw))) {
		t.Errorf("the demo password is in the log")
	}

	// A second run keeps the account and does not print the password again.
	s.Stop(t)
	s.Start(t)
	out, _ = os.ReadFile(s.StdoutPath)
	if n := strings.Count(string(out), pw); n != 1 {
		t.Errorf("after a restart the demo password appears %d times on stdout, want once:\n%s", n, out)
	}
	if !strings.Contains(string(out), "demo@localhost exists") {
		t.Errorf("second run does not say the demo account exists:\n%s", out)
	}
}
