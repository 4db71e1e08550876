package maildir

// Reading side of a Maildir, for POP3 (and later IMAP).
//
// List moves messages from new/ to cur/ as the Maildir spec asks a reader
// to, and records each message's transmitted size in the file name the
// Maildir++ way (",W=<size>", the size with every line ending as CRLF, as
// Dovecot and Courier do), so a later listing needs no file reads. Remove
// deletes a set of messages all or nothing: it first writes the set to a
// journal in the Maildir root, and the next List finishes a removal a crash
// interrupted.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"kanmon/internal/fsys"
)

// Message is one message of a Maildir as a reader sees it.
type Message struct {
	// Key is the message's Maildir unique name: the file name up to the
	// info separator ':' and without Maildir++ attributes (",S=", ",W=").
	// It does not change while the message exists, so it is the basis of
	// the POP3 unique id (see UID).
	Key string
	// Path is the file's path when the mailbox was listed (in cur/).
	Path string
	// Size is the message size in octets as a POP3 server sends it: every
	// line ending as CRLF, plus a final CRLF when the file lacks one;
	// dot-stuffing is not counted. For a file stored with CRLF line endings
	// (what kanmon's SMTP server writes) it is the file size.
	Size int64
}

// maxUIDLen is RFC 1939's limit on a unique-id listing.
const maxUIDLen = 70

// UID returns the message's RFC 1939 unique id: the Key when it is 1 to 70
// characters in 0x21-0x7E, otherwise "h" and 32 hex digits of the Key's
// SHA-256. Either way it is the same in every session.
func (m Message) UID() string { return UID(m.Key) }

// UID maps a Maildir unique name to an RFC 1939 unique id (see Message.UID).
func UID(key string) string {
	ok := len(key) >= 1 && len(key) <= maxUIDLen
	for i := 0; ok && i < len(key); i++ {
		ok = key[i] >= 0x21 && key[i] <= 0x7e
	}
	if ok {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "h" + hex.EncodeToString(sum[:16])
}

// journalPrefix names the pending-removal journals in the Maildir root.
const journalPrefix = "kanmon-remove."

// parsedName is a file name of new/ or cur/ split into its parts.
type parsedName struct {
	key   string // unique name
	base  string // everything before ':' (key plus Maildir++ attributes)
	info  string // from ':' on, "" when absent
	vsize int64  // ",W=" attribute, -1 when absent
}

func parseName(name string) parsedName {
	p := parsedName{base: name, vsize: -1}
	if i := strings.IndexByte(name, ':'); i >= 0 {
		p.base, p.info = name[:i], name[i:]
	}
	p.key = p.base
	if i := strings.IndexByte(p.base, ','); i >= 0 {
		p.key = p.base[:i]
		for _, attr := range strings.Split(p.base[i+1:], ",") {
			if v, ok := strings.CutPrefix(attr, "W="); ok {
				if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
					p.vsize = n
				}
			}
		}
	}
	return p
}

// List returns the messages of d in delivery order. Messages in new/ are
// first moved to cur/ with ":2," info (they are no longer new once a
// client has seen the listing); a removal interrupted by a crash is
// finished first. A Maildir that does not exist yet lists as empty.
func (d Dir) List() ([]Message, error) {
	if err := d.finishRemovals(); err != nil {
		return nil, err
	}
	if err := d.adoptNew(); err != nil {
		return nil, err
	}
	cur := filepath.Join(string(d), "cur")
	entries, err := os.ReadDir(cur)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("maildir: list %s: %w", d, err)
	}
	type sorted struct {
		Message
		ord order
	}
	out := make([]sorted, 0, len(entries))
	seen := make(map[string]bool, len(entries))
	for _, e := range entries {
		name := e.Name()
		// Only regular files: a symlink planted in a mailbox must not
		// serve some other file to the client.
		if strings.HasPrefix(name, ".") || !e.Type().IsRegular() {
			continue
		}
		p := parseName(name)
		if p.key == "" || seen[p.key] {
			// Two files with one unique name break the Maildir contract;
			// list the first only, so unique ids stay unique.
			continue
		}
		path := filepath.Join(cur, name)
		if p.vsize < 0 {
			// A file not written or listed by us: measure it once and
			// record the size in its name (best effort).
			n, err := wireSizeOf(path)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("maildir: list %s: %w", d, err)
			}
			p.vsize = n
			named := filepath.Join(cur, p.base+",W="+strconv.FormatInt(n, 10)+p.info)
			if os.Rename(path, named) == nil {
				path = named
			}
		}
		ord, ok := deliveryOrder(p.key)
		if !ok {
			if info, err := os.Stat(path); err == nil {
				ord = order{sec: info.ModTime().Unix(), usec: int64(info.ModTime().Nanosecond() / 1000)}
			}
		}
		ord.key = p.key
		seen[p.key] = true
		out = append(out, sorted{Message{Key: p.key, Path: path, Size: p.vsize}, ord})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ord.less(out[j].ord) })
	msgs := make([]Message, len(out))
	for i := range out {
		msgs[i] = out[i].Message
	}
	return msgs, nil
}

