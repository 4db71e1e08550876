package e2e

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mailClient is a small IMAP and POP3 client (Python's imaplib and
// poplib), one operation per run, printing one line per message.
const mailClient = `import sys, ssl, imaplib, poplib, email
op, port, user, pw = sys.argv[1:5]
arg = sys.argv[5] if len(sys.argv) > 5 else ""
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def mid(raw):
    return email.message_from_bytes(raw).get("Message-ID", "").strip()
if op.startswith("imap"):
    m = imaplib.IMAP4_SSL("127.0.0.1", int(port), ssl_context=ctx, timeout=20)
    try:
        m.login(user, pw)
    except imaplib.IMAP4.error as e:
        print("REFUSED", e); sys.exit(3)
    m.select("INBOX")
    typ, data = m.search(None, "ALL")
    for n in data[0].split():
        typ, d = m.fetch(n, "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        i = mid(d[0][1])
        if op == "imap-read" and i == arg:
            m.fetch(n, "(BODY[])")
        if op == "imap-expunge" and i == arg:
            m.store(n, "+FLAGS", "\\Deleted")
        print(n.decode(), i)
    if op == "imap-expunge":
        m.expunge()
    m.logout()
else:
    p = poplib.POP3_SSL("127.0.0.1", int(port), context=ctx, timeout=20)
    try:
        p.user(user); p.pass_(pw)
    except poplib.error_proto as e:
        print("REFUSED", e); sys.exit(3)
    for line in p.uidl()[1]:
        n, u = line.decode().split()
        i = mid(b"\r\n".join(p.top(int(n), 0)[1]))
        if op == "pop-dele" and i == arg:
            p.dele(int(n))
        print(u, i)
    p.quit()
`

// runMailClient runs one mailClient operation and returns its lines as
// "first-field message-id" pairs, keyed by Message-ID.
func runMailClient(t testing.TB, dir, op, port, user, pw, arg string) (map[string]string, int, string) {
	t.Helper()
	py := needTool(t, "python3")
	script := filepath.Join(dir, "mailclient.py")
	if err := os.WriteFile(script, []byte(mailClient), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, script, op, port, user, pw, arg)
	done := make(chan struct{})
	timer := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill(); close(done) })
	out, err := cmd.CombinedOutput()
	if !timer.Stop() {
		<-done
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v\n%s", op, err, out)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			got[f[1]] = f[0]
		}
	}
	return got, code, string(out)
}

// dovecot is a private Dovecot instance on loopback, configured as
// docs/imap-with-dovecot.md says, with its own base and state
// directories; stopped at the end of the test.
type dovecot struct {
	IMAPS string
	Log   string
}

