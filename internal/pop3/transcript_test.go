package pop3

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"kanmon/internal/popbefore"
)

// byteExactMessage has everything a careless server mangles: lines that
// are only ".", start with "." or "..", a 100 000-octet line (crossing
// every buffer), all 8-bit octets, NUL, a bare CR inside a line, UTF-8 in
// a header, and a last line that is ".".
func byteExactMessage() string {
	var b strings.Builder
	b.WriteString("From: =?utf-8?q?J=C3=B6rg?= <joerg@example.org>\r\nTo: alice@example.com\r\n")
	b.WriteString("Subject: Grüße, 8-bit header\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n")
	b.WriteString("Content-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString(".\r\n..\r\n...\r\n.hidden\r\n. space\r\n\r\nmiddle\r\n")
	b.WriteString("long:" + strings.Repeat("0123456789abcdef", 100000/16) + "\r\n")
	b.WriteString(".long dotted line " + strings.Repeat("x", 5000) + "\r\n")
	for c := 0; c < 256; c++ {
		if c != '\r' && c != '\n' {
			b.WriteByte(byte(c))
		}
	}
	b.WriteString("\r\nbare CR a\rb inside a line\r\nÄÖÜ äöü ß € 日本語\r\n.\r\n")
	return b.String()
}

// TestByteExactRetrieval: what was delivered comes back octet for octet
// through curl, poplib and a raw client, and LIST's size is the octets
// received.
func TestByteExactRetrieval(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	msg := byteExactMessage()
	e.deliver(alice, msg, "Subject: second\r\n\r\n.\r\n")

	c := dialTLS(t, e.pop3sAddr)
	c.login(alice, alicePass)
	if got, want := c.cmd("LIST 1"), "+OK 1 "+strconv.Itoa(len(msg)); got != want {
		t.Errorf("LIST 1 = %q, want %q", got, want)
	}
	c.must("RETR 1", "+OK "+strconv.Itoa(len(msg))+" octets")
	if got := c.body(); !bytes.Equal(got, []byte(msg)) {
		t.Errorf("raw RETR differs from the delivered message (len %d vs %d)", len(got), len(msg))
	}
	c.must("QUIT", "+OK")
	waitUnlocked(t, e, alice)

	out, err := e.curl(t, "-u", alice+":"+alicePass, "pop3s://127.0.0.1:"+e.pop3sPort+"/1")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, []byte(msg)) {
		t.Errorf("curl RETR differs from the delivered message (len %d vs %d)", len(out), len(msg))
	}
	out, err = e.curl(t, "--ssl-reqd", "-u", alice+":"+alicePass, "pop3://127.0.0.1:"+e.pop3Port+"/2")
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "Subject: second\r\n\r\n.\r\n" {
		t.Errorf("curl RETR 2 = %q", out)
	}

	r := e.poplib(t, "stls", alice, alicePass, "login", "retr:1", "quit")
	mustOK(t, r, "login", "retr:1")
	if got := r["retr:1"].bytes(t); !bytes.Equal(got, []byte(msg)) {
		t.Errorf("poplib RETR differs from the delivered message (len %d vs %d)", len(got), len(msg))
	}
}

// TestLFStoredMessage: a message stored with bare LF line endings (as
// other tools write Maildirs) is sent with CRLF, and LIST counts the CRs;
// a missing final line ending is supplied.
func TestLFStoredMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.deliver(alice, "Subject: lf\n\n.dot\nline\n", "Subject: no final newline\r\n\r\nlast")
	c := dialTLS(t, e.pop3sAddr)
	c.login(alice, alicePass)
	want := "Subject: lf\r\n\r\n.dot\r\nline\r\n"
	want2 := "Subject: no final newline\r\n\r\nlast\r\n"
	c.send("LIST\r\n")
	c.line()
	if got, w := c.lines(), []string{"1 " + strconv.Itoa(len(want)), "2 " + strconv.Itoa(len(want2))}; strings.Join(got, ",") != strings.Join(w, ",") {
		t.Errorf("LIST = %q, want %q", got, w)
	}
	c.must("RETR 1", "+OK "+strconv.Itoa(len(want))+" octets")
	if got := string(c.body()); got != want {
		t.Errorf("RETR 1 = %q, want %q", got, want)
	}
	c.must("RETR 2", "+OK")
	if got := string(c.body()); got != want2 {
		t.Errorf("RETR 2 = %q, want %q", got, want2)
	}
}