// adoptNew moves every message of new/ into cur/, adding ",W=<size>" and
// ":2," to its name, then fsyncs both directories.
func (d Dir) adoptNew() error {
	newDir := filepath.Join(string(d), "new")
	entries, err := os.ReadDir(newDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("maildir: list %s: %w", d, err)
	}
	curDir := filepath.Join(string(d), "cur")
	moved := 0
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !e.Type().IsRegular() {
			continue
		}
		p := parseName(name)
		if p.key == "" {
			continue
		}
		src := filepath.Join(newDir, name)
		base := p.base
		if p.vsize < 0 {
			n, err := wireSizeOf(src)
			if errors.Is(err, fs.ErrNotExist) {
				continue // another reader moved it
			}
			if err != nil {
				return fmt.Errorf("maildir: read %s: %w", src, err)
			}
			base += ",W=" + strconv.FormatInt(n, 10)
		}
		info := p.info
		if info == "" {
			info = ":2,"
		}
		if moved == 0 {
			if err := os.MkdirAll(curDir, 0o700); err != nil {
				return fmt.Errorf("maildir: %w", err)
			}
		}
		err := os.Rename(src, filepath.Join(curDir, base+info))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("maildir: move %s to cur: %w", name, err)
		}
		moved++
	}
	if moved == 0 {
		return nil
	}
	if err := fsys.SyncDir(curDir); err != nil {
		return fmt.Errorf("maildir: sync %s: %w", curDir, err)
	}
	if err := fsys.SyncDir(newDir); err != nil {
		return fmt.Errorf("maildir: sync %s: %w", newDir, err)
	}
	return nil
}

// Open opens a listed message for reading. When the file was renamed since
// the listing (another reader changed its flags), it is found by its Key.
func (d Dir) Open(m Message) (*os.File, error) {
	f, err := os.Open(m.Path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return f, err
	}
	for _, sub := range []string{"cur", "new"} {
		entries, rerr := os.ReadDir(filepath.Join(string(d), sub))
		if rerr != nil {
			continue
		}
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), ".") && parseName(e.Name()).key == m.Key {
				return os.Open(filepath.Join(string(d), sub, e.Name()))
			}
		}
	}
	return nil, err
}

// Remove deletes the messages with the given keys, all or nothing: the set
// is first written to a journal (fsynced), then the files are unlinked and
// their directories fsynced, then the journal is dropped. If the process
// dies in between, the next List finishes the removal. Keys that no longer
// exist are ignored.
func (d Dir) Remove(keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	journal, err := d.writeJournal(keys)
	if err != nil {
		return err
	}
	if err := d.unlinkKeys(keys); err != nil {
		return err
	}
	if err := os.Remove(journal); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("maildir: drop journal: %w", err)
	}
	// Not fsyncing the root here is deliberate: a journal that reappears
	// after a crash only repeats an unlink that already happened.
	return nil
}

// writeJournal writes keys (one strconv.Quote'd key a line) to
// tmp/, fsyncs, renames it into the root and fsyncs the root.
func (d Dir) writeJournal(keys []string) (string, error) {
	var b bytes.Buffer
	for _, k := range keys {
		b.WriteString(strconv.Quote(k))
		b.WriteByte('\n')
	}
	tmpDir := filepath.Join(string(d), "tmp")
	if err := os.MkdirAll(tmpDir, 0o700); err != nil {
		return "", fmt.Errorf("maildir: remove: %w", err)
	}
	name := UniqueName()
	tmp := filepath.Join(tmpDir, name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("maildir: remove: journal: %w", err)
	}
	_, err = f.Write(b.Bytes())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	journal := filepath.Join(string(d), journalPrefix+name)
	if err == nil {
		err = os.Rename(tmp, journal)
	}
	if err == nil {
		err = fsys.SyncDir(string(d))
	}
	if err != nil {
		os.Remove(tmp)
		os.Remove(journal)
		return "", fmt.Errorf("maildir: remove: journal: %w", err)
	}
	return journal, nil
}

