// Package e2e runs the real kanmon binary as a user would (kanmon init,
// kanmon user add, kanmon serve) on loopback and talks to it with real
// peers (swaks, curl) and a small raw SMTP client, asserting what a user
// or a peer observes: reply codes with enhanced status codes, files in
// the Maildir and the queue, log lines, metrics, exit statuses.
//
// Every test that needs a server starts its own instance on its own free
// ports, so tests run in parallel. The demo-mode test uses kanmon's fixed
// demo ports and therefore runs serially.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	domain        = "example.org"
	hostname      = "mx.example.org"
	alice         = "alice@example.org"
	alicePassword = "Alice-e2e-Secret-7741"
	// deliveryWait bounds how long a test waits for the queue worker to
	// write a message into a Maildir after the 250.
	deliveryWait = 10 * time.Second
)

// kanmonBin is the binary built once by TestMain.
var kanmonBin string

// raceBuild is true when kanmonBin was built with -race
// (KANMON_E2E_RACE=1, as .ci/run sets): memory bounds allow for the race
// detector's shadow memory.
var raceBuild = os.Getenv("KANMON_E2E_RACE") == "1"

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "kanmon-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	// Unprivileged users run the binary too (the demo mode as root).
	if err := os.Chmod(tmp, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	kanmonBin = filepath.Join(tmp, "kanmon")
	args := []string{"build", "-o", kanmonBin}
	if raceBuild {
		// Optional: run the server itself under the race detector; a race
		// report lands in the log and makes the exit status non-zero.
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "kanmon/cmd/kanmon")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: go build kanmon/cmd/kanmon:", err)
		return 1
	}
	return m.Run()
}

// skipOrFail skips the test where the environment lacks what it needs,
// but fails it under CI=true: in CI a skip would hide a law that was
// never checked.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true, so this cannot be skipped: "+format, args...)
	}
	t.Skipf(format, args...)
}

// needTool returns the path of an external tool. A missing tool fails the
// test in CI (where .ci/run installs it) and skips it elsewhere.
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (CI=true: .ci/run should have installed it)", name)
		}
		t.Skipf("%s is not installed; skipping (install it, or run .ci/run)", name)
	}
	return p
}

// ---------------------------------------------------------------------------
// Ports

var (
	portMu    sync.Mutex
	portsUsed = map[int]bool{}
)

// freePorts returns n distinct loopback ports that were free a moment ago
// and that no other test of this process was given.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	var ports []int
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		held = append(held, l)
		p := l.Addr().(*net.TCPAddr).Port
		if portsUsed[p] {
			continue
		}
		portsUsed[p] = true
		ports = append(ports, p)
	}
	return ports
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// ---------------------------------------------------------------------------
// Running kanmon commands

// runKanmon runs a kanmon command to completion and returns its combined
// output and exit status.
func runKanmon(t testing.TB, dir, stdin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kanmonBin, args...)
	cmd.Dir = dir
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		t.Fatalf("kanmon %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), 0
}

