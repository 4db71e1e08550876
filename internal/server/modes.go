package server

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"kanmon/internal/admin"
	"kanmon/internal/directory"
)

// Modes of what kanmon keeps on disk. Local users must not read the
// password hashes, the admin token or the TLS key; the sendmail socket is
// the one thing they may reach.
const (
	secretMode  = 0o600
	dataDirMode = 0o700
	// dataDirPassMode lets local users pass through the data directory
	// (not list or read it) to reach public/; everything else in it is
	// 0600 or 0700 on its own.
	dataDirPassMode = 0o711
	publicDirMode   = 0o755
)

// secureDataDir creates the admin token if it is missing, gives the data
// directory, the sendmail socket's directory and every secret file their
// modes, and tightens (with a log line each) any an older version or an
// operator left more open. It does not fail a start over a mode it cannot
// change; it logs it.
func (s *Server) secureDataDir() error {
	cfg := s.cfg
	created, err := admin.EnsureToken(cfg.AdminTokenPath())
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if created {
		s.log.Info("admin_token", "op", "created", "path", cfg.AdminTokenPath())
	}
	if s.adminToken, err = admin.ReadToken(cfg.AdminTokenPath()); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	// The local sockets: sendmail's, and checkpassword's for the IMAP
	// server's authentication user.
	var sockets []string
	if cfg.Sendmail.Enabled {
		sockets = append(sockets, cfg.SocketPath())
	}
	if cfg.Checkpassword.Enabled {
		sockets = append(sockets, cfg.AuthSocketPath())
	}
	dirMode := fs.FileMode(dataDirMode)
	for _, sock := range sockets {
		if within(cfg.DataDir, sock) {
			dirMode = dataDirPassMode
		}
	}
	s.setMode(cfg.DataDir, dirMode, true)
	for _, sock := range sockets {
		sockDir := filepath.Dir(sock)
		if err := os.MkdirAll(sockDir, publicDirMode); err != nil {
			return fmt.Errorf("server: socket directory %s: %w", sockDir, err)
		}
		if sockDir == cfg.PublicDir() {
			s.setMode(sockDir, publicDirMode, true)
		}
	}
	secrets := append(directory.DBFiles(cfg.DBPath()), cfg.AdminTokenPath())
	// The TLS key is ours to tighten when it lives with our files; one
	// elsewhere (shared with other services, say) is the operator's.
	if cfg.TLS.Key != "" && (within(cfg.DataDir, cfg.TLS.Key) || cfg.Path != "" && within(filepath.Dir(cfg.Path), cfg.TLS.Key)) {
		secrets = append(secrets, cfg.TLS.Key)
	}
	for _, p := range secrets {
		s.setMode(p, secretMode, false)
	}
	s.secureDKIMKeys()
	return nil
}

// setMode sets path's mode to want: exactly when exact, else only when
// path grants more than want (a stricter mode an operator chose stays).
func (s *Server) setMode(path string, want fs.FileMode, exact bool) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		s.log.Warn("file_mode", "path", path, "err", err.Error())
		return
	}
	have := fi.Mode().Perm()
	if have == want || !exact && have&^want == 0 {
		return
	}
	if err := os.Chmod(path, want); err != nil {
		s.log.Warn("file_mode", "path", path, "from", fmt.Sprintf("%04o", have), "to", fmt.Sprintf("%04o", want), "err", err.Error())
		return
	}
	s.log.Info("file_mode", "path", path, "from", fmt.Sprintf("%04o", have), "to", fmt.Sprintf("%04o", want))
}

// within reports whether path lies inside dir.
func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}
