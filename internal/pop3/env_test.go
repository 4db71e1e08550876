package pop3

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"kanmon/internal/testutil/logbuf"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"kanmon/internal/auth"
	"kanmon/internal/directory"
	"kanmon/internal/maildir"
)

// Test accounts. Bob's password has a space, as PASS must allow.
const (
	alice     = "alice@example.com"
	alicePass = "alice-Secret-1"
	bob       = "bob@example.com"
	bobPass   = "bob secret two"
)

var (
	hashesOnce sync.Once
	hashes     map[string]string
)

type mapStore map[string]string

func (m mapStore) PasswordHash(a string) (string, bool) { h, ok := m[a]; return h, ok }

func store(t testing.TB) mapStore {
	hashesOnce.Do(func() {
		hashes = map[string]string{}
		for u, p := range map[string]string{alice: alicePass, bob: bobPass} {
			h, err := auth.HashPassword(p)
			if err != nil {
				panic(err)
			}
			hashes[u] = h
		}
	})
	return mapStore(hashes)
}

// testCert makes a self-signed certificate for 127.0.0.1 and localhost and
// writes it (PEM) to dir for the clients to trust.
func testCert(t testing.TB, dir string) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, certFile
}

// env is a running POP3 (with STLS) and POP3S server pair over one mail
// root, as kanmon runs them.
type env struct {
	t         testing.TB
	dir       string
	root      string
	certFile  string
	tlsConfig *tls.Config
	throttle  *auth.Throttle
	auth      *auth.Authenticator
	logs      *logbuf.Buffer
	plain     *Server // pop3 role
	secure    *Server // pop3s role
	pop3Addr  string
	pop3sAddr string
	pop3Port  string
	pop3sPort string
}

type envOption func(*env, *Config)

// newEnv starts both servers on 127.0.0.1:0; they are shut down at the
// end of the test.
func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), logs: &logbuf.Buffer{}}
	e.root = filepath.Join(e.dir, "mail")
	cert, certFile := testCert(t, e.dir)
	e.certFile = certFile
	e.tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	e.throttle = auth.NewThrottle(auth.ThrottleConfig{Window: time.Minute, FreeFailures: 3, MaxFailures: 5, MaxDelay: time.Millisecond})
	e.auth = auth.New(store(t), e.throttle)
	logger := slog.New(slog.NewJSONHandler(e.logs, nil))
	base := Config{
		Hostname: "pop.example.test", TLS: e.tlsConfig, MailRoot: e.root, Auth: e.auth,
		Logger: logger, IdleTimeout: 30 * time.Second,
	}
	for _, o := range opts {
		o(e, &base)
	}
	start := func(cfg Config, name string, wrap bool) (*Server, string) {
		cfg.Listener = name
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		if wrap {
			ln = tls.NewListener(ln, e.tlsConfig)
		}
		srv := NewServer(cfg)
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ln) }()
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				t.Errorf("shutdown %s: %v", name, err)
			}
			if err := <-done; err != ErrServerClosed {
				t.Errorf("serve %s returned %v", name, err)
			}
		})
		return srv, addr
	}
	e.plain, e.pop3Addr = start(base, "pop3", false)
	e.secure, e.pop3sAddr = start(base, "pop3s", true)
	_, e.pop3Port, _ = net.SplitHostPort(e.pop3Addr)
	_, e.pop3sPort, _ = net.SplitHostPort(e.pop3sAddr)
	return e
}

func withConfig(f func(*Config)) envOption { return func(_ *env, c *Config) { f(c) } }

func (e *env) mailbox(account string) maildir.Dir {
	return maildir.Dir(directory.MailboxPath(e.root, account))
}

// deliver stores messages the way local delivery does and returns their
// unique names.
func (e *env) deliver(account string, msgs ...string) []string {
	e.t.Helper()
	var names []string
	for _, m := range msgs {
		n, err := e.mailbox(account).Deliver(strings.NewReader(m))
		if err != nil {
			e.t.Fatal(err)
		}
		names = append(names, n)
	}
	return names
}

// count returns how many messages the account's Maildir holds on disk.
func (e *env) count(account string) int {
	e.t.Helper()
	n := 0
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(string(e.mailbox(account)), sub))
		if err != nil && !os.IsNotExist(err) {
			e.t.Fatal(err)
		}
		n += len(ents)
	}
	return n
}

// logLines parses the JSON log lines written so far.
func (e *env) logLines() []map[string]any {
	e.t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			e.t.Fatalf("log line is not JSON: %q", l)
		}
		out = append(out, m)
	}
	return out
}

// needTool returns the path of a client program; missing, it fails the
// test under CI=true and skips it elsewhere.
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required (CI=true) but not installed: %v", name, err)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

// client is a minimal POP3 client for transcript tests.
type client struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	cl := &client{t: t, c: c, r: bufio.NewReader(c)}
	if g := cl.line(); !strings.HasPrefix(g, "+OK ") {
		t.Fatalf("greeting %q", g)
	}
	return cl
}

func dialTLS(t testing.TB, addr string) *client {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	cl := &client{t: t, c: c, r: bufio.NewReader(c)}
	if g := cl.line(); !strings.HasPrefix(g, "+OK ") {
		t.Fatalf("greeting %q", g)
	}
	return cl
}

func (c *client) send(raw string) {
	c.t.Helper()
	if _, err := c.c.Write([]byte(raw)); err != nil {
		c.t.Fatalf("write %q: %v", raw, err)
	}
}

// line reads one response line without CRLF ("" and an error logged as
// "<closed: ...>" when the connection ends).
func (c *client) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		return "<closed: " + err.Error() + ">" + l
	}
	return strings.TrimSuffix(l, "\r\n")
}

func (c *client) cmd(line string) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.line()
}

// must sends a command and fails the test unless the reply starts with
// prefix.
func (c *client) must(line, prefix string) string {
	c.t.Helper()
	r := c.cmd(line)
	if !strings.HasPrefix(r, prefix) {
		c.t.Fatalf("%s: got %q, want %q...", logLine([]byte(line)), r, prefix)
	}
	return r
}

// body reads a multi-line body up to "." and undoes the byte-stuffing.
func (c *client) body() []byte {
	c.t.Helper()
	var out []byte
	for {
		l, err := c.r.ReadBytes('\n')
		if err != nil {
			c.t.Fatalf("multi-line response cut: %v", err)
		}
		if string(l) == ".\r\n" {
			return out
		}
		if l[0] == '.' {
			l = l[1:]
		}
		out = append(out, l...)
	}
}

func (c *client) lines() []string {
	c.t.Helper()
	b := c.body()
	if len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\r\n"), "\r\n")
}

func (c *client) startTLS() {
	c.t.Helper()
	c.must("STLS", "+OK")
	tc := tls.Client(c.c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.c, c.r = tc, bufio.NewReader(tc)
}

func (c *client) login(user, pass string) string {
	c.t.Helper()
	c.must("USER "+user, "+OK")
	return c.must("PASS "+pass, "+OK")
}

// closed reports whether the server closed the connection.
func (c *client) closed() bool {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.r.ReadByte()
	return err != nil
}
