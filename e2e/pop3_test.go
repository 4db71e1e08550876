package e2e

// POP3 through the real binary: a configuration made by `kanmon init
// --pop3-addr --pop3s-addr`, mail delivered with swaks, read and deleted
// with fetchmail and curl; POP-before-SMTP relaying on the MX listener;
// and no POP3 listener when init was not asked for one.

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// popServer is a kanmon instance with POP3 (STLS) and POP3S listeners.
type popServer struct {
	*server
	POP3, POP3S string
	Cert        string // the self-signed certificate kanmon init generated
}

// startPOP3Server runs `kanmon init` with --pop3-addr and --pop3s-addr,
// applies set (as setupServer does), adds alice and starts kanmon serve.
func startPOP3Server(t *testing.T, set map[string]string) *popServer {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		dir := t.TempDir()
		ports := freePorts(t, 6)
		s := &server{
			Dir: dir, Config: filepath.Join(dir, "kanmon.toml"),
			MX: addr(ports[0]), Submission: addr(ports[1]), SMTPS: addr(ports[2]), Admin: addr(ports[3]),
			LogPath: filepath.Join(dir, "serve.log"), StdoutPath: filepath.Join(dir, "serve.out"),
		}
		p := &popServer{server: s, POP3: addr(ports[4]), POP3S: addr(ports[5]), Cert: filepath.Join(dir, "cert.pem")}
		mustKanmon(t, dir, "", "init", "--dir", dir, "--domain", domain, "--hostname", hostname,
			"--mx-addr", s.MX, "--submission-addr", s.Submission, "--smtps-addr", s.SMTPS, "--admin-addr", s.Admin,
			"--pop3-addr", p.POP3, "--pop3s-addr", p.POP3S)
		// As setupServer: remote delivery never leaves the machine.
		all := map[string]string{"dns.server": `"127.0.0.1:1"`}
		for k, v := range inboundOff {
			all[k] = v
		}
		for k, v := range set {
			all[k] = v
		}
		editConfig(t, s.Config, all)
		s.AddUser(t, alice)
		err := s.start(t)
		if err == nil {
			t.Cleanup(func() { s.Stop(t) })
			return p
		}
		lastErr = err
		if !errors.Is(err, errPortInUse) {
			break
		}
	}
	t.Fatalf("starting kanmon with POP3: %v", lastErr)
	return nil
}

func portOf(a string) string {
	_, p, _ := net.SplitHostPort(a)
	return p
}

// popCurl runs curl against the POP3S listener, verifying the certificate
// kanmon init generated for the host name.
func (p *popServer) popCurl(t *testing.T, path string, extra ...string) (string, int) {
	t.Helper()
	port := portOf(p.POP3S)
	args := append([]string{"--cacert", p.Cert, "--resolve", hostname + ":" + port + ":127.0.0.1",
		"-u", alice + ":" + alicePassword}, extra...)
	return curl(t, append(args, "pop3s://"+hostname+":"+port+path)...)
}

func (p *popServer) mustPopCurl(t *testing.T, path string, extra ...string) string {
	t.Helper()
	out, code := p.popCurl(t, path, extra...)
	if code != 0 {
		t.Fatalf("curl pop3s %s %v: exit status %d\n%s", path, extra, code, out)
	}
	return out
}

// mailbox returns the files in alice's Maildir (new/ and cur/).
func (p *popServer) mailbox(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	root := filepath.Dir(p.Maildir(alice))
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(root, sub))
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(root, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out[sub+"/"+e.Name()] = string(b)
		}
	}
	return out
}

// swaksTo delivers one message to alice on the MX port with swaks.
func swaksTo(t *testing.T, mx, subject, body string) {
	t.Helper()
	out, code := swaks(t, "--server", mx, "--from", "sender@remote.test", "--to", alice,
		"--header", "Subject: "+subject, "--body", body)
	if code != 0 || !hasReply(swaksReplies(out), 250, "2.0.0") {
		t.Fatalf("swaks: exit status %d\n%s", code, out)
	}
}

