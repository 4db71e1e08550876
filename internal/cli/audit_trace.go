package cli

import (
	"fmt"

	"kanmon/internal/audit"
	"kanmon/internal/config"
	"kanmon/internal/trace"
)

// runAudit checks a mail server for the weaknesses the project exists to
// avoid (internal/audit).
func runAudit(args []string, env Env) int { return audit.Main(args, env.Stdout, env.Stderr) }

// runTrace follows a message through kanmon's logs, or walks a message's
// Received chain (internal/trace). `--config FILE` reads the log_file
// that config names, unless --log is given.
func runTrace(args []string, env Env) int {
	var rest []string
	cfgPath, hasLog := "", false
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case (a == "--config" || a == "-config") && i+1 < len(args):
			cfgPath = args[i+1]
			i++
		default:
			if a == "--log" || a == "-log" {
				hasLog = true
			}
			rest = append(rest, a)
		}
	}
	if cfgPath != "" && !hasLog {
		cfg, err := config.Load(cfgPath)
		if err != nil {
			fmt.Fprintf(env.Stderr, "kanmon trace: %s\n", err)
			return 2
		}
		if cfg.LogFile == "" {
			fmt.Fprintf(env.Stderr, "kanmon trace: %s logs to stderr (log_file is empty): pass --log FILE\n", cfgPath)
			return 2
		}
		rest = append(rest, "--log", cfg.LogFile)
	}
	return trace.Main(rest, env.Stdin, env.Stdout, env.Stderr)
}