// TestTranscriptAuthorization walks the AUTHORIZATION state's answers.
func TestTranscriptAuthorization(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withConfig(func(c *Config) { c.MaxErrors = 50 }))
	c := dial(t, e.pop3Addr)
	c.send("CAPA\r\n")
	if l := c.line(); l != "+OK Capability list follows" {
		t.Fatalf("CAPA: %q", l)
	}
	if got := strings.Join(c.lines(), ","); got != "TOP,UIDL,RESP-CODES,AUTH-RESP-CODE,PIPELINING,STLS" {
		t.Errorf("CAPA in clear = %s", got)
	}
	c.must("USER "+alice, "-ERR [AUTH] ")
	c.must("PASS "+alicePass, "-ERR [AUTH] ")
	c.must("AUTH PLAIN", "-ERR [AUTH] ")
	c.must("STAT", "-ERR")
	c.startTLS()
	c.must("STLS", "-ERR")
	c.must("APOP "+alice+" c4c9334bac560ecc979e58001b3e22fb", "-ERR APOP is not supported")
	c.must("NOOP", "-ERR Log in first")
	c.must("PASS "+alicePass, "-ERR Send USER first")
	c.must("USER "+alice, "+OK")
	c.must("PASS wrong", "-ERR [AUTH] Invalid user name or password")
	c.must("AUTH CRAM-MD5", "-ERR Unsupported SASL mechanism")
	c.must("AUTH PLAIN", "+ ")
	c.must("*", "-ERR Authentication cancelled")
	c.must("AUTH PLAIN !!!notbase64", "-ERR [AUTH] Malformed")
	c.must("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte(bob+"\x00"+alice+"\x00"+alicePass)), "-ERR [AUTH] Logging in as another user")
	c.send("AUTH\r\n")
	if l := c.line(); !strings.HasPrefix(l, "+OK") || strings.Join(c.lines(), ",") != "PLAIN" {
		t.Errorf("AUTH list: %q", l)
	}
	c.must("AUTH PLAIN", "+ ")
	c.must(base64.StdEncoding.EncodeToString([]byte("\x00"+alice+"\x00"+alicePass)), "+OK Logged in, 0 messages")
	c.must("USER "+alice, "-ERR Already logged in")
	c.send("CAPA\r\n")
	c.line()
	if got := strings.Join(c.lines(), ","); strings.Contains(got, "USER") || strings.Contains(got, "STLS") {
		t.Errorf("CAPA after login = %s", got)
	}
	c.must("QUIT", "+OK")
}

// TestTranscriptTransaction walks the TRANSACTION state and UPDATE.
func TestTranscriptTransaction(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m1, m2 := "Subject: one\r\n\r\nbody 1\r\nline 2\r\nline 3\r\n", "Subject: two\r\n\r\nbody 2\r\n"
	names := e.deliver(alice, m1, m2)
	c := dialTLS(t, e.pop3sAddr)
	c.login(alice, alicePass)
	total := len(m1) + len(m2)
	c.must("STAT", fmt.Sprintf("+OK 2 %d", total))
	c.must("LIST 2", fmt.Sprintf("+OK 2 %d", len(m2)))
	c.must("LIST 3", "-ERR No such message")
	c.must("LIST 0", "-ERR No such message")
	c.must("LIST -1", "-ERR Invalid message number")
	c.must("LIST 1 2", "-ERR")
	c.must("UIDL 1", "+OK 1 "+names[0])
	c.must("TOP 1 0", "+OK")
	if got := string(c.body()); got != "Subject: one\r\n\r\n" {
		t.Errorf("TOP 1 0 = %q", got)
	}
	c.must("TOP 1 2", "+OK")
	if got := string(c.body()); got != "Subject: one\r\n\r\nbody 1\r\nline 2\r\n" {
		t.Errorf("TOP 1 2 = %q", got)
	}
	c.must("TOP 1", "-ERR")
	c.must("DELE 1", "+OK")
	c.must("DELE 1", "-ERR Message 1 already deleted")
	c.must("RETR 1", "-ERR Message 1 already deleted")
	c.must("STAT", fmt.Sprintf("+OK 1 %d", len(m2)))
	c.send("UIDL\r\n")
	c.line()
	if got := strings.Join(c.lines(), ","); got != "2 "+names[1] {
		t.Errorf("UIDL after DELE = %q", got)
	}
	c.must("RSET", "+OK")
	c.must("STAT", fmt.Sprintf("+OK 2 %d", total))
	c.must("NOOP", "+OK")
	c.must("DELE 2", "+OK")
	c.must("QUIT", "+OK Bye, 1 messages deleted")
	if !c.closed() {
		t.Error("connection still open after QUIT")
	}
	msgs, err := e.mailbox(alice).List()
	if err != nil || len(msgs) != 1 || msgs[0].Key != names[0] {
		t.Errorf("after QUIT: %v %v, want only %s", msgs, err, names[0])
	}
}