// TestPOP3ThroughBinary: two messages sent with swaks are listed and
// retrieved byte-exact by curl over POP3S, fetched and deleted by
// fetchmail over POP3 with STLS; a new session sees an empty mailbox. A
// third message is deleted with curl, and the next session sees nothing.
func TestPOP3ThroughBinary(t *testing.T) {
	t.Parallel()
	needTool(t, "swaks")
	needTool(t, "curl")
	fetchmail := needTool(t, "fetchmail")
	p := startPOP3Server(t, nil)

	swaksTo(t, p.MX, "pop3 e2e one", "first message\n.leading dot\n..two dots\nend one")
	swaksTo(t, p.MX, "pop3 e2e two", "second message\nend two")
	waitMaildir(t, p.Maildir(alice), "Subject: pop3 e2e one")
	waitMaildir(t, p.Maildir(alice), "Subject: pop3 e2e two")
	onDisk := p.mailbox(t)
	if len(onDisk) != 2 {
		t.Fatalf("Maildir holds %d messages, want 2", len(onDisk))
	}

	// curl over POP3S: LIST, then RETR of each, byte-exact against the
	// Maildir files (dot-stuffing undone).
	list := p.mustPopCurl(t, "/")
	lines := strings.Split(strings.TrimSuffix(list, "\r\n"), "\r\n")
	if len(lines) != 2 {
		t.Fatalf("LIST = %q, want two messages", list)
	}
	var retrieved []string
	for i, l := range lines {
		num, size, _ := strings.Cut(l, " ")
		if num != strconv.Itoa(i+1) {
			t.Fatalf("LIST line %q", l)
		}
		msg := p.mustPopCurl(t, "/"+num)
		if strconv.Itoa(len(msg)) != size {
			t.Errorf("message %s: LIST says %s octets, RETR gave %d", num, size, len(msg))
		}
		retrieved = append(retrieved, msg)
	}
	var want []string
	for _, m := range onDisk {
		want = append(want, m)
	}
	sort.Strings(want)
	sort.Strings(retrieved)
	if !slices.Equal(retrieved, want) {
		t.Errorf("messages retrieved by curl differ from the Maildir:\n got %q\nwant %q", retrieved, want)
	}
	for _, m := range retrieved {
		if !strings.HasPrefix(m, "Return-Path: <sender@remote.test>\r\nDelivered-To: "+alice+"\r\n") {
			t.Errorf("retrieved message starts %.80q", m)
		}
	}
	if !strings.Contains(strings.Join(retrieved, ""), "\r\n.leading dot\r\n..two dots\r\n") {
		t.Errorf("dot lines did not survive SMTP and POP3: %q", retrieved)
	}
	if n := len(p.mailbox(t)); n != 2 {
		t.Fatalf("RETR without DELE removed messages: %d left", n)
	}

	// fetchmail over the POP3 port with STLS, verifying the certificate.
	home := t.TempDir()
	outFile := filepath.Join(home, "mbox")
	mda := filepath.Join(home, "mda.sh")
	script := "#!/bin/sh\ncat >> '" + outFile + "'\nprintf '\\n==END==\\n' >> '" + outFile + "'\n"
	if err := os.WriteFile(mda, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	rc := fmt.Sprintf("set no syslog\n"+
		"poll 127.0.0.1 with proto POP3 port %s timeout 30 auth password\n"+
		"  user %q there with password %q\n"+
		"  sslproto 'tls1.2+' sslcertck sslcertfile %q sslcommonname %s\n"+
		"  mda %q\n", portOf(p.POP3), alice, alicePassword, p.Cert, hostname, mda)
	rcFile := filepath.Join(home, "fetchmailrc")
	if err := os.WriteFile(rcFile, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, fetchmail, "-f", rcFile, "--nodetach", "--nosyslog", "-v",
		"--idfile", filepath.Join(home, "fetchids"), "--pidfile", filepath.Join(home, "fetchmail.pid"))
	cmd.Env = append(os.Environ(), "HOME="+home, "FETCHMAILHOME="+home)
	fout, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("fetchmail: %v\n%s", err, fout)
	}
	if !strings.Contains(string(fout), "STLS") {
		t.Errorf("fetchmail did not use STLS:\n%s", fout)
	}
	got, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatalf("fetchmail delivered nothing: %v\n%s", err, fout)
	}
	parts := strings.Split(string(got), "\n==END==\n")
	if len(parts) != 3 || parts[2] != "" {
		t.Fatalf("fetchmail delivered %d messages, want 2:\n%s\n--- fetchmail:\n%s", len(parts)-1, got, fout)
	}
	fetched := parts[0] + parts[1]
	for _, w := range []string{"Subject: pop3 e2e one", "Subject: pop3 e2e two", "\n.leading dot", "\n..two dots", "end two"} {
		if !strings.Contains(fetched, w) {
			t.Errorf("fetchmail's copies lack %q:\n%s", w, fetched)
		}
	}
	// fetchmail deleted what it fetched: a new session sees nothing. (curl
	// prints a lone CRLF for an empty listing.)
	if out := p.mustPopCurl(t, "/"); strings.TrimSpace(out) != "" {
		t.Errorf("LIST after fetchmail = %q, want an empty mailbox", out)
	}
	if m := p.mailbox(t); len(m) != 0 {
		t.Errorf("Maildir after fetchmail holds %d messages", len(m))
	}

	// A third message, deleted with curl.
	swaksTo(t, p.MX, "pop3 e2e three", "third message")
	waitMaildir(t, p.Maildir(alice), "Subject: pop3 e2e three")
	if out := p.mustPopCurl(t, "/1"); !strings.Contains(out, "Subject: pop3 e2e three") {
		t.Fatalf("RETR 1 = %q", out)
	}
	p.mustPopCurl(t, "/1", "-X", "DELE", "-I")
	if out := p.mustPopCurl(t, "/"); strings.TrimSpace(out) != "" {
		t.Errorf("LIST after DELE and reconnect = %q, want empty", out)
	}
	if m := p.mailbox(t); len(m) != 0 {
		t.Errorf("Maildir after DELE holds %d messages", len(m))
	}
	if strings.Contains(p.LogRaw(t), alicePassword) {
		t.Error("the password is in the log")
	}
}

