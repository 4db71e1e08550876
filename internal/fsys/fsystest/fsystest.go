// Package fsystest is an in-memory fsys.FS that can lose power: PowerLoss
// throws away every file's data written since its last Sync and every
// directory entry created, renamed or removed since its directory's last
// SyncDir, as a disk cache would at a power cut. A store that survives
// PowerLoss after each acknowledgement really fsyncs what it promises.
//
// SECURITY: for tests only; it holds everything in memory, unbounded.
package fsystest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"kanmon/internal/fsys"
)

// FS is the in-memory file system. The zero value is not usable: call New.
type FS struct {
	mu   sync.Mutex
	root *node
	// Syncs counts File.Sync and SyncDir calls, for tests that want to
	// see that a path was taken at all.
	Syncs int
}

// node is a file or a directory. live is what the running system sees;
// durable is what a power loss leaves.
type node struct {
	dir         bool
	mode        fs.FileMode
	mtime       time.Time
	data, dData []byte
	ents, dEnts map[string]*node
}

func newDir(perm fs.FileMode) *node {
	return &node{dir: true, mode: fs.ModeDir | perm, mtime: time.Now(), ents: map[string]*node{}, dEnts: map[string]*node{}}
}

// New returns an empty file system whose root directory is durable.
func New() *FS { return &FS{root: newDir(0o755)} }

var _ fsys.FS = (*FS)(nil)

// PowerLoss forgets everything not fsynced. Files opened before it keep
// working on the nodes they had, as after a reboot nothing would hold
// them: callers reopen what they need.
func (f *FS) PowerLoss() {
	f.mu.Lock()
	defer f.mu.Unlock()
	var revert func(n *node)
	revert = func(n *node) {
		if !n.dir {
			n.data = bytes.Clone(n.dData)
			return
		}
		n.ents = make(map[string]*node, len(n.dEnts))
		for k, c := range n.dEnts {
			n.ents[k] = c
			revert(c)
		}
	}
	revert(f.root)
}

func split(name string) []string {
	name = path.Clean(filepath.ToSlash(name))
	name = strings.TrimPrefix(name, "/")
	if name == "" || name == "." {
		return nil
	}
	return strings.Split(name, "/")
}

// lookup returns the node at name (live view), or an error of fs.ErrNotExist.
func (f *FS) lookup(op, name string) (*node, error) {
	n := f.root
	for _, p := range split(name) {
		if !n.dir {
			return nil, &fs.PathError{Op: op, Path: name, Err: errors.New("not a directory")}
		}
		c, ok := n.ents[p]
		if !ok {
			return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		n = c
	}
	return n, nil
}

// parent returns the directory holding name and name's last element.
func (f *FS) parent(op, name string) (*node, string, error) {
	parts := split(name)
	if len(parts) == 0 {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	d, err := f.lookup(op, strings.Join(parts[:len(parts)-1], "/"))
	if err != nil {
		return nil, "", err
	}
	if !d.dir {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: errors.New("not a directory")}
	}
	return d, parts[len(parts)-1], nil
}

// OpenFile implements fsys.FS for O_RDONLY, O_WRONLY, O_RDWR with
// O_CREATE, O_EXCL, O_TRUNC and O_APPEND.
func (f *FS) OpenFile(name string, flag int, perm fs.FileMode) (fsys.File, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, base, err := f.parent("open", name)
	if err != nil {
		return nil, err
	}
	n, ok := d.ents[base]
	switch {
	case ok && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrExist}
	case ok && n.dir && flag&(os.O_WRONLY|os.O_RDWR) != 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: errors.New("is a directory")}
	case !ok && flag&os.O_CREATE == 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	case !ok:
		n = &node{mode: perm, mtime: time.Now()}
		d.ents[base] = n
	}
	if flag&os.O_TRUNC != 0 {
		n.data = nil
	}
	h := &file{fs: f, n: n, name: name, write: flag&(os.O_WRONLY|os.O_RDWR) != 0}
	if flag&os.O_APPEND != 0 {
		h.off = int64(len(n.data))
	}
	return h, nil
}

// Rename implements fsys.FS: the entry moves in the live view only.
func (f *FS) Rename(oldpath, newpath string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	od, ob, err := f.parent("rename", oldpath)
	if err != nil {
		return err
	}
	n, ok := od.ents[ob]
	if !ok {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: fs.ErrNotExist}
	}
	nd, nb, err := f.parent("rename", newpath)
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: fs.ErrNotExist}
	}
	delete(od.ents, ob)
	nd.ents[nb] = n
	return nil
}