// TestSTLSPipeliningRefused: commands sent in clear behind STLS are not
// carried into TLS; the connection is closed.
func TestSTLSPipeliningRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := dial(t, e.pop3Addr)
	c.send("STLS\r\nUSER " + alice + "\r\n")
	if l := c.line(); !strings.HasPrefix(l, "-ERR") {
		t.Fatalf("STLS with pipelined command: %q", l)
	}
	if !c.closed() {
		t.Error("connection not closed")
	}
}

// TestPipelining: a client may send many commands at once.
func TestPipelining(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.deliver(alice, testMessage(1), testMessage(2))
	c := dialTLS(t, e.pop3sAddr)
	c.send("USER " + alice + "\r\nPASS " + alicePass + "\r\nSTAT\r\nRETR 1\r\nDELE 1\r\nNOOP\r\nQUIT\r\n")
	for _, want := range []string{"+OK", "+OK Logged in", "+OK 2", "+OK"} {
		if l := c.line(); !strings.HasPrefix(l, want) {
			t.Fatalf("got %q, want %q", l, want)
		}
	}
	if string(c.body()) != testMessage(1) {
		t.Error("RETR body")
	}
	for _, want := range []string{"+OK Message 1 deleted", "+OK", "+OK Bye, 1"} {
		if l := c.line(); !strings.HasPrefix(l, want) {
			t.Fatalf("got %q, want %q", l, want)
		}
	}
}

// TestGarbageAndOverlongLines: malformed input gets an error, an overlong
// line or an HTTP request closes the connection, too many errors close
// it, and the server goes on serving everyone else.
func TestGarbageAndOverlongLines(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withConfig(func(c *Config) { c.MaxLineLength = 512; c.MaxErrors = 5 }))
	e.deliver(alice, testMessage(1))

	c := dial(t, e.pop3Addr)
	for _, g := range []string{"\x00\x01\x02\r\n", "NO\x00OP\r\n", "\xff\xfe\xfd\r\n", " \r\n"} {
		if l := c.cmd(strings.TrimSuffix(g, "\r\n")); !strings.HasPrefix(l, "-ERR Malformed") {
			t.Errorf("%q: %q", g, l)
		}
	}
	if l := c.cmd("XYZZY"); !strings.HasPrefix(l, "-ERR") {
		t.Errorf("XYZZY: %q", l)
	}
	if l := c.line(); !strings.HasPrefix(l, "-ERR Too many errors") {
		t.Errorf("after 5 errors: %q", l)
	}
	if !c.closed() {
		t.Error("not closed after too many errors")
	}

	c = dial(t, e.pop3Addr)
	if l := c.cmd("NOOP " + strings.Repeat("x", 600)); !strings.HasPrefix(l, "-ERR Line too long") {
		t.Errorf("overlong line: %q", l)
	}
	if !c.closed() {
		t.Error("not closed after an overlong line")
	}

	c = dial(t, e.pop3Addr)
	junk := make([]byte, 100000)
	for i := range junk {
		junk[i] = byte(i*7 + 3)
		if junk[i] == '\n' {
			junk[i] = 'n'
		}
	}
	go c.c.Write(junk) // the server closes before reading it all
	if l := c.line(); !strings.HasPrefix(l, "-ERR Line too long") {
		t.Errorf("binary junk: %q", l)
	}

	c = dial(t, e.pop3Addr)
	if l := c.cmd("GET / HTTP/1.1"); !strings.HasPrefix(l, "-ERR This is a POP3 server") {
		t.Errorf("HTTP: %q", l)
	}
	if !c.closed() {
		t.Error("not closed after an HTTP request")
	}

	// Everyone else is still served.
	c = dialTLS(t, e.pop3sAddr)
	c.login(alice, alicePass)
	c.must("STAT", "+OK 1 ")
	c.must("QUIT", "+OK")
}