// pop3sLogin logs in over POP3S with USER/PASS, verifying the server's
// certificate, and returns the reply to PASS.
func pop3sLogin(t *testing.T, p *popServer, user, pass string) string {
	t.Helper()
	pem, err := os.ReadFile(p.Cert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", p.POP3S,
		&tls.Config{RootCAs: pool, ServerName: hostname})
	if err != nil {
		t.Fatalf("POP3S: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second)) // a failed login is answered late (throttle)
	r := bufio.NewReader(c)
	line := func(send string) string {
		t.Helper()
		if send != "" {
			fmt.Fprintf(c, "%s\r\n", send)
		}
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("POP3S after %q: %v", strings.SplitN(send, " ", 2)[0], err)
		}
		return strings.TrimRight(l, "\r\n")
	}
	if g := line(""); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("POP3S greeting %q", g)
	}
	if u := line("USER " + user); !strings.HasPrefix(u, "+OK") {
		t.Fatalf("USER: %q", u)
	}
	res := line("PASS " + pass)
	if strings.HasPrefix(res, "+OK") {
		if q := line("QUIT"); !strings.HasPrefix(q, "+OK") {
			t.Errorf("QUIT: %q", q)
		}
	}
	return res
}

// relayAttempt tries to relay to friend@remote.test on the MX listener
// without AUTH and returns the reply to RCPT (the client stays open for
// DATA when it was accepted).
func relayAttempt(t *testing.T, mx string) (reply, *client) {
	t.Helper()
	c := dial(t, mx)
	c.Ehlo("client.remote.test")
	c.Expect("MAIL FROM:<someone@remote.test>", 250, "2.1.0")
	return c.Cmd("RCPT TO:<friend@remote.test>"), c
}

// TestPopBeforeSMTPThroughBinary: with pop_before_smtp = "3s" and
// pop_before_smtp_on_mx, relaying from 127.0.0.1 on the MX listener is
// refused before a POP login and after a failed one, accepted right after
// a successful POP3S login from the same address, and refused again once
// the window has passed.
func TestPopBeforeSMTPThroughBinary(t *testing.T) {
	t.Parallel()
	const window = 3 * time.Second
	p := startPOP3Server(t, map[string]string{"pop3.pop_before_smtp": `"3s"`, "pop3.pop_before_smtp_on_mx": "true"})

	r, c := relayAttempt(t, p.MX)
	checkReply(t, "RCPT before any POP login", r, 554, "5.7.1")
	c.Close()

	if res := pop3sLogin(t, p, alice, "wrong password"); !strings.HasPrefix(res, "-ERR") {
		t.Fatalf("PASS with a wrong password: %q", res)
	}
	r, c = relayAttempt(t, p.MX)
	checkReply(t, "RCPT after a failed POP login", r, 554, "5.7.1")
	c.Close()

	if res := pop3sLogin(t, p, alice, alicePassword); !strings.HasPrefix(res, "+OK") {
		t.Fatalf("PASS: %q", res)
	}
	loggedIn := time.Now()
	r, c = relayAttempt(t, p.MX)
	if time.Since(loggedIn) > window/2 {
		t.Fatalf("the relay attempt took %v after the login: too slow to test a %v window", time.Since(loggedIn), window)
	}
	checkReply(t, "RCPT right after a POP3S login", r, 250, "2.1.5")
	msgID := newMessageID(t)
	res := c.Data(message("someone@remote.test", "friend@remote.test", "pop before smtp", msgID, "relayed after a POP login\n"))
	checkReply(t, "end of DATA", res, 250, "2.0.0")
	id := queueIDOf(res.String())
	c.Cmd("QUIT")
	c.Close()
	l := p.WaitLog(t, "queued "+id, func(l logLine) bool { return l.str("msg") == "queued" && l.str("queue_id") == id })
	if l.str("origin") != "pop-before-smtp" {
		t.Errorf("queued line %v: want origin pop-before-smtp", l)
	}
	p.WaitLog(t, "decision relay.pop_before_smtp", func(l logLine) bool {
		return l.str("msg") == "decision" && l.str("rule") == "relay.pop_before_smtp"
	})

	time.Sleep(time.Until(loggedIn.Add(window + 500*time.Millisecond)))
	r, c = relayAttempt(t, p.MX)
	checkReply(t, "RCPT after the window expired", r, 554, "5.7.1")
	c.Close()

	// Local mail is unaffected throughout.
	c = dial(t, p.MX)
	c.Ehlo("client.remote.test")
	c.Expect("MAIL FROM:<someone@remote.test>", 250, "2.1.0")
	c.Expect("RCPT TO:<"+alice+">", 250, "2.1.5")
	c.Close()
}

