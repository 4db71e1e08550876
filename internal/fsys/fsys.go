// Package fsys is the file-system seam of the durable stores (the queue
// and the Maildirs): every write, rename and fsync they make goes through
// an FS, so a test can give them one that forgets, at a simulated power
// loss, everything that was never fsynced (see package fsystest).
//
// Law 1 ("accepted means durable") depends on the order of a handful of
// calls: write the file, fsync it, give it its name, fsync the directory
// that holds the name. A kill -9 cannot show a missing fsync, since the
// kernel keeps the page cache; only a file system that drops unsynced data
// can. OS is the real one, used everywhere outside tests.
//
// SECURITY: the package takes paths from its callers and trusts them; it
// adds no path handling of its own.
package fsys

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// File is an open file of an FS.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	// Sync makes the file's data durable (fsync).
	Sync() error
	Close() error
	Stat() (fs.FileInfo, error)
}

// FS is the set of file-system calls the durable stores make. A name
// (directory entry) is durable only after SyncDir of its directory; file
// data only after File.Sync.
type FS interface {
	// OpenFile opens or creates a file, as os.OpenFile.
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	// Rename renames a file, as os.Rename.
	Rename(oldpath, newpath string) error
	// Remove removes a file or an empty directory, as os.Remove.
	Remove(name string) error
	// Mkdir creates one directory, as os.Mkdir.
	Mkdir(name string, perm fs.FileMode) error
	// ReadDir lists a directory sorted by name, as os.ReadDir.
	ReadDir(name string) ([]fs.DirEntry, error)
	// Stat describes a file, as os.Stat.
	Stat(name string) (fs.FileInfo, error)
	// SyncDir makes the directory's entries durable (fsync of the
	// directory).
	SyncDir(name string) error
}

// OS is the real file system.
var OS FS = osFS{}

type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := openFile(name, flag, perm)
	if err != nil {
		// A nil *os.File in a non-nil interface would pass a nil check.
		return nil, err
	}
	return f, nil
}

// openFile opens a regular file or directory like os.OpenFile, minus the
// attempt to register it with Go's network poller: for a file on disk
// that costs four fcntl calls and an epoll_ctl that always fails, on
// every queue file, marker and directory sync of every message.
func openFile(name string, flag int, perm fs.FileMode) (*os.File, error) {
	for {
		fd, err := syscall.Open(name, flag|syscall.O_CLOEXEC, uint32(perm.Perm()))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		return os.NewFile(uintptr(fd), name), nil
	}
}
func (osFS) Rename(oldpath, newpath string) error       { return os.Rename(oldpath, newpath) }
func (osFS) Remove(name string) error                   { return os.Remove(name) }
func (osFS) Mkdir(name string, perm fs.FileMode) error  { return os.Mkdir(name, perm) }
func (osFS) ReadDir(name string) ([]fs.DirEntry, error) { return os.ReadDir(name) }
func (osFS) Stat(name string) (fs.FileInfo, error)      { return os.Stat(name) }
func (osFS) SyncDir(name string) error                  { return SyncDir(name) }

// SyncDir fsyncs the directory at path, so the names created, renamed or
// removed in it survive a power loss. It is the one directory fsync of
// the queue and the Maildirs.
func SyncDir(path string) error {
	d, err := openFile(path, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("fsys: sync dir %s: %w", path, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsys: sync dir %s: %w", path, err)
	}
	return nil
}

// MkdirAll creates path and its missing parents, fsyncing the parent of
// each directory it creates: a directory made just before the first
// message went into it must not vanish at a power loss with the message.
// Existing directories cost one Stat and no fsync.
func MkdirAll(f FS, path string, perm fs.FileMode) error {
	path = filepath.Clean(path)
	fi, err := f.Stat(path)
	if err == nil {
		if fi.IsDir() {
			return nil
		}
		return fmt.Errorf("fsys: mkdir %s: %w", path, fs.ErrExist)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("fsys: mkdir %s: %w", path, err)
	}
	parent := filepath.Dir(path)
	if parent != path {
		if err := MkdirAll(f, parent, perm); err != nil {
			return err
		}
	}
	if err := f.Mkdir(path, perm); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("fsys: mkdir %s: %w", path, err)
	}
	if err := f.SyncDir(parent); err != nil {
		return fmt.Errorf("fsys: mkdir %s: %w", path, err)
	}
	return nil
}

// ReadFile reads a whole file from f.
func ReadFile(f FS, name string) ([]byte, error) {
	file, err := f.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	return io.ReadAll(file)
}

// WriteFile writes data to a new or truncated file of f, without fsync.
func WriteFile(f FS, name string, data []byte, perm fs.FileMode) error {
	file, err := f.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	_, err = file.Write(data)
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	return err
}

// IsOS reports whether f is the real file system, where the queue may use
// Linux-only calls (O_TMPFILE, linkat) that an FS cannot express.
func IsOS(f FS) bool {
	_, ok := f.(osFS)
	return ok
}