// TestIdleTimeout: a silent client is logged out, deleting nothing.
func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withConfig(func(c *Config) { c.IdleTimeout = 300 * time.Millisecond }))
	e.deliver(alice, testMessage(1))
	c := dialTLS(t, e.pop3sAddr)
	c.login(alice, alicePass)
	c.must("DELE 1", "+OK")
	if l := c.line(); !strings.HasPrefix(l, "-ERR Idle too long") {
		t.Errorf("idle: %q", l)
	}
	if !c.closed() {
		t.Error("not closed")
	}
	waitUnlocked(t, e, alice)
	if e.count(alice) != 1 {
		t.Error("autologout deleted a message")
	}
	if NewServer(Config{}).cfg.IdleTimeout != 10*time.Minute {
		t.Error("default idle timeout is not RFC 1939's 10 minutes")
	}
}

// TestConnectionsPerIP: connections beyond the per-address bound are
// refused with a temporary error, then accepted again once others close.
func TestConnectionsPerIP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withConfig(func(c *Config) { c.MaxConnsPerIP = 2 }))
	a, b := dial(t, e.pop3Addr), dial(t, e.pop3Addr)
	conn, err := net.Dial("tcp", e.pop3Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(conn)
	if !strings.HasPrefix(string(got), "-ERR [SYS/TEMP] Too many connections") {
		t.Errorf("third connection: %q", got)
	}
	a.must("QUIT", "+OK")
	b.must("QUIT", "+OK")
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", e.pop3Addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4)
		io.ReadFull(c, buf)
		c.Close()
		if string(buf) == "+OK " {
			break
		}
		if i > 100 {
			t.Fatal("connections not released")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCommandLimit: a session is closed after MaxCommands plus five per
// message; its marks are not applied.
func TestCommandLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withConfig(func(c *Config) { c.MaxCommands = 4 }))
	e.deliver(alice, testMessage(1))
	c := dialTLS(t, e.pop3sAddr)
	c.login(alice, alicePass) // 2 commands; the limit is now 4+5
	c.must("DELE 1", "+OK")
	for range 5 {
		c.must("NOOP", "+OK")
	}
	if l := c.cmd("NOOP"); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("9th command: %q", l)
	}
	if l := c.line(); !strings.HasPrefix(l, "-ERR [SYS/TEMP] Too many commands") {
		t.Errorf("after the limit: %q", l)
	}
	waitUnlocked(t, e, alice)
	if e.count(alice) != 1 {
		t.Error("a session closed by the command limit deleted mail")
	}
}