// TestPopBeforeSMTPNotOnMXByDefault: without pop_before_smtp_on_mx, a POP
// login does not open relaying on the MX listener.
func TestPopBeforeSMTPNotOnMXByDefault(t *testing.T) {
	t.Parallel()
	p := startPOP3Server(t, map[string]string{"pop3.pop_before_smtp": `"30s"`})
	if res := pop3sLogin(t, p, alice, alicePassword); !strings.HasPrefix(res, "+OK") {
		t.Fatalf("PASS: %q", res)
	}
	r, c := relayAttempt(t, p.MX)
	checkReply(t, "RCPT on MX after a POP login (pop_before_smtp_on_mx off)", r, 554, "5.7.1")
	c.Close()
}

// listeningPorts returns the TCP ports pid listens on (from /proc).
func listeningPorts(t *testing.T, pid int) []int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		skipOrFail(t, "cannot read /proc/%d/fd: %v", pid, err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	var ports []int
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(raw), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] { // 0A: LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(fields[1], ":")
			if n, err := strconv.ParseInt(hexPort, 16, 32); err == nil {
				ports = append(ports, int(n))
			}
		}
	}
	sort.Ints(ports)
	return ports
}

func refused(a string) bool {
	c, err := net.DialTimeout("tcp", a, 2*time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// TestInitWithoutPOP3HasNoListener: law 7. A config made by `kanmon init`
// without --pop3-addr/--pop3s-addr serves no POP3: the process listens on
// exactly the four configured ports, the log names no POP3 listener, and
// the built-in POP3 defaults (127.0.0.1:2110, :2995) refuse connections.
func TestInitWithoutPOP3HasNoListener(t *testing.T) {
	t.Parallel()
	defaults := []string{"127.0.0.1:2110", "127.0.0.1:2995"}
	freeBefore := map[string]bool{}
	for _, a := range defaults {
		freeBefore[a] = refused(a)
	}
	s := startServer(t, options{})
	raw, err := os.ReadFile(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\npop3 = \"\"", "\npop3s = \"\""} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("kanmon.toml lacks %q", strings.TrimSpace(want))
		}
	}
	s.WaitLog(t, "ready", func(l logLine) bool { return l.str("msg") == "ready" })
	var listeners []string
	for _, l := range s.Logs(t) {
		if l.str("msg") == "listen" {
			listeners = append(listeners, l.str("listener"))
		}
	}
	sort.Strings(listeners)
	if want := []string{"admin", "mx", "smtps", "submission"}; !slices.Equal(listeners, want) {
		t.Errorf("listeners opened: %v, want %v", listeners, want)
	}
	var want []int
	for _, a := range []string{s.MX, s.Submission, s.SMTPS, s.Admin} {
		n, _ := strconv.Atoi(portOf(a))
		want = append(want, n)
	}
	sort.Ints(want)
	if got := listeningPorts(t, s.PID()); !slices.Equal(got, want) {
		t.Errorf("kanmon serve listens on ports %v, want exactly %v", got, want)
	}
	for _, a := range defaults {
		if !freeBefore[a] {
			t.Logf("%s was in use before the server started; not checked", a)
			continue
		}
		if !refused(a) {
			t.Errorf("%s accepts connections: a POP3 listener is running though init was not asked for one", a)
		}
	}
}
