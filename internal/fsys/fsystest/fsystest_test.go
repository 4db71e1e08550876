package fsystest

import (
	"errors"
	"io/fs"
	"os"
	"testing"

	"kanmon/internal/fsys"
)

func write(t *testing.T, f *FS, name, data string, sync bool) {
	t.Helper()
	h, err := f.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Write([]byte(data)); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := h.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	h.Close()
}

func read(t *testing.T, f *FS, name string) (string, error) {
	t.Helper()
	b, err := fsys.ReadFile(f, name)
	return string(b), err
}

// TestPowerLossModel: the rules a power loss follows, each checked, so a
// store test that passes on this FS passes for the right reason.
func TestPowerLossModel(t *testing.T) {
	f := New()
	if err := fsys.MkdirAll(f, "/a/b", 0o700); err != nil {
		t.Fatal(err)
	}
	write(t, f, "/a/b/synced", "data", true)
	write(t, f, "/a/b/unsynced", "data", false)
	if err := f.SyncDir("/a/b"); err != nil {
		t.Fatal(err)
	}
	write(t, f, "/a/b/unnamed", "data", true) // data synced, name not
	if err := f.Rename("/a/b/synced", "/a/moved"); err != nil {
		t.Fatal(err)
	}
	f.PowerLoss()

	if got, err := read(t, f, "/a/b/synced"); err != nil || got != "data" {
		t.Errorf("synced file after power loss: %q, %v; want the data under its old name (rename not synced)", got, err)
	}
	if _, err := f.Stat("/a/moved"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("unsynced rename target survived: %v", err)
	}
	if got, err := read(t, f, "/a/b/unsynced"); err != nil || got != "" {
		t.Errorf("file with unsynced data: %q, %v; want its name with no data", got, err)
	}
	if _, err := f.Stat("/a/b/unnamed"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("file whose name was never synced survived: %v", err)
	}

	// A directory made without syncing its parent vanishes.
	if err := f.Mkdir("/a/c", 0o700); err != nil {
		t.Fatal(err)
	}
	f.PowerLoss()
	if _, err := f.Stat("/a/c"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("directory whose parent was never synced survived: %v", err)
	}
}