// TestThrottleSharedWithSMTPAuth: failures through the shared
// Authenticator (as SMTP AUTH records them) and POP3 failures count
// together; once the limit is reached even the right password is refused
// with [SYS/TEMP].
func TestThrottleSharedWithSMTPAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ip := netip.MustParseAddr("127.0.0.1")
	// Three failures by "SMTP AUTH" (the same Authenticator call).
	for range 3 {
		if _, err := e.auth.Authenticate(context.Background(), alice, "guess", ip); err == nil {
			t.Fatal("wrong password accepted")
		}
	}
	c := dialTLS(t, e.pop3sAddr)
	c.must("USER "+alice, "+OK")
	c.must("PASS guess-4", "-ERR [AUTH]")
	c.must("USER "+alice, "+OK")
	c.must("PASS guess-5", "-ERR [AUTH]")
	c.must("USER "+alice, "+OK")
	c.must("PASS "+alicePass, "-ERR [SYS/TEMP] Too many failed logins")
	// AUTH PLAIN is throttled too, and so is SMTP AUTH for this address.
	c.must("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00"+alice+"\x00"+alicePass)), "-ERR [SYS/TEMP]")
	if _, err := e.auth.Authenticate(context.Background(), bob, bobPass, ip); err == nil {
		t.Error("SMTP AUTH from the throttled address was not throttled")
	}
	var throttled bool
	for _, l := range e.logLines() {
		if l["msg"] == "auth" && l["rule"] == "auth.throttled" && l["ok"] == false {
			throttled = true
		}
	}
	if !throttled {
		t.Error("no auth log line with rule auth.throttled")
	}
}

// TestPopBeforeSMTPRecordsLogin: only a successful login authorises the
// client address, for the window.
func TestPopBeforeSMTPRecordsLogin(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	reg := popbefore.NewWithClock(10*time.Minute, 0, clock)
	e := newEnv(t, withConfig(func(c *Config) { c.PopBefore = reg }))
	ip := netip.MustParseAddr("127.0.0.1")
	if reg.Allowed(ip) {
		t.Fatal("allowed before any login")
	}
	c := dialTLS(t, e.pop3sAddr)
	c.must("USER "+alice, "+OK")
	c.must("PASS wrong", "-ERR")
	if reg.Allowed(ip) {
		t.Fatal("a failed login authorised relay")
	}
	c.login(alice, alicePass)
	if !reg.Allowed(ip) {
		t.Fatal("not allowed after a successful login")
	}
	mu.Lock()
	now = now.Add(9 * time.Minute)
	mu.Unlock()
	if !reg.Allowed(ip) {
		t.Error("not allowed within the window")
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	if reg.Allowed(ip) {
		t.Error("still allowed after the window")
	}
	c.must("QUIT", "+OK")
}

// TestShutdown: a session that has not logged in is told to come back; a
// logged-in one finishes and its QUIT applies deletions; one still open at
// the deadline is cut off and deletes nothing.
func TestShutdown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.deliver(alice, testMessage(1), testMessage(2))
	e.deliver(bob, testMessage(1))
	anon := dial(t, e.pop3Addr)
	user := dialTLS(t, e.pop3sAddr)
	user.login(alice, alicePass)
	idle := dialTLS(t, e.pop3sAddr)
	idle.login(bob, bobPass)
	idle.must("DELE 1", "+OK")

	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	go func() { done <- e.secure.Shutdown(ctx) }()
	e.plain.Shutdown(context.Background())
	if l := anon.line(); !strings.HasPrefix(l, "-ERR [SYS/TEMP] Server shutting down") {
		t.Errorf("not logged in at shutdown: %q", l)
	}
	// The logged-in session carries on.
	user.must("DELE 1", "+OK")
	user.must("QUIT", "+OK Bye, 1 messages deleted")
	if err := <-done; err != context.DeadlineExceeded {
		t.Errorf("Shutdown = %v, want the deadline (bob's session stayed open)", err)
	}
	if !idle.closed() {
		t.Error("session not cut at the deadline")
	}
	if e.count(alice) != 1 || e.count(bob) != 1 {
		t.Errorf("on disk alice %d (want 1), bob %d (want 1)", e.count(alice), e.count(bob))
	}
	if _, err := net.DialTimeout("tcp", e.pop3sAddr, time.Second); err == nil {
		t.Error("listener still accepting after Shutdown")
	}
}

