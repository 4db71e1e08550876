package pop3

// End-to-end tests with real POP3 clients: Python's poplib, curl and
// fetchmail, as users run them.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// pyResult is one line of testdata/popclient.py's output.
type pyResult struct {
	Op     string   `json:"op"`
	OK     bool     `json:"ok"`
	Resp   string   `json:"resp"`
	Error  string   `json:"error"`
	Caps   []string `json:"caps"`
	Lines  []string `json:"lines"`
	Count  int      `json:"count"`
	Size   int64    `json:"size"`
	Octets int64    `json:"octets"`
	Data   string   `json:"data"`
}

func (r pyResult) bytes(t testing.TB) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// poplib runs popclient.py against the server; mode is plain, stls or ssl.
// It returns the results keyed by op (the last one wins for repeated ops).
func (e *env) poplib(t *testing.T, mode, user, pass string, ops ...string) map[string]pyResult {
	t.Helper()
	py := needTool(t, "python3")
	port := e.pop3Port
	if mode == "ssl" {
		port = e.pop3sPort
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append([]string{filepath.Join("testdata", "popclient.py"), "127.0.0.1", port, mode, e.certFile, user, pass}, ops...)
	cmd := exec.CommandContext(ctx, py, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("popclient.py %v: %v\n%s\n%s", ops, err, out, stderr.String())
	}
	res := map[string]pyResult{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r pyResult
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("popclient.py output %q: %v", l, err)
		}
		res[r.Op] = r
	}
	return res
}

func mustOK(t *testing.T, res map[string]pyResult, ops ...string) {
	t.Helper()
	for _, op := range ops {
		r, ok := res[op]
		if !ok || !r.OK {
			t.Fatalf("%s: %+v (ran: %v)", op, r, res)
		}
	}
}

func testMessage(i int) string {
	return fmt.Sprintf("From: sender@example.org\r\nTo: alice@example.com\r\nSubject: test %d\r\n"+
		"Message-ID: <m%d@example.org>\r\n\r\nBody of message %d.\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n", i, i, i)
}

// TestPoplibListRetrieveDeleteReconnect is the basic cycle with poplib:
// STLS on the POP3 port, then POP3S: list, retrieve, delete, reconnect and
// see the deletion applied, with unique ids stable across sessions.
func TestPoplibListRetrieveDeleteReconnect(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	msgs := []string{testMessage(1), testMessage(2), testMessage(3)}
	e.deliver(alice, msgs...)

	r := e.poplib(t, "stls", alice, alicePass, "capa", "login", "stat", "list", "uidl", "retr:1", "retr:3", "top:2:1", "dele:1", "quit")
	mustOK(t, r, "stls", "capa", "login", "stat", "list", "uidl", "retr:1", "retr:3", "top:2:1", "dele:1", "quit")
	if strings.Contains(r["welcome"].Resp, "kanmon") || !strings.Contains(r["welcome"].Resp, "pop.example.test") {
		t.Errorf("greeting %q: want host name and no software name", r["welcome"].Resp)
	}
	if !slices.Contains(r["capa"].Caps, "USER") || !slices.Contains(r["capa"].Caps, "SASL") || slices.Contains(r["capa"].Caps, "STLS") {
		t.Errorf("CAPA after STLS = %v: want USER and SASL, no STLS", r["capa"].Caps)
	}
	var total int64
	for _, m := range msgs {
		total += int64(len(m))
	}
	if r["stat"].Count != 3 || r["stat"].Size != total {
		t.Errorf("STAT = %d %d, want 3 %d", r["stat"].Count, r["stat"].Size, total)
	}
	for i, l := range r["list"].Lines {
		if want := fmt.Sprintf("%d %d", i+1, len(msgs[i])); l != want {
			t.Errorf("LIST line %q, want %q", l, want)
		}
	}
	if got := r["retr:1"].bytes(t); string(got) != msgs[0] {
		t.Errorf("RETR 1 = %q, want %q", got, msgs[0])
	}
	if got := r["retr:3"].bytes(t); string(got) != msgs[2] {
		t.Errorf("RETR 3 = %q, want %q", got, msgs[2])
	}
	if got, want := string(r["top:2:1"].bytes(t)), strings.SplitAfter(msgs[1], "\r\n\r\n")[0]+"Body of message 2.\r\n"; got != want {
		t.Errorf("TOP 2 1 = %q, want %q", got, want)
	}
	uids := r["uidl"].Lines
	if len(uids) != 3 {
		t.Fatalf("UIDL = %v", uids)
	}
	if e.count(alice) != 2 {
		t.Errorf("after QUIT the Maildir holds %d messages, want 2", e.count(alice))
	}

	r = e.poplib(t, "ssl", alice, alicePass, "login", "stat", "uidl", "retr:1", "quit")
	mustOK(t, r, "login", "stat", "uidl", "retr:1", "quit")
	if r["stat"].Count != 2 {
		t.Errorf("after reconnect STAT count = %d, want 2", r["stat"].Count)
	}
	// Message numbers shift, unique ids do not.
	for i, l := range r["uidl"].Lines {
		_, uid, _ := strings.Cut(l, " ")
		_, want, _ := strings.Cut(uids[i+1], " ")
		if uid != want {
			t.Errorf("UIDL after reconnect %q, want uid %q", l, want)
		}
	}
	if got := r["retr:1"].bytes(t); string(got) != msgs[1] {
		t.Errorf("after reconnect RETR 1 = %q, want message 2", got)
	}
}

