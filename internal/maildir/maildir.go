// Package maildir stores messages in Maildir folders (tmp, new, cur), the
// format every POP3/IMAP tool understands.
//
// Delivery writes the message into tmp/, fsyncs it, renames it into new/
// and fsyncs new/, so a message is either wholly in new/ or absent: a crash
// never leaves half a message visible to a reader. Directories it creates
// have their parent fsynced too. Writes go through an fsys.FS
// (DeliverFS), so tests can cut the power and check that a delivered
// message survives.
//
// Why our own package: no maintained Go Maildir library is served by the
// module proxy, and the part we need is small.
//
// SECURITY: names are generated here, never taken from message content or
// the client; callers pass the mailbox root, derived from a validated
// account name.
package maildir

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"kanmon/internal/fsys"
)

// Dir is the root of one Maildir (the directory holding tmp, new and cur).
type Dir string

var (
	seq      atomic.Uint64
	hostname = safeHostname()
)

func safeHostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	// '/' and ':' have meaning in Maildir names; replace them as the spec says.
	out := make([]byte, 0, len(h))
	for i := 0; i < len(h); i++ {
		switch h[i] {
		case '/':
			out = append(out, `\057`...)
		case ':':
			out = append(out, `\072`...)
		default:
			out = append(out, h[i])
		}
	}
	return string(out)
}

// Folder returns the Maildir++ folder name of d (the directory ".name"
// under it; name must not hold '/' or '.': callers pass constants).
func (d Dir) Folder(name string) Dir { return Dir(filepath.Join(string(d), "."+name)) }

// Create makes the Maildir's tmp, new and cur directories if missing.
func (d Dir) Create() error { return d.CreateFS(fsys.OS) }

// CreateFS is Create on the given file system. Each directory it makes
// is durable (its parent fsynced) when it returns.
func (d Dir) CreateFS(f fsys.FS) error {
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := fsys.MkdirAll(f, filepath.Join(string(d), sub), 0o700); err != nil {
			return fmt.Errorf("maildir: create %s: %w", d, err)
		}
	}
	if strings.HasPrefix(filepath.Base(string(d)), ".") {
		// A Maildir++ folder says so with an empty "maildirfolder" file
		// (Dovecot and Courier look for it).
		mark := filepath.Join(string(d), "maildirfolder")
		if _, err := f.Stat(mark); errors.Is(err, fs.ErrNotExist) {
			if err := fsys.WriteFile(f, mark, nil, 0o600); err != nil {
				return fmt.Errorf("maildir: create %s: %w", d, err)
			}
		}
	}
	return nil
}

// UniqueName returns a new Maildir unique name: time, microseconds, pid and
// a process-wide sequence number, then the host name.
func UniqueName() string {
	now := time.Now()
	return strconv.FormatInt(now.Unix(), 10) + ".M" + strconv.Itoa(now.Nanosecond()/1000) +
		"P" + strconv.Itoa(os.Getpid()) + "Q" + strconv.FormatUint(seq.Add(1), 10) + "." + hostname
}

// Deliver copies r into a new message in d and returns its unique name. The
// message is durable (file and directory fsynced) when Deliver returns nil.
// On error nothing is left in new/.
func (d Dir) Deliver(r io.Reader) (string, error) { return d.DeliverFS(fsys.OS, r) }

// DeliverFS is Deliver on the given file system.
func (d Dir) DeliverFS(fsy fsys.FS, r io.Reader) (string, error) {
	name := UniqueName()
	tmp := filepath.Join(string(d), "tmp", name)
	f, err := fsy.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		if err = d.CreateFS(fsy); err == nil {
			f, err = fsy.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		}
	}
	if err != nil {
		return "", fmt.Errorf("maildir: deliver to %s: %w", d, err)
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsy.Rename(tmp, filepath.Join(string(d), "new", name))
		if errors.Is(err, fs.ErrNotExist) {
			// new/ missing (a crash while the Maildir was being created):
			// complete the Maildir and try once more.
			if err = d.CreateFS(fsy); err == nil {
				err = fsy.Rename(tmp, filepath.Join(string(d), "new", name))
			}
		}
	}
	if err == nil {
		err = fsy.SyncDir(filepath.Join(string(d), "new"))
	}
	if err != nil {
		fsy.Remove(tmp)
		return "", fmt.Errorf("maildir: deliver to %s: %w", d, err)
	}
	return name, nil
}
