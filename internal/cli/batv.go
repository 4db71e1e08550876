package cli

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"kanmon/internal/batv"
	"kanmon/internal/config"
)

// cmdBATV runs `kanmon batv rotate|list`.
func cmdBATV(args []string, env Env) error {
	if len(args) == 0 {
		return usageError{"batv rotate|list --config FILE"}
	}
	sub := args[0]
	fs := flag.NewFlagSet("batv", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "config file")
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 0 || sub != "rotate" && sub != "list" {
		return usageError{"batv rotate|list --config FILE"}
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	now := time.Now()
	kr, _, err := batv.OpenKeyring(cfg.BATVDir(), now)
	if err != nil {
		return err
	}
	if sub == "rotate" {
		k, err := kr.Rotate(now)
		if err != nil {
			return err
		}
		if err := keepOwner(cfg.BATVDir(), kr.Path()); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "new BATV key %d; the previous one still verifies tags for %.0f days; the server uses the new key within 10s\n",
			k.Num, batv.Lifetime.Hours()/24)
	}
	for _, k := range kr.Keys() {
		state := "active"
		if !k.Retired.IsZero() {
			state = "retired " + k.Retired.Format(time.RFC3339) + ", verifies until " + k.Retired.Add(batv.Lifetime).Format(time.RFC3339)
		}
		fmt.Fprintf(env.Stdout, "%d\tcreated %s\t%s\n", k.Num, k.Created.Format(time.RFC3339), state)
	}
	return nil
}

// keepOwner gives a file written as root to the owner of its directory
// (the run_as user), so the server can still read the key ring.
func keepOwner(dir, file string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("batv: owner of %s: %w", dir, err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if err := os.Lchown(file, int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("batv: owner of %s: %w", file, err)
		}
	}
	return nil
}

// initBATV makes the first tag key and records the domains as tagging
// from now, without a grace period: a new installation has sent no
// untagged mail, so it enforces at once.
func initBATV(cfg *config.Config) error {
	now := time.Now()
	if _, _, err := batv.OpenKeyring(cfg.BATVDir(), now); err != nil {
		return err
	}
	modes := map[string]batv.Mode{}
	for _, d := range cfg.Domains {
		d = strings.ToLower(d)
		modes[d] = batv.Mode(cfg.BATVMode(d))
	}
	_, _, err := batv.Sync(cfg.BATVDir(), modes, false, now)
	return err
}