func startDovecot(t *testing.T, s *server, n nobodyUser) *dovecot {
	t.Helper()
	bin := needTool(t, "dovecot")
	reply := "/usr/lib/dovecot/checkpassword-reply"
	if _, err := os.Stat(reply); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing (package dovecot-core)", reply)
		}
		t.Skipf("%s is missing", reply)
	}
	dir := t.TempDir()
	for _, d := range []string{"run", "state"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Dovecot's unprivileged processes must reach their base directory.
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &dovecot{IMAPS: addr(freePorts(t, 1)[0]), Log: filepath.Join(dir, "dovecot.log")}
	mail := filepath.Join(s.Dir, "data", "mail")
	conf := fmt.Sprintf(`# Private test instance: loopback only, own directories.
instance_name = kanmon-e2e-%d
base_dir = %[2]s/run
state_dir = %[2]s/state
log_path = %[3]s
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <%[4]s/cert.pem
ssl_key = <%[4]s/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain
auth_cache_size = 0
auth_failure_delay = 0
passdb {
  driver = checkpassword
  args = %[5]s checkpassword --config %[6]s
}
userdb {
  driver = static
  args = uid=%[7]d gid=%[8]d home=%[9]s/%%d/%%n
}
mail_location = maildir:~
first_valid_uid = %[7]d
last_valid_uid = %[7]d
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = %[10]s
    ssl = yes
  }
}
# kanmon checkpassword is a Go program: it reserves more address space
# than Dovecot's default 256M limit allows; 0 lifts the limit for the
# auth process (it runs nothing else).
service auth {
  vsz_limit = 0
}
service stats {
  inet_listener http {
    port = 0
  }
}
`, os.Getpid(), dir, d.Log, s.Dir, kanmonBin, s.Config, n.UID, n.GID, mail, portOf(d.IMAPS))
	confPath := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-F", "-c", confPath)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting dovecot: %v", err)
	}
	waited := make(chan struct{})
	go func() { cmd.Wait(); close(waited) }()
	t.Cleanup(func() {
		syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
			<-waited
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", d.IMAPS, &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			c.Close()
			return d
		}
		select {
		case <-waited:
			raw, _ := os.ReadFile(d.Log)
			t.Fatalf("dovecot exited: %s", raw)
		default:
		}
		if time.Now().After(deadline) {
			raw, _ := os.ReadFile(d.Log)
			t.Fatalf("dovecot does not answer IMAPS on %s: %v\n%s", d.IMAPS, err, raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestIMAPThroughDovecot: Dovecot serves kanmon's Maildirs over IMAPS,
// checking passwords with kanmon checkpassword. A message kanmon
// delivered is fetched with the account's kanmon password; one read over
// IMAP keeps its POP3 UIDL; one expunged over IMAP is gone from POP3 and
// one deleted over POP3 is gone from IMAP; a wrong password is refused
// and counted by kanmon's throttle (after enough, the right password from
// that address is refused over POP3 too).
func TestIMAPThroughDovecot(t *testing.T) {
	t.Parallel()
	needRoot(t)
	s, n := setupRunAs(t)
	pop3s := addr(freePorts(t, 1)[0])
	editConfig(t, s.Config, map[string]string{
		"checkpassword.enabled": "true", "checkpassword.users": `["dovecot"]`,
		"listeners.pop3s": `"` + pop3s + `"`, "limits.auth_max_failures": "4",
	})
	// Dovecot's auth process (user dovecot) runs kanmon checkpassword,
	// which reads the config: as the guide says, in the kanmon group; here
	// the test's config directory is simply readable.
	for _, p := range []string{s.Dir, s.Config} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.start(t); err != nil {
		t.Fatalf("starting kanmon: %v", err)
	}
	t.Cleanup(func() { s.Stop(t) })
	d := startDovecot(t, s, n)
	imapPort, popPort := portOf(d.IMAPS), portOf(pop3s)
	tmp := t.TempDir()

	ids := make([]string, 3)
	for i := range ids {
		ids[i] = newMessageID(t)
		sendMail(t, s.MX, "sender@remote.test", []string{alice}, message("sender@remote.test", alice, fmt.Sprintf("imap %d", i), ids[i], "hello\n"))
		waitMaildir(t, s.Maildir(alice), ids[i])
	}
	uidl, code, out := runMailClient(t, tmp, "pop-list", popPort, alice, alicePassword, "")
	if code != 0 || len(uidl) != 3 {
		t.Fatalf("POP3 listing before IMAP: exit %d\n%s", code, out)
	}
	got, code, out := runMailClient(t, tmp, "imap-read", imapPort, alice, alicePassword, ids[0])
	if code != 0 || got[ids[0]] == "" || got[ids[1]] == "" || got[ids[2]] == "" {
		raw, _ := os.ReadFile(d.Log)
		t.Fatalf("IMAP listing with the kanmon password: exit %d\n%s\ndovecot log:\n%s", code, out, raw)
	}
	cur := filepath.Join(filepath.Dir(s.Maildir(alice)), "cur")
	seen := false
	for _, f := range mustGlob(t, filepath.Join(cur, "*:2,*S*")) {
		if raw, _ := os.ReadFile(f); strings.Contains(string(raw), ids[0]) {
			seen = true
		}
	}
	if !seen {
		t.Errorf("the message read over IMAP is not in cur/ with the S flag: %v", mustGlob(t, filepath.Join(cur, "*")))
	}
	if _, code, out = runMailClient(t, tmp, "imap-expunge", imapPort, alice, alicePassword, ids[1]); code != 0 {
		t.Fatalf("IMAP expunge: exit %d\n%s", code, out)
	}
	after, code, out := runMailClient(t, tmp, "pop-dele", popPort, alice, alicePassword, ids[2])
	if code != 0 {
		t.Fatalf("POP3 after IMAP: exit %d\n%s", code, out)
	}
	if after[ids[0]] != uidl[ids[0]] {
		t.Errorf("UIDL of the message read over IMAP changed: %q, was %q", after[ids[0]], uidl[ids[0]])
	}
	if _, ok := after[ids[1]]; ok {
		t.Errorf("the message expunged over IMAP is still in the POP3 listing:\n%s", out)
	}
	got, code, out = runMailClient(t, tmp, "imap-list", imapPort, alice, alicePassword, "")
	if _, ok := got[ids[2]]; ok || code != 0 || got[ids[0]] == "" {
		t.Errorf("after POP3 DELE: IMAP should list the first message only: exit %d\n%s", code, out)
	}

	// Wrong passwords: refused by Dovecot, decided and counted by kanmon.
	refusals := func() int {
		k := 0
		for _, l := range s.Logs(t) {
			if l.str("msg") == "auth" && l.str("listener") == "checkpassword" && l.str("remote") == "127.0.0.1" &&
				(l.str("rule") == "auth.invalid" || l.str("rule") == "auth.throttled") {
				k++
			}
		}
		return k
	}
	for i := 0; i < 8 && refusals() < 4; i++ {
		if _, code, out = runMailClient(t, tmp, "imap-list", imapPort, alice, "wrong-password", ""); code != 3 {
			t.Fatalf("IMAP login with a wrong password: exit %d, want a refusal\n%s", code, out)
		}
	}
	if k := refusals(); k < 4 {
		t.Fatalf("kanmon logged %d refused checkpassword logins from 127.0.0.1 after 8 wrong IMAP logins, want 4", k)
	}
	// The same throttle now refuses that address on POP3, right password or not.
	if _, code, out = runMailClient(t, tmp, "pop-list", popPort, alice, alicePassword, ""); code != 3 {
		t.Errorf("POP3 login from an address that failed over IMAP: exit %d, want a refusal by the shared throttle\n%s", code, out)
	}
}

func mustGlob(t testing.TB, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
