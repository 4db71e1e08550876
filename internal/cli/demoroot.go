package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"kanmon/internal/config"
	"kanmon/internal/privdrop"
)

// demoUser is whom the demo mode serves as when started as root: the
// README's first command must work on a fresh machine, where that is
// often root, and kanmon never serves as root.
const demoUser = "nobody"

// demoFallbackDir keeps the demo's state when started as root from a
// directory demoUser cannot reach (a checkout under /root, say).
const demoFallbackDir = "/var/tmp/kanmon-demo"

// demoAsRoot prepares the demo mode started as root: it picks a data
// directory demoUser can reach, and sets run_as so the server drops to
// demoUser after binding its ports. The caller creates the directory and
// the certificate, then calls handOver.
func demoAsRoot(cfg *config.Config) (privdrop.User, error) {
	u, err := privdrop.Lookup(demoUser)
	if err != nil || u.UID == 0 {
		return privdrop.User{}, errors.New("refusing to serve as root: the demo mode drops to user " + demoUser +
			", which this system lacks; run it as an ordinary user, or give --config FILE with run_as = \"kanmon\"")
	}
	abs, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return privdrop.User{}, err
	}
	if !othersCanTraverse(filepath.Dir(abs)) {
		cfg.DataDir = demoFallbackDir
	}
	cfg.RunAs = demoUser
	return u, nil
}

// othersCanTraverse reports whether every directory from / down to dir
// lets other users pass (o+x).
func othersCanTraverse(dir string) bool {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == filepath.Dir(d) {
			return true
		}
	}
}

// handOver gives the demo's data directory and the files root wrote in
// it (certificate, key) to the demo user; the server creates the rest
// after dropping to it.
func handOver(cfg *config.Config, u privdrop.User) error {
	for _, p := range []string{cfg.DataDir, cfg.TLS.Cert, cfg.TLS.Key} {
		if err := chownCreated(p, u.UID, u.GID); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	return nil
}
