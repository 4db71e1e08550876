package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"kanmon/internal/batv"
	"kanmon/internal/config"
	"kanmon/internal/directory"
	"kanmon/internal/dkim"
	"kanmon/internal/privdrop"
)

// owner is the user `kanmon init --user` hands the data directory to.
type owner struct {
	user *privdrop.User // nil: files stay with whoever runs init
}

// initOwner looks up --user before anything is written.
func initOwner(name string) (owner, error) {
	if name == "" {
		return owner{}, nil
	}
	u, err := privdrop.Lookup(name)
	if err != nil {
		return owner{}, fmt.Errorf("--user: %w (create it first, e.g. adduser --system --group %s)", err, name)
	}
	if u.UID == 0 {
		return owner{}, fmt.Errorf("--user %s has uid 0: name an unprivileged user", name)
	}
	return owner{user: &u}, nil
}

// give hands what init created to the run_as user: the data directory
// and its files (the account database, the admin token) and a TLS key
// init generated become theirs, modes unchanged (0700 and 0600); the
// config stays root's, readable by the user's group (0640), so a
// compromised server cannot rewrite its own configuration.
func (o owner) give(cfg *config.Config, confDir string, generatedKey bool) error {
	if o.user == nil {
		return nil
	}
	uid, gid := o.user.UID, o.user.GID
	paths := append([]string{cfg.DataDir}, directory.DBFiles(cfg.DBPath())...)
	paths = append(paths, cfg.AdminTokenPath())
	// The DKIM keys init made (directories before their files).
	keyDirs, keyFiles := dkim.NewStore(cfg.DKIMDir()).Files()
	paths = append(append(paths, keyDirs...), keyFiles...)
	// The BATV key ring and record.
	paths = append(append(paths, cfg.BATVDir()), batv.Files(cfg.BATVDir())...)
	if generatedKey {
		paths = append(paths, cfg.TLS.Cert, cfg.TLS.Key)
	}
	for _, p := range paths {
		if err := chownCreated(p, uid, gid); err != nil {
			return err
		}
	}
	// Group only: the user reads its config and its certificate's
	// directory, and cannot change them.
	for _, p := range []string{confDir, cfg.Path} {
		if err := chownCreated(p, -1, gid); err != nil {
			return err
		}
	}
	return nil
}

// chownCreated changes the owner of a file init has just created. It
// never follows a symbolic link and refuses a file with other hard
// links, so a planted link cannot hand another file to the user.
func chownCreated(path string, uid, gid int) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("init: owner of %s: %w", path, err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("init: owner of %s: it is a symbolic link; not following it", path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && !fi.IsDir() && st.Nlink > 1 {
		return fmt.Errorf("init: owner of %s: it has %d hard links; not changing it", path, st.Nlink)
	}
	if err := os.Lchown(path, uid, gid); err != nil {
		return fmt.Errorf("init: owner of %s: %w", filepath.Clean(path), err)
	}
	return nil
}