// TestPoplibPlaintextRefused: without STLS, USER is refused with [AUTH]
// and CAPA hides USER and SASL but offers STLS.
func TestPoplibPlaintextRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.poplib(t, "plain", alice, alicePass, "capa", "user", "auth", "stat")
	if c := r["capa"].Caps; !slices.Contains(c, "STLS") || slices.Contains(c, "USER") || slices.Contains(c, "SASL") {
		t.Errorf("plain CAPA = %v: want STLS, no USER or SASL", c)
	}
	for _, op := range []string{"user", "auth"} {
		if r[op].OK || !strings.HasPrefix(r[op].Error, "-ERR [AUTH]") || !strings.Contains(r[op].Error, "STLS") {
			t.Errorf("%s in clear: %+v, want -ERR [AUTH] ... STLS", op, r[op])
		}
	}
	if r["stat"].OK {
		t.Errorf("STAT before login succeeded")
	}
	if strings.Contains(e.logs.String(), alicePass) {
		t.Errorf("password in the log")
	}
}

// TestPoplibPlaintextAllowed: the explicit switch lets USER/PASS through
// in clear.
func TestPoplibPlaintextAllowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withConfig(func(c *Config) { c.AllowPlaintextAuth = true }))
	e.deliver(bob, testMessage(1))
	r := e.poplib(t, "plain", bob, bobPass, "capa", "login", "stat", "quit")
	mustOK(t, r, "capa", "login", "stat", "quit")
	if !slices.Contains(r["capa"].Caps, "USER") || r["stat"].Count != 1 {
		t.Errorf("CAPA %v, STAT %d", r["capa"].Caps, r["stat"].Count)
	}
}

// TestPoplibDroppedConnectionDeletesNothing: DELE then a dropped
// connection (no QUIT) leaves every message; RSET undoes marks.
func TestPoplibDroppedConnectionDeletesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.deliver(alice, testMessage(1), testMessage(2), testMessage(3))
	r := e.poplib(t, "ssl", alice, alicePass, "login", "dele:1", "dele:2", "stat", "close")
	mustOK(t, r, "login", "dele:1", "dele:2", "stat", "close")
	if r["stat"].Count != 1 {
		t.Errorf("STAT after two DELE = %d, want 1", r["stat"].Count)
	}
	// The server notices the drop asynchronously; the lock it releases
	// is the sign the session is over.
	waitUnlocked(t, e, alice)
	if n := e.count(alice); n != 3 {
		t.Fatalf("after a dropped connection %d messages remain, want 3", n)
	}
	r = e.poplib(t, "ssl", alice, alicePass, "login", "dele:1", "dele:3", "rset", "stat", "quit")
	mustOK(t, r, "login", "dele:1", "dele:3", "rset", "stat", "quit")
	if r["stat"].Count != 3 || e.count(alice) != 3 {
		t.Errorf("after RSET and QUIT: STAT %d, on disk %d, want 3 and 3", r["stat"].Count, e.count(alice))
	}
}

