package cli

import (
	"kanmon/internal/audit"
	"kanmon/internal/trace"
)

// runAudit checks a mail server for the weaknesses the project exists to
// avoid (internal/audit).
func runAudit(args []string, env Env) int { return audit.Main(args, env.Stdout, env.Stderr) }

// runTrace follows a message through kanmon's logs, or walks a message's
// Received chain (internal/trace).
func runTrace(args []string, env Env) int { return trace.Main(args, env.Stdin, env.Stdout, env.Stderr) }
