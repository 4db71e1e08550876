package cli

import (
	"fmt"
	"time"

	"kanmon/internal/config"
	"kanmon/internal/forgery"
)

// runReport runs "kanmon report KIND": for now the forgery report
// (internal/forgery), which reads the log_file and the domains of
// --config when it is given.
func runReport(args []string, env Env) int {
	if len(args) == 0 || args[0] != "forgery" {
		fmt.Fprintln(env.Stderr, "usage: kanmon report forgery [--since 24h] [--json|--csv] [--log FILE ...] [--config FILE]")
		return 2
	}
	args = args[1:]
	var in *forgery.Input
	for i := 0; i < len(args); i++ {
		if (args[i] == "--config" || args[i] == "-config") && i+1 < len(args) {
			cfg, err := config.Load(args[i+1])
			if err != nil {
				fmt.Fprintf(env.Stderr, "kanmon report forgery: %s\n", err)
				return 2
			}
			in = &forgery.Input{LogFile: cfg.LogFile, Domains: cfg.Domains}
		}
	}
	return forgery.Main(args, in, env.Stdin, env.Stdout, env.Stderr, time.Now())
}
