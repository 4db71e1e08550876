package postfix

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"kanmon/internal/testutil/logbuf"
)

// Sink is a running Postfix smtp-sink: an SMTP server that accepts
// everything quickly and, here, dumps each transaction to a file.
type Sink struct {
	// Addr is the listening address, "127.0.0.1:PORT".
	Addr string
	// Dir receives one dump file per mail transaction.
	Dir string

	cmd  *exec.Cmd
	done chan struct{}
}

// StartSink runs /usr/sbin/smtp-sink on addr ("" picks a free loopback
// port; any other address must be on loopback) and stops it when the test
// ends. It skips the test when smtp-sink is missing (fails it when CI is
// "true").
func StartSink(t testing.TB, addr string) *Sink {
	t.Helper()
	if _, err := os.Stat(SinkPath); err != nil {
		missing(t, "smtp-sink is not installed ("+SinkPath+"); apt-get install postfix")
	}
	s, err := startSink(t, addr)
	if err != nil {
		t.Fatalf("smtp-sink: %v", err)
	}
	return s
}

func startSink(t testing.TB, addr string) (*Sink, error) {
	if addr == "" {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("address %q is not on loopback", addr)
	}
	dir := t.TempDir()
	dumps := filepath.Join(dir, "dump")
	if err := os.MkdirAll(dumps, 0o755); err != nil {
		return nil, err
	}
	args := []string{"-c", "-h", "sink.postfix.test", "-d", filepath.Join(dumps, "msg.")}
	if os.Geteuid() == 0 {
		// smtp-sink refuses to run as root; it drops to the postfix user
		// after binding, so that user must be able to write the dumps.
		u, err := user.Lookup("postfix")
		if err != nil {
			return nil, fmt.Errorf("smtp-sink as root needs the postfix user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, d := range []string{filepath.Dir(dir), dir} {
			if err := os.Chmod(d, 0o755); err != nil {
				return nil, err
			}
		}
		if err := os.Chown(dumps, uid, gid); err != nil {
			return nil, err
		}
		args = append(args, "-u", "postfix")
	}
	args = append(args, addr, "64")
	out := &logbuf.Buffer{}
	cmd := exec.Command(SinkPath, args...)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", SinkPath, err)
	}
	s := &Sink{Addr: addr, Dir: dumps, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(s.Stop)
	if err := waitSMTP(addr, s.done, 15*time.Second); err != nil {
		return nil, fmt.Errorf("smtp-sink on %s did not answer: %w\n%s", addr, err, out.String())
	}
	return s, nil
}

// Stop ends the sink; it is called automatically when the test ends.
func (s *Sink) Stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Messages returns the dump of every transaction received so far, in the
// smtp-sink dump format (envelope lines, then the message).
func (s *Sink) Messages() ([][]byte, error) {
	var out [][]byte
	err := filepath.WalkDir(s.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out = append(out, b)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("smtp-sink: reading dumps: %w", err)
	}
	return out, nil
}
