// Package dovecot runs private Dovecot instances (from the Debian
// packages dovecot-core, dovecot-pop3d and dovecot-imapd) as real POP3
// and IMAP servers in tests, for instance to audit.
//
// Each instance has its own configuration file, base_dir, state_dir and
// log under the test's temporary directory, listens on Host (127.0.0.2)
// only on free ports, and runs in the foreground under exec.Cmd ("dovecot -F -c
// FILE"), so the test owns its process id and stops it in t.Cleanup. The
// system Dovecot (/etc/dovecot, /run/dovecot) is never started or written
// to.
//
// When Dovecot is not installed the calling test is skipped, or fails
// when the environment variable CI is "true", so a CI machine without the
// packages cannot pass silently.
//
// SECURITY: the instance is a real server with one account from a
// passwd-file (user "alice", a random password the test never needs), on
// loopback only. It runs as root, as the Debian service does, and its
// login and internal processes drop to the "dovenull" and "dovecot" users
// the package creates.
package dovecot

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Path is the Dovecot master binary (Debian layout).
const Path = "/usr/sbin/dovecot"

// Host is the loopback address instances listen on. Not 127.0.0.1:
// Dovecot treats a client whose address equals the server's as secure and
// allows plaintext login to it whatever the configuration says; a client
// connecting to 127.0.0.2 comes from 127.0.0.1 and is judged as an
// outsider would be.
const Host = "127.0.0.2"

// Options configure an instance. The zero value is the secure setup:
// ssl = required, no login before TLS, TLS 1.2 or newer.
type Options struct {
	// Hostname is the name in the certificate; default "mail.dovecot.test".
	Hostname string
	// Config is appended to the generated configuration; a setting given
	// here overrides the generated one.
	Config string
}

// Instance is a running private Dovecot.
type Instance struct {
	// POP3, POP3S, IMAP and IMAPS are the listeners' ports on Host.
	POP3, POP3S, IMAP, IMAPS int
	// Dir holds the configuration, runtime directories and log.
	Dir string
	// CertPool trusts the CA that signed the instance's certificate.
	CertPool *x509.CertPool

	cmd  *exec.Cmd
	done chan struct{}
}

// Require skips the test when Dovecot is not installed (fails it when CI
// is "true").
func Require(t testing.TB) {
	t.Helper()
	for _, p := range []string{Path, "/usr/lib/dovecot/pop3-login", "/usr/lib/dovecot/imap-login"} {
		if _, err := os.Stat(p); err != nil {
			missing(t, "dovecot is not installed ("+p+" missing); apt-get install dovecot-core dovecot-pop3d dovecot-imapd")
		}
	}
	for _, u := range []string{"dovecot", "dovenull"} {
		if _, err := user.Lookup(u); err != nil {
			missing(t, "the "+u+" user does not exist; install the Debian dovecot-core package")
		}
	}
	if os.Geteuid() != 0 {
		missing(t, "a private Dovecot instance needs root (its master runs as root)")
	}
}

func missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// Start runs a private Dovecot with opts and stops it when the test ends.
// It fails the test if the instance does not greet within 30 seconds.
func Start(t testing.TB, opts Options) *Instance {
	t.Helper()
	Require(t)
	if opts.Hostname == "" {
		opts.Hostname = "mail.dovecot.test"
	}
	inst, err := start(t, opts)
	if err != nil {
		t.Fatalf("dovecot: %v", err)
	}
	return inst
}