func waitUnlocked(t *testing.T, e *env, account string) {
	t.Helper()
	key := lockKey(string(e.mailbox(account)))
	for i := 0; i < 500; i++ {
		mailboxLocks.Lock()
		_, held := mailboxLocks.held[key]
		mailboxLocks.Unlock()
		if !held {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("mailbox of %s still locked", account)
}

// TestPoplibInUse: while a session holds a mailbox (here on POP3S), a
// second login (with poplib, over STLS on the other listener) gets
// [IN-USE]; after QUIT it works.
func TestPoplibInUse(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.deliver(alice, testMessage(1))
	first := dialTLS(t, e.pop3sAddr)
	first.login(alice, alicePass)

	r := e.poplib(t, "stls", alice, alicePass, "login", "quit")
	if r["login"].OK || !strings.HasPrefix(r["login"].Error, "-ERR [IN-USE]") {
		t.Fatalf("second login: %+v, want -ERR [IN-USE]", r["login"])
	}
	// Another account is not affected.
	mustOK(t, e.poplib(t, "stls", bob, bobPass, "login", "quit"), "login")

	first.must("QUIT", "+OK")
	waitUnlocked(t, e, alice)
	mustOK(t, e.poplib(t, "stls", alice, alicePass, "login", "stat", "quit"), "login", "stat")
}

// TestPoplibAuthPlain logs in with AUTH PLAIN and an initial response.
func TestPoplibAuthPlain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.poplib(t, "ssl", bob, bobPass, "auth", "stat", "quit")
	mustOK(t, r, "auth", "stat", "quit")
	r = e.poplib(t, "ssl", bob, "wrong", "auth")
	if r["auth"].OK || !strings.HasPrefix(r["auth"].Error, "-ERR [AUTH]") {
		t.Errorf("wrong password: %+v", r["auth"])
	}
}

// curl runs curl with the test CA and returns stdout; a failure is
// returned, not fatal.
func (e *env) curl(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	bin := needTool(t, "curl")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-sS", "--max-time", "30", "--cacert", e.certFile}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("curl %v: %v: %s", args, err, stderr.String())
	}
	return out, nil
}

// TestCurl drives both listeners with curl: LIST, RETR, DELE, then LIST on
// a new connection shows the deletion.
func TestCurl(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		url  func(e *env) string
		args []string
	}{
		{"pop3+STLS", func(e *env) string { return "pop3://127.0.0.1:" + e.pop3Port }, []string{"--ssl-reqd"}},
		{"pop3s", func(e *env) string { return "pop3s://127.0.0.1:" + e.pop3sPort }, nil},
		{"pop3s+sasl-ir", func(e *env) string { return "pop3s://127.0.0.1:" + e.pop3sPort }, []string{"--sasl-ir"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			msgs := []string{testMessage(1), testMessage(2)}
			e.deliver(alice, msgs...)
			base := tc.url(e)
			user := []string{"-u", alice + ":" + alicePass}
			run := func(path string, extra ...string) string {
				t.Helper()
				out, err := e.curl(t, append(append(append(slices.Clone(tc.args), user...), extra...), base+path)...)
				if err != nil {
					t.Fatal(err)
				}
				return string(out)
			}
			want := fmt.Sprintf("1 %d\r\n2 %d\r\n", len(msgs[0]), len(msgs[1]))
			if got := run("/"); got != want {
				t.Fatalf("LIST = %q, want %q", got, want)
			}
			if got := run("/2"); got != msgs[1] {
				t.Fatalf("RETR 2 = %q, want %q", got, msgs[1])
			}
			run("/1", "-X", "DELE", "-I")
			if got, want := run("/"), fmt.Sprintf("1 %d\r\n", len(msgs[1])); got != want {
				t.Fatalf("LIST after DELE = %q, want %q", got, want)
			}
			if e.count(alice) != 1 {
				t.Errorf("on disk %d messages, want 1", e.count(alice))
			}
		})
	}
}