// Remove implements fsys.FS.
func (f *FS) Remove(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, base, err := f.parent("remove", name)
	if err != nil {
		return err
	}
	n, ok := d.ents[base]
	if !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	if n.dir && len(n.ents) > 0 {
		return &fs.PathError{Op: "remove", Path: name, Err: errors.New("directory not empty")}
	}
	delete(d.ents, base)
	return nil
}

// Mkdir implements fsys.FS. The new directory's own (empty) entry list is
// durable; its name in the parent is not until SyncDir of the parent.
func (f *FS) Mkdir(name string, perm fs.FileMode) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, base, err := f.parent("mkdir", name)
	if err != nil {
		return err
	}
	if _, ok := d.ents[base]; ok {
		return &fs.PathError{Op: "mkdir", Path: name, Err: fs.ErrExist}
	}
	d.ents[base] = newDir(perm)
	return nil
}

// ReadDir implements fsys.FS.
func (f *FS) ReadDir(name string) ([]fs.DirEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.lookup("readdir", name)
	if err != nil {
		return nil, err
	}
	if !d.dir {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	out := make([]fs.DirEntry, 0, len(d.ents))
	for k, c := range d.ents {
		out = append(out, fs.FileInfoToDirEntry(info{name: k, n: c, size: int64(len(c.data))}))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out, nil
}

// Stat implements fsys.FS.
func (f *FS) Stat(name string) (fs.FileInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.lookup("stat", name)
	if err != nil {
		return nil, err
	}
	return info{name: path.Base(filepath.ToSlash(name)), n: n, size: int64(len(n.data))}, nil
}

// SyncDir implements fsys.FS: the directory's live entries become durable.
func (f *FS) SyncDir(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.lookup("fsync", name)
	if err != nil {
		return err
	}
	if !d.dir {
		return &fs.PathError{Op: "fsync", Path: name, Err: errors.New("not a directory")}
	}
	d.dEnts = make(map[string]*node, len(d.ents))
	for k, c := range d.ents {
		d.dEnts[k] = c
	}
	f.Syncs++
	return nil
}

// Dump lists every file reachable in the live view with its size, for
// failure messages.
func (f *FS) Dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	var walk func(p string, n *node)
	walk = func(p string, n *node) {
		names := make([]string, 0, len(n.ents))
		for k := range n.ents {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			c := n.ents[k]
			if c.dir {
				walk(p+"/"+k, c)
			} else {
				fmt.Fprintf(&b, "%s/%s %d (durable %d)\n", p, k, len(c.data), len(c.dData))
			}
		}
	}
	walk("", f.root)
	return b.String()
}

type info struct {
	name string
	n    *node
	size int64
}

func (i info) Name() string       { return i.name }
func (i info) Size() int64        { return i.size }
func (i info) Mode() fs.FileMode  { return i.n.mode }
func (i info) ModTime() time.Time { return i.n.mtime }
func (i info) IsDir() bool        { return i.n.dir }
func (i info) Sys() any           { return nil }

// file is an open handle on a node.
type file struct {
	fs     *FS
	n      *node
	name   string
	off    int64
	write  bool
	closed bool
}

func (h *file) Read(p []byte) (int, error) {
	n, err := h.ReadAt(p, h.off)
	h.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (h *file) ReadAt(p []byte, off int64) (int, error) {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if h.closed {
		return 0, fs.ErrClosed
	}
	if off >= int64(len(h.n.data)) {
		return 0, io.EOF
	}
	n := copy(p, h.n.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (h *file) Write(p []byte) (int, error) {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if h.closed {
		return 0, fs.ErrClosed
	}
	if !h.write {
		return 0, &fs.PathError{Op: "write", Path: h.name, Err: errors.New("bad file descriptor")}
	}
	end := h.off + int64(len(p))
	if end > int64(len(h.n.data)) {
		h.n.data = append(h.n.data, make([]byte, end-int64(len(h.n.data)))...)
	}
	copy(h.n.data[h.off:], p)
	h.off = end
	return len(p), nil
}

func (h *file) Sync() error {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if h.closed {
		return fs.ErrClosed
	}
	h.n.dData = bytes.Clone(h.n.data)
	h.fs.Syncs++
	return nil
}

func (h *file) Close() error {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if h.closed {
		return fs.ErrClosed
	}
	h.closed = true
	return nil
}

func (h *file) Stat() (fs.FileInfo, error) {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	return info{name: path.Base(filepath.ToSlash(h.name)), n: h.n, size: int64(len(h.n.data))}, nil
}