// unlinkKeys unlinks every file in cur/ or new/ whose key is in keys and
// fsyncs the directories it changed.
func (d Dir) unlinkKeys(keys []string) error {
	want := make(map[string]bool, len(keys))
	for _, k := range keys {
		want[k] = true
	}
	var errs []error
	for _, sub := range []string{"cur", "new"} {
		dir := filepath.Join(string(d), sub)
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		changed := false
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") || !want[parseName(e.Name()).key] {
				continue
			}
			err := os.Remove(filepath.Join(dir, e.Name()))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
				continue
			}
			changed = true
		}
		if changed {
			if err := fsys.SyncDir(dir); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("maildir: remove from %s: %w", d, err)
	}
	return nil
}

// finishRemovals applies any journal a crashed Remove left behind.
func (d Dir) finishRemovals() error {
	entries, err := os.ReadDir(string(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("maildir: list %s: %w", d, err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), journalPrefix) {
			continue
		}
		path := filepath.Join(string(d), e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("maildir: read journal: %w", err)
		}
		var keys []string
		for _, line := range strings.Split(string(data), "\n") {
			// A torn last line cannot happen (the journal is renamed into
			// place complete), but a line that does not parse is skipped
			// rather than trusted.
			if k, err := strconv.Unquote(line); err == nil && k != "" {
				keys = append(keys, k)
			}
		}
		if err := d.unlinkKeys(keys); err != nil {
			return err
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("maildir: drop journal: %w", err)
		}
	}
	return nil
}

// order sorts messages by delivery: the time and sequence in the unique
// name, or the file's modification time when the name says nothing.
type order struct {
	sec, usec, seq int64
	key            string
}

func (a order) less(b order) bool {
	switch {
	case a.sec != b.sec:
		return a.sec < b.sec
	case a.usec != b.usec:
		return a.usec < b.usec
	case a.seq != b.seq:
		return a.seq < b.seq
	}
	return a.key < b.key
}

// deliveryOrder reads "<sec>.M<usec>P<pid>Q<seq>.<host>" (the form of
// UniqueName and of Dovecot's names; older "<sec>.<pid>.<host>" names give
// the seconds only).
func deliveryOrder(key string) (order, bool) {
	secPart, rest, _ := strings.Cut(key, ".")
	sec, err := strconv.ParseInt(secPart, 10, 64)
	if err != nil || sec < 0 {
		return order{}, false
	}
	o := order{sec: sec}
	mid, _, _ := strings.Cut(rest, ".")
	o.usec = numberAfter(mid, 'M')
	o.seq = numberAfter(mid, 'Q')
	return o, true
}

// numberAfter returns the decimal number following the first c in s, or 0.
func numberAfter(s string, c byte) int64 {
	i := strings.IndexByte(s, c)
	if i < 0 {
		return 0
	}
	j := i + 1
	for j < len(s) && j-i <= 18 && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	n, _ := strconv.ParseInt(s[i+1:j], 10, 64)
	return n
}

var readBufs = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 32*1024) }}

func wireSizeOf(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return WireSize(f)
}

// WireSize returns the size of the message read from r as a POP3 server
// sends it (see Message.Size): a LF not preceded by CR counts two octets,
// and a final CRLF is added when the data does not end with LF.
func WireSize(r io.Reader) (int64, error) {
	br := readBufs.Get().(*bufio.Reader)
	br.Reset(r)
	defer func() { br.Reset(nil); readBufs.Put(br) }()
	var n int64
	var prev byte // last byte seen, 0 at the start
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			n += int64(len(chunk))
			if chunk[len(chunk)-1] == '\n' {
				var before byte
				if len(chunk) >= 2 {
					before = chunk[len(chunk)-2]
				} else {
					before = prev
				}
				if before != '\r' {
					n++
				}
			}
			prev = chunk[len(chunk)-1]
		}
		switch {
		case err == nil || err == bufio.ErrBufferFull:
			continue
		case err == io.EOF:
			if n > 0 && prev != '\n' {
				n += 2
			}
			return n, nil
		default:
			return 0, err
		}
	}
}
