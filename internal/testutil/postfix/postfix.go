// Package postfix runs private Postfix instances (from the Debian
// packages) as real SMTP peers in tests: a server to audit, a receiving
// peer for delivery tests, or Postfix's smtp-sink for volume.
//
// Each instance has its own config_directory, queue_directory and
// data_directory under the test's temporary directory, listens on
// 127.0.0.1 only (port 25's role, and on request submission and smtps
// listeners, each on a free port), and runs its master process in the foreground under
// exec.Cmd ("master -c DIR -d"), so the test owns its process id and stops
// it in t.Cleanup.
// The system Postfix (/etc/postfix, /var/spool/postfix) is never started,
// stopped or written to; its read-only files (postfix-files,
// dynamicmaps.cf) are read by the Postfix programs as usual.
//
// When Postfix is not installed the calling test is skipped, or fails when
// the environment variable CI is "true", so a CI machine without the
// packages cannot pass silently.
//
// SECURITY: an instance is a real mail server. By default it delivers
// nothing: every non-local transport is "discard", DNS is disabled and
// peer names are not looked up, so even an instance configured as an open
// relay cannot send mail or DNS traffic off the machine. Tests run as
// root; the Postfix daemons drop to the "postfix" user and "postdrop"
// group that the Debian package creates, which is why the instance
// directory is made traversable (0755).
package postfix

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
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

// Paths of the Postfix programs (Debian layout).
const (
	DaemonDir   = "/usr/lib/postfix/sbin"
	MasterPath  = DaemonDir + "/master"
	PostfixPath = "/usr/sbin/postfix"
	SinkPath    = "/usr/sbin/smtp-sink"
)

// Delivery says what an instance does with mail it accepts.
type Delivery int

const (
	// Discard accepts and throws away every message (the default).
	Discard Delivery = iota
	// Maildir delivers mail for the instance's Domain (every local part) into
	// the Maildir Instance.Maildir; mail for other domains is discarded.
	Maildir
)

// Options configure an instance. The zero value is a closed server for
// the domain "postfix.test" that discards what it accepts.
type Options struct {
	// Hostname is myhostname; default "mx.postfix.test".
	Hostname string
	// Domain is the local mail domain (mydestination, or the virtual
	// mailbox domain with Maildir delivery); default "postfix.test".
	Domain string
	// MainCF is appended to the generated main.cf; later lines override
	// earlier ones, so any default can be replaced here.
	MainCF string
	// Delivery selects what happens to accepted mail.
	Delivery Delivery
	// TLS generates a CA and a certificate for Hostname, "localhost" and
	// 127.0.0.1 and configures smtpd to offer STARTTLS with it.
	TLS bool
	// MaxLifetime ends the instance by itself after this long (master -e),
	// a safety net for a test binary killed before its cleanups run;
	// default 15 minutes.
	MaxLifetime time.Duration
	// SASL enables SMTP AUTH through Cyrus SASL with the mechanisms PLAIN
	// and LOGIN and an empty password database: the server offers and
	// starts AUTH, but no credentials are valid.
	SASL bool
	// Submission adds a submission listener (RFC 6409, STARTTLS) on
	// another free port, Instance.SubmissionAddr; it needs TLS.
	Submission bool
	// SMTPS adds an implicit-TLS submission listener (RFC 8314,
	// smtpd_tls_wrappermode) on another free port, Instance.SMTPSAddr; it
	// needs TLS.
	SMTPS bool
	// SubmissionOptions are the master.cf "-o name=value" overrides of the
	// submission and smtps listeners; nil means SecureSubmission. The
	// smtps listener adds smtpd_tls_wrappermode=yes itself.
	SubmissionOptions []string
}