// TestCurlWithoutTLSCannotLogIn: curl on the POP3 port without
// --ssl-reqd finds no login method it may use in clear.
func TestCurlWithoutTLSCannotLogIn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.deliver(alice, testMessage(1))
	out, err := e.curl(t, "-u", alice+":"+alicePass, "pop3://127.0.0.1:"+e.pop3Port+"/")
	if err == nil {
		t.Fatalf("curl listed the mailbox in clear: %q", out)
	}
	if strings.Contains(e.logs.String(), alicePass) {
		t.Errorf("password in the log")
	}
}

// TestFetchmail retrieves with fetchmail, over STLS and over POP3S, into
// an MDA that appends to a file; fetchmail deletes what it fetched, and a
// new session sees an empty mailbox.
func TestFetchmail(t *testing.T) {
	t.Parallel()
	bin := needTool(t, "fetchmail")
	for _, mode := range []string{"stls", "ssl"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			msgs := []string{testMessage(1), testMessage(2), testMessage(3)}
			e.deliver(alice, msgs...)
			home := t.TempDir()
			outFile := filepath.Join(home, "mbox")
			port := e.pop3Port
			tlsOpt := "sslproto 'tls1.2+'" // STLS is required with an explicit sslproto
			if mode == "ssl" {
				port, tlsOpt = e.pop3sPort, "ssl sslproto 'tls1.2+'"
			}
			// The MDA appends each message and a separator line to outFile.
			mda := filepath.Join(home, "mda.sh")
			script := "#!/bin/sh\ncat >> '" + outFile + "'\nprintf '\\n==END==\\n' >> '" + outFile + "'\n"
			if err := os.WriteFile(mda, []byte(script), 0o700); err != nil {
				t.Fatal(err)
			}
			rc := fmt.Sprintf("set no syslog\n"+
				"poll 127.0.0.1 with proto POP3 port %s timeout 30 auth password\n"+
				"  user %q there with password %q\n"+
				"  %s sslcertck sslcertfile %q sslcommonname localhost\n"+
				"  mda %q\n",
				port, alice, alicePass, tlsOpt, e.certFile, mda)
			rcFile := filepath.Join(home, "fetchmailrc")
			if err := os.WriteFile(rcFile, []byte(rc), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "-f", rcFile, "--nodetach", "--nosyslog", "-v",
				"--idfile", filepath.Join(home, "fetchids"), "--pidfile", filepath.Join(home, "fetchmail.pid"))
			cmd.Env = append(os.Environ(), "HOME="+home, "FETCHMAILHOME="+home)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("fetchmail: %v\n%s", err, out)
			}
			got, err := os.ReadFile(outFile)
			if err != nil {
				t.Fatalf("fetchmail delivered nothing: %v\n%s", err, out)
			}
			parts := strings.Split(string(got), "\n==END==\n")
			if len(parts) != 4 || parts[3] != "" {
				t.Fatalf("fetchmail delivered %d messages, want 3:\n%s\n--- fetchmail output:\n%s", len(parts)-1, got, out)
			}
			for i := range 3 {
				if want := fmt.Sprintf("Subject: test %d", i+1); !strings.Contains(parts[i], want) ||
					!strings.Contains(parts[i], "\n.leading dot") || !strings.Contains(parts[i], "\n..two dots") {
					t.Errorf("message %d as fetched:\n%s", i+1, parts[i])
				}
			}
			if n := e.count(alice); n != 0 {
				t.Errorf("after fetchmail %d messages remain, want 0", n)
			}
			r := e.poplib(t, "ssl", alice, alicePass, "login", "stat", "quit")
			mustOK(t, r, "login", "stat")
			if r["stat"].Count != 0 {
				t.Errorf("reconnect STAT = %d, want 0", r["stat"].Count)
			}
		})
	}
}