// TestLogs: every line of a connection carries its id; every command and
// reply is logged; passwords never are.
func TestLogs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := dialTLS(t, e.pop3sAddr)
	c.must("USER "+alice, "+OK")
	c.must("PASS wrong password", "-ERR")
	c.must("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00"+alice+"\x00"+"wrong2")), "-ERR")
	c.must("AUTH PLAIN", "+ ")
	c.must(base64.StdEncoding.EncodeToString([]byte("\x00"+alice+"\x00"+alicePass)), "+OK")
	c.must("QUIT", "+OK")
	c.closed()
	logs := e.logs.String()
	for _, secret := range []string{alicePass, "wrong password", "wrong2", base64.StdEncoding.EncodeToString([]byte("\x00" + alice + "\x00" + alicePass))} {
		if strings.Contains(logs, secret) {
			t.Errorf("log contains a credential %q", secret)
		}
	}
	counts := map[string]int{}
	var cmds []string
	var auths []any
	for _, l := range e.logLines() {
		msg, _ := l["msg"].(string)
		counts[msg]++
		if l["conn"] == nil || l["listener"] != "pop3s" {
			t.Errorf("line without conn or listener: %v", l)
		}
		if msg == "cmd" {
			cmds = append(cmds, l["line"].(string))
		}
		if msg == "auth" {
			auths = append(auths, l["ok"])
		}
	}
	want := []string{"USER " + alice, "PASS [redacted]", "AUTH PLAIN [redacted]", "AUTH PLAIN", "[redacted]", "QUIT"}
	if strings.Join(cmds, "|") != strings.Join(want, "|") {
		t.Errorf("cmd lines %q, want %q", cmds, want)
	}
	if fmt.Sprint(auths) != "[false false true]" {
		t.Errorf("auth outcomes %v", auths)
	}
	if counts["connect"] != 1 || counts["tls"] != 1 || counts["disconnect"] != 1 || counts["reply"] != 7 {
		t.Errorf("event counts %v", counts)
	}
}

// TestLongUniqueNameHashed: a unique name that is not a valid RFC 1939
// unique id (too long) is replaced by a stable hash.
func TestLongUniqueNameHashed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	box := e.mailbox(alice)
	if err := box.Create(); err != nil {
		t.Fatal(err)
	}
	name := "1700000000.M1P1Q1." + strings.Repeat("very-long-host-name.", 5)
	if err := os.WriteFile(filepath.Join(string(box), "new", name), []byte(testMessage(1)), 0o600); err != nil {
		t.Fatal(err)
	}
	var uids []string
	for range 2 {
		c := dialTLS(t, e.pop3sAddr)
		c.login(alice, alicePass)
		l := c.must("UIDL 1", "+OK 1 ")
		uids = append(uids, strings.TrimPrefix(l, "+OK 1 "))
		c.must("QUIT", "+OK")
		waitUnlocked(t, e, alice)
	}
	u := uids[0]
	if u != uids[1] || len(u) > 70 || strings.ContainsAny(u, " \t") || u == name {
		t.Errorf("UIDs %q: want one stable id of at most 70 printable characters", uids)
	}
}

// TestRetrieveStreams: retrieving a 32 MiB message allocates far less
// than the message: it is streamed, not loaded. (In clear, so that TLS
// record buffers, which the race detector's sync.Pool drops at random,
// do not count.)
func TestRetrieveStreams(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) { c.AllowPlaintextAuth = true }))
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("y", 998)+"\r\n", 32<<10)
	e.deliver(alice, big)
	c := dial(t, e.pop3Addr)
	c.login(alice, alicePass)
	c.must("LIST 1", "+OK 1 "+strconv.Itoa(len(big)))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c.send("RETR 1\r\n")
	c.line()
	n := 0
	for {
		l, err := c.r.ReadSlice('\n')
		if err != nil {
			t.Fatal(err)
		}
		if string(l) == ".\r\n" {
			break
		}
		n += len(l)
	}
	runtime.ReadMemStats(&after)
	if n != len(big) {
		t.Errorf("received %d octets, want %d", n, len(big))
	}
	// Client and server share the process, so this counts both sides.
	t.Logf("RETR allocated %d KiB", (after.TotalAlloc-before.TotalAlloc)>>10)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("RETR of a %d MiB message allocated %d KiB", len(big)>>20, alloc>>10)
	}
	c.must("QUIT", "+OK")
}