// SecureSubmission is the usual submission setup (Debian's master.cf
// example): TLS required before anything, AUTH offered, and mail taken
// only from authenticated clients.
var SecureSubmission = []string{
	"smtpd_tls_security_level=encrypt",
	"smtpd_sasl_auth_enable=yes",
	"smtpd_tls_auth_only=yes",
	"smtpd_client_restrictions=permit_sasl_authenticated,reject",
	"smtpd_relay_restrictions=permit_sasl_authenticated,reject",
}

// Instance is a running private Postfix.
type Instance struct {
	// Addr is the smtpd listener, "127.0.0.1:PORT".
	Addr string
	// SubmissionAddr and SMTPSAddr are the submission and smtps
	// listeners, "127.0.0.1:PORT", when Options asked for them.
	SubmissionAddr, SMTPSAddr string
	// Dir holds config/, queue/, data/ and the log file.
	Dir string
	// ConfigDir is the instance's config_directory (pass it to "postfix -c").
	ConfigDir string
	// Maildir is the delivery Maildir when Options.Delivery is Maildir.
	Maildir string
	// CACert is the PEM certificate of the CA that signed the instance's
	// certificate when Options.TLS is set.
	CACert []byte
	// CertPool trusts CACert.
	CertPool *x509.CertPool

	cmd  *exec.Cmd
	done chan struct{}
}

// Require skips the test when Postfix is not installed (fails it when CI
// is "true") and returns otherwise.
func Require(t testing.TB) {
	t.Helper()
	for _, p := range []string{MasterPath, PostfixPath} {
		if _, err := os.Stat(p); err != nil {
			missing(t, "postfix is not installed ("+p+" missing); apt-get install postfix")
		}
	}
	if _, err := user.Lookup("postfix"); err != nil {
		missing(t, "the postfix user does not exist; install the Debian postfix package")
	}
	if _, err := user.LookupGroup("postdrop"); err != nil {
		missing(t, "the postdrop group does not exist; install the Debian postfix package")
	}
	if os.Geteuid() != 0 {
		missing(t, "a private Postfix instance needs root (its master runs as root)")
	}
}

func missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// Start runs a private Postfix with opts and stops it when the test ends.
// It fails the test if the instance does not answer within 30 seconds,
// printing the instance's log.
func Start(t testing.TB, opts Options) *Instance {
	t.Helper()
	Require(t)
	if opts.Hostname == "" {
		opts.Hostname = "mx.postfix.test"
	}
	if opts.Domain == "" {
		opts.Domain = "postfix.test"
	}
	inst, err := start(t, opts)
	if err != nil {
		t.Fatalf("postfix: %v", err)
	}
	return inst
}