// mustKanmon runs a kanmon command that must succeed.
func mustKanmon(t testing.TB, dir, stdin string, args ...string) string {
	t.Helper()
	out, code := runKanmon(t, dir, stdin, args...)
	if code != 0 {
		t.Fatalf("kanmon %s: exit status %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// ---------------------------------------------------------------------------
// A kanmon server instance

// options change the generated kanmon.toml before the server starts.
type options struct {
	// set maps "table.key" (or "key" for the top level) to a TOML value,
	// e.g. "limits.max_recipients": "3", "trusted_networks": `["127.0.0.1/32"]`.
	set map[string]string
	// users are created (password alicePassword) besides alice.
	users []string
	// wrap runs kanmon serve under another program (e.g. strace -f -o
	// FILE): the command line is wrap, then the kanmon binary and its
	// arguments. Signals still go to kanmon itself.
	wrap []string
}

// server is one kanmon configuration directory and, when running, its
// `kanmon serve` process.
type server struct {
	Dir                          string // directory holding kanmon.toml
	Config                       string // path of kanmon.toml ("" runs the demo mode)
	MX, Submission, SMTPS, Admin string // listener addresses
	LogPath                      string // serve's stderr (JSON log lines), appended over restarts
	StdoutPath                   string
	wrap                         []string
	// Cred, when set, runs kanmon serve as that user (root starting a
	// server that must not be root, as in the demo mode).
	Cred *syscall.Credential

	mu   sync.Mutex
	proc *process
}

type process struct {
	cmd    *exec.Cmd
	pid    int // kanmon's own pid: cmd's, or its child's under a wrapper
	done   chan struct{}
	err    error // from Wait
	killed bool  // SIGKILLed on purpose by a test
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// startServer sets up a configuration directory exactly as the README
// says (kanmon init, edits, kanmon user add, kanmon alias add), starts
// kanmon serve and waits for the MX greeting. The server is stopped with
// SIGTERM at the end of the test, which must give exit status 0.
func startServer(t *testing.T, o options) *server {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s := setupServer(t, o)
		err := s.start(t)
		if err == nil {
			t.Cleanup(func() {
				s.Stop(t)
				s.checkNoRace(t)
			})
			return s
		}
		lastErr = err
		if !errors.Is(err, errPortInUse) {
			break
		}
		t.Logf("attempt %d: a port was taken between picking and binding it; retrying with new ports", attempt+1)
	}
	t.Fatalf("starting kanmon: %v", lastErr)
	return nil
}

// checkNoRace fails the test when the server's log holds a race report
// (a binary built with -race, as under CI): a test that ends the server
// with SIGKILL never sees the exit status that would say so.
func (s *server) checkNoRace(t testing.TB) {
	t.Helper()
	raw, err := os.ReadFile(s.LogPath)
	if err != nil {
		t.Errorf("reading %s: %v", s.LogPath, err)
		return
	}
	if i := bytes.Index(raw, []byte("WARNING: DATA RACE")); i >= 0 {
		end := min(len(raw), i+4000)
		t.Errorf("the server reported a data race:\n%s", raw[i:end])
	}
}

// setupServer creates a configuration directory without starting anything.
func setupServer(t *testing.T, o options) *server {
	t.Helper()
	dir := t.TempDir()
	ports := freePorts(t, 4)
	s := &server{
		Dir: dir, Config: filepath.Join(dir, "kanmon.toml"),
		MX: addr(ports[0]), Submission: addr(ports[1]), SMTPS: addr(ports[2]), Admin: addr(ports[3]),
		LogPath: filepath.Join(dir, "serve.log"), StdoutPath: filepath.Join(dir, "serve.out"),
		wrap: o.wrap,
	}
	mustKanmon(t, dir, "", "init", "--dir", dir, "--domain", domain, "--hostname", hostname,
		"--mx-addr", s.MX, "--submission-addr", s.Submission, "--smtps-addr", s.SMTPS, "--admin-addr", s.Admin)
	// Remote delivery must never leave the machine: unless a test says
	// otherwise, DNS goes to a loopback port where nothing answers, so
	// mail for remote.test and the like stays queued (DNS is temporary).
	set := map[string]string{"dns.server": `"127.0.0.1:1"`}
	for k, v := range inboundOff { // inbound_test.go: tests not about the inbound checks
		set[k] = v
	}
	for k, v := range o.set {
		set[k] = v
	}
	editConfig(t, s.Config, set)
	s.AddUser(t, alice)
	mustKanmon(t, dir, "", "alias", "add", "postmaster@"+domain, alice, "--config", s.Config)
	for _, u := range o.users {
		s.AddUser(t, u)
	}
	return s
}

// AddUser runs `kanmon user add ADDRESS --password-stdin` (password alicePassword).
func (s *server) AddUser(t testing.TB, address string) {
	t.Helper()
	out := mustKanmon(t, s.Dir, alicePassword+"\n", "user", "add", address, "--config", s.Config, "--password-stdin")
	if strings.Contains(out, alicePassword) {
		t.Errorf("kanmon user add echoed the password: %q", out)
	}
}

// editConfig sets keys in a kanmon.toml written by kanmon init, replacing
// the line that sets each key in its table.
func editConfig(t testing.TB, path string, set map[string]string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	done := map[string]bool{}
	lines := strings.Split(string(raw), "\n")
	if _, ok := set["run_as"]; !ok && os.Geteuid() == 0 && strings.Contains(string(raw), "\nrun_as = \"\"\n") {
		// Test machines run as root, and kanmon refuses root unless
		// run_as says so; TestServesAsRunAs covers the real drop.
		set = maps.Clone(set)
		set["run_as"] = `"root"`
	}
	table := ""
	for i, line := range lines {
		tr := strings.TrimSpace(line)
		if strings.HasPrefix(tr, "[") && strings.HasSuffix(tr, "]") {
			table = strings.Trim(tr, "[] ")
			continue
		}
		k, _, ok := strings.Cut(tr, "=")
		if !ok || strings.HasPrefix(tr, "#") {
			continue
		}
		full := strings.TrimSpace(k)
		if table != "" {
			full = table + "." + full
		}
		if v, ok := set[full]; ok {
			lines[i] = strings.TrimSpace(k) + " = " + v
			done[full] = true
		}
	}
	for k := range set {
		if !done[k] {
			t.Fatalf("editConfig: %s is not in the kanmon init template %s", k, path)
		}
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o640); err != nil {
		t.Fatal(err)
	}
}

var errPortInUse = errors.New("address already in use")

// start runs kanmon serve and waits until the MX port greets with 220.
func (s *server) start(t testing.TB) error {
	t.Helper()
	logf, err := os.OpenFile(s.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	outf, err := os.OpenFile(s.StdoutPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer outf.Close()
	logStart, _ := logf.Seek(0, io.SeekEnd)
	args := []string{"serve"}
	if s.Config != "" {
		args = append(args, "--config", s.Config)
	}
	cmd := exec.Command(kanmonBin, args...)
	if len(s.wrap) > 0 {
		cmd = exec.Command(s.wrap[0], append(append(s.wrap[1:len(s.wrap):len(s.wrap)], kanmonBin), args...)...)
	}
	cmd.Dir = s.Dir
	cmd.Stderr = logf
	cmd.Stdout = outf
	if s.Cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.Cred}
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &process{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()

	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if p.exited() {
			raw, _ := os.ReadFile(s.LogPath)
			if int64(len(raw)) > logStart {
				raw = raw[logStart:]
			}
			if bytes.Contains(raw, []byte("address already in use")) {
				return fmt.Errorf("%w: %s", errPortInUse, raw)
			}
			return fmt.Errorf("kanmon serve exited early (%v):\n%s", p.err, raw)
		}
		if greeting(s.MX) {
			if len(s.wrap) == 0 {
				return nil
			}
			err := s.findWrapped(p)
			if err != nil {
				// SIGTERM, not SIGKILL: a killed strace would leave kanmon
				// running detached, while a terminated one kills it.
				syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
				<-p.done
			}
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	sig := syscall.SIGKILL
	if len(s.wrap) > 0 {
		sig = syscall.SIGTERM // see above
	}
	syscall.Kill(cmd.Process.Pid, sig)
	<-p.done
	return fmt.Errorf("kanmon serve did not greet on %s within 15s", s.MX)
}

// findWrapped sets p.pid to the wrapper's one child, kanmon serve, so
// signals reach the server and not the wrapper (strace, for one, kills
// its tracee on SIGTERM).
func (s *server) findWrapped(p *process) error {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p.pid, p.pid))
	if err != nil {
		return fmt.Errorf("children of wrapper %d: %w", p.pid, err)
	}
	f := strings.Fields(string(raw))
	if len(f) != 1 {
		return fmt.Errorf("wrapper %d has children %q, want kanmon alone", p.pid, f)
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil {
		return fmt.Errorf("children of wrapper %d: %w", p.pid, err)
	}
	s.mu.Lock()
	p.pid = pid
	s.mu.Unlock()
	return nil
}

// greeting reports whether addr answers with a 220 greeting.
func greeting(a string) bool {
	c, err := net.DialTimeout("tcp", a, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "220 ") {
		return false
	}
	// Wait for the server to end this session, so the probe does not
	// count against the per-address connection limit of the test.
	c.Write([]byte("QUIT\r\n"))
	io.Copy(io.Discard, c)
	return true
}

// waitNoSessions waits until the server reports no open SMTP session
// (kanmon_connections_active), so a test of the per-address limit starts
// from zero. The gauge drops just before the slot is released, hence the
// short grace period.
func (s *server) waitNoSessions(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get("http://" + s.Admin + "/metrics")
		if err != nil {
			t.Fatalf("GET /metrics: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var busy []string
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "kanmon_connections_active{") && !strings.HasSuffix(line, " 0") {
				busy = append(busy, line)
			}
		}
		if len(busy) == 0 {
			time.Sleep(50 * time.Millisecond)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessions still open after 5s: %v", busy)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Start starts kanmon serve again (after Stop or Kill).
func (s *server) Start(t testing.TB) {
	t.Helper()
	if err := s.start(t); err != nil {
		t.Fatalf("restarting kanmon: %v", err)
	}
}

// PID returns the running server's process id.
func (s *server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc.pid
}

// Signal sends sig to the server process by its PID.
func (s *server) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(s.PID(), sig); err != nil {
		t.Fatalf("kill -%d %d: %v", sig, s.PID(), err)
	}
}

// Running reports whether the server process is still alive.
func (s *server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && !s.proc.exited()
}

// WaitExit waits for the server process to end and returns its exit status.
func (s *server) WaitExit(t testing.TB, timeout time.Duration) int {
	t.Helper()
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	select {
	case <-p.done:
	case <-time.After(timeout):
		syscall.Kill(p.pid, syscall.SIGKILL)
		<-p.done
		t.Errorf("kanmon serve (pid %d) did not exit within %s; killed it\n%s", p.pid, timeout, s.LogTail(20))
	}
	return p.cmd.ProcessState.ExitCode()
}

// Stop sends SIGTERM and asserts a clean exit (status 0). It does nothing
// when the process is not running (already stopped, or killed on purpose).
func (s *server) Stop(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil || p.exited() {
		if p != nil && !p.killed && p.cmd.ProcessState.ExitCode() != 0 {
			t.Errorf("kanmon serve had exited with status %d\n%s", p.cmd.ProcessState.ExitCode(), s.LogTail(20))
		}
		return
	}
	syscall.Kill(p.pid, syscall.SIGTERM)
	if code := s.WaitExit(t, 40*time.Second); code != 0 {
		t.Errorf("kanmon serve exited with status %d after SIGTERM, want 0\n%s", code, s.LogTail(20))
	}
}

// Kill sends SIGKILL (a crash) and waits for the process to be gone.
func (s *server) Kill(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	p := s.proc
	p.killed = true
	s.mu.Unlock()
	syscall.Kill(p.pid, syscall.SIGKILL)
	<-p.done
}

// Maildir returns the new/ directory of an account's Maildir.
func (s *server) Maildir(account string) string {
	local, dom, _ := strings.Cut(account, "@")
	return filepath.Join(s.Dir, "data", "mail", dom, local, "new")
}

// QueueMsg returns the path of a queued message.
func (s *server) QueueMsg(id string) string {
	return filepath.Join(s.Dir, "data", "queue", "msg", id)
}

// QueueIDs lists the messages in the queue.
func (s *server) QueueIDs(t testing.TB) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(s.Dir, "data", "queue", "msg"))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range ents {
		ids = append(ids, e.Name())
	}
	return ids
}

// ---------------------------------------------------------------------------
// Logs

// logLine is one JSON log line.
type logLine map[string]any

func (l logLine) str(k string) string {
	v, _ := l[k].(string)
	return v
}

// LogRaw returns the whole log file.
func (s *server) LogRaw(t testing.TB) string {
	t.Helper()
	raw, err := os.ReadFile(s.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// Logs parses the log file; a line that is not JSON fails the test.
func (s *server) Logs(t testing.TB) []logLine {
	t.Helper()
	var out []logLine
	for i, line := range strings.Split(s.LogRaw(t), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var l logLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Errorf("log line %d is not JSON: %q", i+1, line)
			continue
		}
		out = append(out, l)
	}
	return out
}

// WaitLog waits (logs are flushed every 100 ms) for a line matching match.
func (s *server) WaitLog(t testing.TB, what string, match func(logLine) bool) logLine {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, l := range s.Logs(t) {
			if match(l) {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line %s within 5s; log tail:\n%s", what, s.LogTail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// LogTail returns the last n lines of the log for failure messages.
func (s *server) LogTail(n int) string {
	raw, _ := os.ReadFile(s.LogPath)
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ---------------------------------------------------------------------------
// A small raw SMTP client: what it writes goes on the wire verbatim.

type reply struct {
	Code     int
	Enhanced string   // enhanced status code of the last line, "" if none
	Lines    []string // every line as received, without CRLF
}

func (r reply) String() string { return strings.Join(r.Lines, " | ") }

// Text is the text of all lines, without codes.
func (r reply) Text() string {
	var b []string
	for _, l := range r.Lines {
		if len(l) > 4 {
			b = append(b, l[4:])
		}
	}
	return strings.Join(b, "\n")
}

var connIDRE = regexp.MustCompile(`\[(c[0-9a-z]+)\]`)

// ConnID is the connection id a rejection carries at its end ("[c...]").
func (r reply) ConnID() string {
	m := connIDRE.FindStringSubmatch(r.String())
	if m == nil {
		return ""
	}
	return m[1]
}

var enhancedRE = regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3}$`)

type client struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
	// Greeting is the 220 banner (when dial read it).
	Greeting reply
}

// dial connects and reads the greeting, which must be 220.
func dial(t testing.TB, a string) *client {
	t.Helper()
	c := dialNoGreeting(t, a)
	g, err := c.Read()
	if err != nil {
		t.Fatalf("%s: reading greeting: %v", a, err)
	}
	if g.Code != 220 {
		t.Fatalf("%s: greeting %q, want 220", a, g)
	}
	c.Greeting = g
	return c
}

// dialNoGreeting connects without reading anything.
func dialNoGreeting(t testing.TB, a string) *client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", a, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", a, err)
	}
	c := &client{t: t, conn: nc, r: bufio.NewReader(nc)}
	t.Cleanup(func() { nc.Close() })
	return c
}

// dialTLS connects with implicit TLS (smtps) and reads the greeting.
func dialTLS(t testing.TB, a string) *client {
	t.Helper()
	nc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", a,
		&tls.Config{InsecureSkipVerify: true, ServerName: hostname})
	if err != nil {
		t.Fatalf("tls dial %s: %v", a, err)
	}
	c := &client{t: t, conn: nc, r: bufio.NewReader(nc)}
	t.Cleanup(func() { nc.Close() })
	g, err := c.Read()
	if err != nil || g.Code != 220 {
		t.Fatalf("%s: greeting %q (%v), want 220", a, g, err)
	}
	c.Greeting = g
	return c
}

func (c *client) Close() { c.conn.Close() }

// Write sends raw bytes.
func (c *client) Write(s string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write %.60q: %v", s, err)
	}
}

// Read reads one (possibly multi-line) reply.
func (c *client) Read() (reply, error) {
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var r reply
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			if line != "" {
				r.Lines = append(r.Lines, line)
			}
			return r, err
		}
		line = strings.TrimRight(line, "\r\n")
		r.Lines = append(r.Lines, line)
		if len(line) < 3 {
			return r, fmt.Errorf("short reply line %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			return r, fmt.Errorf("bad reply line %q", line)
		}
		if len(line) > 3 && line[3] == '-' {
			continue
		}
		r.Code = code
		if f := strings.Fields(line[3:]); len(f) > 0 && enhancedRE.MatchString(f[0]) {
			r.Enhanced = f[0]
		}
		return r, nil
	}
}

// MustRead reads a reply; an I/O error fails the test.
func (c *client) MustRead() reply {
	c.t.Helper()
	r, err := c.Read()
	if err != nil {
		c.t.Fatalf("reading reply: %v (got %q)", err, r)
	}
	return r
}

// Cmd sends one command line (CRLF added) and reads the reply.
func (c *client) Cmd(line string) reply {
	c.t.Helper()
	c.Write(line + "\r\n")
	return c.MustRead()
}

// Expect sends a command and fails the test unless the reply has the
// given code and enhanced status code (enh "" means: no enhanced code).
func (c *client) Expect(line string, code int, enh string) reply {
	c.t.Helper()
	r := c.Cmd(line)
	checkReply(c.t, line, r, code, enh)
	return r
}

// ExpectReply reads a reply (after raw writes) and checks it.
func (c *client) ExpectReply(what string, code int, enh string) reply {
	c.t.Helper()
	r := c.MustRead()
	checkReply(c.t, what, r, code, enh)
	return r
}

func checkReply(t testing.TB, what string, r reply, code int, enh string) {
	t.Helper()
	if r.Code != code || r.Enhanced != enh {
		t.Fatalf("%.80q: got %q, want %d %s", what, r, code, enh)
	}
}

// ExpectClosed fails unless the server closes the connection (EOF or
// reset) without sending anything more.
func (c *client) ExpectClosed(what string) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := c.r.ReadByte()
	if err == nil {
		rest, _ := c.r.ReadString('\n')
		c.t.Fatalf("%s: connection still open, server sent %q", what, string(b)+rest)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("%s: connection still open after 5s", what)
	}
}

// StartTLS runs STARTTLS and the TLS handshake.
func (c *client) StartTLS() {
	c.t.Helper()
	c.Expect("STARTTLS", 220, "2.0.0")
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true, ServerName: hostname})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	tc.SetDeadline(time.Time{})
	c.conn = tc
	c.r = bufio.NewReader(tc)
}

// Ehlo sends EHLO and requires 250.
func (c *client) Ehlo(name string) reply {
	c.t.Helper()
	return c.Expect("EHLO "+name, 250, "")
}

// Data sends DATA, the message (already CRLF and dot-stuffed as needed)
// and the end marker, and returns the final reply.
func (c *client) Data(msg string) reply {
	c.t.Helper()
	c.Expect("DATA", 354, "")
	c.Write(msg + "\r\n.\r\n")
	return c.MustRead()
}

var queuedRE = regexp.MustCompile(`queued as (q[0-9a-z]+)`)

// queueIDOf returns the queue id from "250 2.0.0 OK queued as q...".
func queueIDOf(s string) string {
	m := queuedRE.FindStringSubmatch(s)
	if m == nil {
		return ""
	}
	return m[1]
}

// sendMail runs one whole transaction on the MX port (EHLO, MAIL, RCPT,
// DATA) and returns the queue id of the accepted message.
func sendMail(t testing.TB, a, from string, rcpts []string, msg string) string {
	t.Helper()
	id, err := trySendMail(a, from, rcpts, msg)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// trySendMail is sendMail for goroutines other than the test's: it
// returns an error instead of failing the test.
func trySendMail(a, from string, rcpts []string, msg string) (string, error) {
	nc, err := net.DialTimeout("tcp", a, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(nc)
	c := &client{conn: nc, r: br}
	step := func(line string, code int, enh string) (reply, error) {
		if line != "" {
			if _, err := io.WriteString(nc, line+"\r\n"); err != nil {
				return reply{}, err
			}
		}
		r, err := c.Read()
		if err != nil {
			return r, fmt.Errorf("%.60q: %v (got %q)", line, err, r)
		}
		if r.Code != code || r.Enhanced != enh {
			return r, fmt.Errorf("%.60q: got %q, want %d %s", line, r, code, enh)
		}
		return r, nil
	}
	if _, err := step("", 220, ""); err != nil {
		return "", err
	}
	if _, err := step("EHLO client.remote.test", 250, ""); err != nil {
		return "", err
	}
	if _, err := step("MAIL FROM:<"+from+">", 250, "2.1.0"); err != nil {
		return "", err
	}
	for _, r := range rcpts {
		if _, err := step("RCPT TO:<"+r+">", 250, "2.1.5"); err != nil {
			return "", err
		}
	}
	if _, err := step("DATA", 354, ""); err != nil {
		return "", err
	}
	r, err := step(msg+"\r\n.", 250, "2.0.0")
	if err != nil {
		return "", fmt.Errorf("end of DATA: %w", err)
	}
	id := queueIDOf(r.String())
	if id == "" {
		return "", fmt.Errorf("250 without a queue id: %q", r)
	}
	if _, err := step("QUIT", 221, "2.0.0"); err != nil {
		return "", err
	}
	return id, nil
}

var msgSeq struct {
	sync.Mutex
	n int
}

// newMessageID returns a unique Message-Id for one test message.
func newMessageID(t testing.TB) string {
	msgSeq.Lock()
	msgSeq.n++
	n := msgSeq.n
	msgSeq.Unlock()
	name := strings.NewReplacer("/", ".", " ", "_").Replace(t.Name())
	return fmt.Sprintf("<%s.%d.%d@e2e.remote.test>", name, time.Now().UnixNano(), n)
}

// message builds a small message with CRLF line ends.
func message(from, to, subject, msgID, body string) string {
	h := "From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject + "\r\nMessage-Id: " + msgID +
		"\r\nDate: " + time.Now().Format(time.RFC1123Z) + "\r\n\r\n"
	return h + strings.ReplaceAll(body, "\n", "\r\n")
}

// ---------------------------------------------------------------------------
// Maildir

// waitMaildir waits until a message containing want is in dir and returns
// its content.
func waitMaildir(t testing.TB, dir, want string) string {
	t.Helper()
	deadline := time.Now().Add(deliveryWait)
	for {
		if got := maildirFind(dir, want); len(got) > 0 {
			return got[0]
		}
		if time.Now().After(deadline) {
			names, _ := os.ReadDir(dir)
			t.Fatalf("no message containing %q in %s within %s (%d files there)", want, dir, deliveryWait, len(names))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// maildirFind returns the contents of the messages in dir that contain want.
func maildirFind(dir, want string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err == nil && strings.Contains(string(b), want) {
			out = append(out, string(b))
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// swaks and curl

// swaks runs swaks and returns its transcript and exit status.
func swaks(t testing.TB, args ...string) (string, int) {
	t.Helper()
	bin := needTool(t, "swaks")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--timeout", "20", "--helo", "client.remote.test"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	return string(out), 0
}

// swaksReplyRE matches a server reply line in a swaks transcript: "<-  ",
// "<~  " (over TLS), "<** " or "<~* " (an error reply).
var swaksReplyRE = regexp.MustCompile(`(?m)^<[-~*][ *]\s*([0-9]{3})([ -])(.*)$`)

// swaksReplies returns the final line of each server reply in a transcript.
func swaksReplies(out string) []reply {
	var rs []reply
	for _, m := range swaksReplyRE.FindAllStringSubmatch(out, -1) {
		if m[2] == "-" {
			continue
		}
		code, _ := strconv.Atoi(m[1])
		r := reply{Code: code, Lines: []string{m[1] + " " + m[3]}}
		if f := strings.Fields(m[3]); len(f) > 0 && enhancedRE.MatchString(f[0]) {
			r.Enhanced = f[0]
		}
		rs = append(rs, r)
	}
	return rs
}

// hasReply reports whether a transcript has a reply with code and enh.
func hasReply(rs []reply, code int, enh string) bool {
	for _, r := range rs {
		if r.Code == code && r.Enhanced == enh {
			return true
		}
	}
	return false
}

// curl runs curl and returns its combined output and exit status.
func curl(t testing.TB, args ...string) (string, int) {
	t.Helper()
	bin := needTool(t, "curl")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--max-time", "30", "-sS"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		t.Fatalf("curl: %v\n%s", err, out)
	}
	return string(out), 0
}
