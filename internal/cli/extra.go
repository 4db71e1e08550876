package cli

import (
	"fmt"
)

func runAudit(args []string, env Env) int {
	fmt.Fprintln(env.Stderr, "kanmon audit: not wired yet")
	return 2
}

func runTrace(args []string, env Env) int {
	fmt.Fprintln(env.Stderr, "kanmon trace: not wired yet")
	return 2
}