func start(t testing.TB, opts Options) (*Instance, error) {
	dir := t.TempDir()
	// The daemons run as the postfix user and must traverse to the queue.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			return nil, fmt.Errorf("making %s traversable: %w", d, err)
		}
	}
	pfUser, err := user.Lookup("postfix")
	if err != nil {
		return nil, err
	}
	uid, _ := strconv.Atoi(pfUser.Uid)
	gid, _ := strconv.Atoi(pfUser.Gid)
	grp, err := user.LookupGroup("postdrop")
	if err != nil {
		return nil, err
	}
	postdrop, _ := strconv.Atoi(grp.Gid)

	inst := &Instance{
		Dir:       dir,
		ConfigDir: filepath.Join(dir, "config"),
		done:      make(chan struct{}),
	}
	queue := filepath.Join(dir, "queue")
	data := filepath.Join(dir, "data")
	if err := makeDirs(queue, data, inst.ConfigDir, uid, gid, postdrop); err != nil {
		return nil, err
	}

	if (opts.Submission || opts.SMTPS) && !opts.TLS {
		return nil, fmt.Errorf("the submission and smtps listeners need Options.TLS")
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	inst.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	if opts.Submission {
		inst.SubmissionAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
	}
	if opts.SMTPS {
		inst.SMTPSAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2]))
	}

	var main bytes.Buffer
	fmt.Fprintf(&main, baseMainCF, inst.ConfigDir, queue, data, dir, opts.Hostname, opts.Domain,
		filepath.Join(dir, "maillog"))
	if opts.Delivery == Maildir {
		inst.Maildir = filepath.Join(dir, "mail", "inbox")
		if err := os.MkdirAll(filepath.Join(dir, "mail"), 0o755); err != nil {
			return nil, err
		}
		if err := os.Chown(filepath.Join(dir, "mail"), uid, gid); err != nil {
			return nil, err
		}
		fmt.Fprintf(&main, maildirMainCF, opts.Domain, filepath.Join(dir, "mail"), uid, gid)
	}
	if opts.TLS {
		if err := inst.makeCert(opts.Hostname); err != nil {
			return nil, err
		}
		fmt.Fprintf(&main, tlsMainCF, filepath.Join(inst.ConfigDir, "cert.pem"), filepath.Join(inst.ConfigDir, "key.pem"))
	}
	if opts.SASL {
		sasl := filepath.Join(inst.ConfigDir, "sasl")
		if err := os.MkdirAll(sasl, 0o755); err != nil {
			return nil, err
		}
		conf := fmt.Sprintf("pwcheck_method: auxprop\nauxprop_plugin: sasldb\nsasldb_path: %s\nmech_list: PLAIN LOGIN\n",
			filepath.Join(data, "sasldb2"))
		if err := os.WriteFile(filepath.Join(sasl, "smtpd.conf"), []byte(conf), 0o644); err != nil {
			return nil, err
		}
		fmt.Fprintf(&main, saslMainCF, sasl)
	}
	main.WriteString("\n")
	main.WriteString(opts.MainCF)
	main.WriteString("\n")
	if err := os.WriteFile(filepath.Join(inst.ConfigDir, "main.cf"), mergeMainCF(main.String()), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(inst.ConfigDir, "master.cf"), inst.masterCF(opts), 0o644); err != nil {
		return nil, err
	}
	// Touch the log so it can be read even if postlogd never starts.
	if err := os.WriteFile(filepath.Join(dir, "maillog"), nil, 0o644); err != nil {
		return nil, err
	}

	// -d keeps master in the foreground (without it, master forks and the
	// parent exits) and keeps its stderr, which is all we see before
	// postlogd runs. It goes to a file so it outlives a crashed test.
	out, err := os.Create(filepath.Join(dir, "master.out"))
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child has its own descriptor
	life := opts.MaxLifetime
	if life <= 0 {
		life = 15 * time.Minute
	}
	cmd := exec.Command(MasterPath, "-c", inst.ConfigDir, "-d", "-e", strconv.Itoa(int(life.Seconds())))
	cmd.Dir = dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "MAIL_CONFIG=" + inst.ConfigDir}
	// A process group of its own: master signals its whole group on
	// SIGTERM, which must not include the test binary. Pdeathsig (where the
	// kernel honours it) and -e stop an instance whose test binary died
	// without running its cleanups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", MasterPath, err)
	}
	inst.cmd = cmd
	go func() {
		_ = cmd.Wait()
		close(inst.done)
	}()
	t.Cleanup(inst.stop)

	if err := waitSMTP(inst.Addr, inst.done, 30*time.Second); err != nil {
		return nil, fmt.Errorf("instance on %s did not answer: %w\n%s", inst.Addr, err, inst.Log())
	}
	return inst, nil
}

// Log returns the instance's mail log so far (maillog_file), preceded by
// anything the master process wrote to its standard error.
func (i *Instance) Log() string {
	var b strings.Builder
	if out, _ := os.ReadFile(filepath.Join(i.Dir, "master.out")); len(out) > 0 {
		b.WriteString("master output:\n")
		b.Write(out)
		b.WriteString("maillog:\n")
	}
	log, _ := os.ReadFile(filepath.Join(i.Dir, "maillog"))
	b.Write(log)
	return b.String()
}

// PID returns the process id of the instance's master process.
func (i *Instance) PID() int { return i.cmd.Process.Pid }