func start(t testing.TB, opts Options) (*Instance, error) {
	dir := t.TempDir()
	// Login processes run as dovenull and must reach base_dir's sockets.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			return nil, fmt.Errorf("making %s traversable: %w", d, err)
		}
	}
	inst := &Instance{Dir: dir, done: make(chan struct{})}
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	inst.POP3, inst.POP3S, inst.IMAP, inst.IMAPS = ports[0], ports[1], ports[2], ports[3]
	if err := inst.makeCert(opts.Hostname); err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	var pw [12]byte
	_, _ = rand.Read(pw[:])
	passwd := "alice:{PLAIN}" + hex.EncodeToString(pw[:]) + ":65534:65534::" + filepath.Join(dir, "home", "alice") + "::\n"
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(passwd), 0o644); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(baseConfig, dir, ports[0], ports[1], ports[2], ports[3]) + "\n" + opts.Config + "\n"
	confFile := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	out, err := os.Create(filepath.Join(dir, "master.out"))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := exec.Command(Path, "-F", "-c", confFile)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	// A process group of its own, so Stop can end stray children; the
	// parent-death signal stops an instance whose test binary died.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", Path, err)
	}
	inst.cmd = cmd
	go func() {
		_ = cmd.Wait()
		close(inst.done)
	}()
	t.Cleanup(inst.Stop)
	for _, p := range []int{inst.POP3, inst.IMAP} {
		if err := waitGreeting(addr(p), inst.done, 30*time.Second); err != nil {
			return nil, fmt.Errorf("instance on port %d did not greet: %w\n%s", p, err, inst.Log())
		}
	}
	return inst, nil
}

func addr(port int) string { return net.JoinHostPort(Host, strconv.Itoa(port)) }

// Log returns what the instance logged so far.
func (i *Instance) Log() string {
	var b strings.Builder
	for _, f := range []string{"master.out", "dovecot.log"} {
		if data, _ := os.ReadFile(filepath.Join(i.Dir, f)); len(data) > 0 {
			fmt.Fprintf(&b, "%s:\n%s", f, data)
		}
	}
	return b.String()
}

// Stop terminates the instance and waits for it; calling it twice is
// harmless.
func (i *Instance) Stop() {
	select {
	case <-i.done:
		return
	default:
	}
	pid := i.cmd.Process.Pid
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-i.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-i.done
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL) // children that outlived the master
}

// freePorts asks the kernel for n unused loopback TCP ports.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", Host+":0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitGreeting waits until addr greets ("+OK" or "* OK"), the process
// exits or the timeout passes.
func waitGreeting(a string, done <-chan struct{}, timeout time.Duration) error {
	var last error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		select {
		case <-done:
			return fmt.Errorf("dovecot exited")
		default:
		}
		c, err := net.DialTimeout("tcp", a, time.Second)
		if err != nil {
			last = err
			continue
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		line, rerr := bufio.NewReader(c).ReadString('\n')
		_ = c.Close()
		if rerr == nil && (strings.HasPrefix(line, "+OK") || strings.HasPrefix(line, "* OK")) {
			return nil
		}
		last = fmt.Errorf("greeting %q: %v", line, rerr)
	}
	return fmt.Errorf("timeout after %s: %v", timeout, last)
}

// makeCert writes a CA-signed certificate for host, "localhost" and
// Host into the instance directory.
func (i *Instance) makeCert(host string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kanmon test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host},
		DNSNames: []string{host, "localhost"}, IPAddresses: []net.IP{net.ParseIP(Host)},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})...)
	if err := os.WriteFile(filepath.Join(i.Dir, "cert.pem"), chain, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(i.Dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	i.CertPool = x509.NewCertPool()
	i.CertPool.AddCert(ca)
	return nil
}

// baseConfig is the secure setup. Arguments: instance dir, then the
// pop3, pop3s, imap and imaps ports.
const baseConfig = `# generated by kanmon/internal/testutil/dovecot
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
info_log_path = %[1]s/dovecot.log
instance_name = kanmon-test-%[2]d
listen = 127.0.0.2
protocols = pop3 imap
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
ssl = required
ssl_cert = <%[1]s/cert.pem
ssl_key = <%[1]s/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
login_greeting = Ready.
mail_location = maildir:%[1]s/mail/%%u
passdb {
  driver = passwd-file
  args = %[1]s/passwd
}
userdb {
  driver = passwd-file
  args = %[1]s/passwd
}
service pop3-login {
  inet_listener pop3 {
    port = %[2]d
  }
  inet_listener pop3s {
    port = %[3]d
    ssl = yes
  }
}
service imap-login {
  inet_listener imap {
    port = %[4]d
  }
  inet_listener imaps {
    port = %[5]d
    ssl = yes
  }
}
`