// Stop terminates the instance and waits for its master to exit. It is
// called automatically when the test ends; calling it twice is harmless.
func (i *Instance) Stop() { i.stop() }

func (i *Instance) stop() {
	select {
	case <-i.done:
		return
	default:
	}
	pid := i.cmd.Process.Pid
	// master passes SIGTERM on to its children and exits.
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-i.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-i.done
	}
	// Children that outlived the master (they exit "at their
	// convenience"): end the process group, and wait until the listener
	// is really gone so the next test cannot reach a dying instance.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", i.Addr, 200*time.Millisecond)
		if err != nil {
			return
		}
		_ = c.Close()
	}
}

// Messages returns the contents of the messages delivered so far to
// Instance.Maildir (new/ and cur/), in no particular order.
func (i *Instance) Messages() ([][]byte, error) {
	if i.Maildir == "" {
		return nil, fmt.Errorf("postfix: instance does not deliver to a Maildir")
	}
	var out [][]byte
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(i.Maildir, sub))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("postfix: reading maildir: %w", err)
		}
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(i.Maildir, sub, e.Name()))
			if err != nil {
				return nil, fmt.Errorf("postfix: reading maildir: %w", err)
			}
			out = append(out, b)
		}
	}
	return out, nil
}

// makeDirs creates the queue layout from Debian's postfix-files.
func makeDirs(queue, data, config string, uid, gid, postdrop int) error {
	type dirSpec struct {
		path     string
		uid, gid int
		mode     os.FileMode
	}
	specs := []dirSpec{
		{config, 0, 0, 0o755},
		{queue, 0, 0, 0o755},
		{data, uid, gid, 0o700},
		{filepath.Join(queue, "pid"), 0, 0, 0o755},
		{filepath.Join(queue, "maildrop"), uid, postdrop, 0o730},
		{filepath.Join(queue, "public"), uid, postdrop, 0o710},
	}
	for _, d := range []string{"active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private", "saved", "trace"} {
		specs = append(specs, dirSpec{filepath.Join(queue, d), uid, gid, 0o700})
	}
	for _, s := range specs {
		if err := os.MkdirAll(s.path, s.mode); err != nil {
			return fmt.Errorf("creating %s: %w", s.path, err)
		}
		if err := os.Chown(s.path, s.uid, s.gid); err != nil {
			return fmt.Errorf("chown %s: %w", s.path, err)
		}
		if err := os.Chmod(s.path, s.mode); err != nil {
			return fmt.Errorf("chmod %s: %w", s.path, err)
		}
	}
	return nil
}

// makeCert writes a CA and a server certificate for host into the config
// directory.
func (i *Instance) makeCert(host string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kanmon test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
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
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host, "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	i.CACert = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), i.CACert...)
	if err := os.WriteFile(filepath.Join(i.ConfigDir, "cert.pem"), chain, 0o644); err != nil {
		return err
	}
	keyFile := filepath.Join(i.ConfigDir, "key.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	i.CertPool = x509.NewCertPool()
	i.CertPool.AddCert(ca)
	return nil
}

// freePorts asks the kernel for n distinct unused loopback TCP ports
// (all held open until every one is chosen, so none repeats).
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitSMTP waits until addr answers with a 220 greeting, the process
// exits (done closed) or the timeout passes.
func waitSMTP(addr string, done <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("master exited")
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			line, rerr := bufio.NewReader(c).ReadString('\n')
			_, _ = c.Write([]byte("QUIT\r\n"))
			_ = c.Close()
			if rerr == nil && strings.HasPrefix(line, "220") {
				return nil
			}
			last = fmt.Errorf("greeting %q: %v", line, rerr)
		} else {
			last = err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("timeout after %s: %v", timeout, last)
}

// freePort asks the kernel for an unused loopback TCP port.
func freePort() (int, error) {
	p, err := freePorts(1)
	if err != nil {
		return 0, err
	}
	return p[0], nil
}
