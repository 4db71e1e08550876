package cli

import (
	"fmt"
	"log/slog"

	"kanmon/internal/config"
	"kanmon/internal/server"
)

// popServices builds the POP3 listeners' services (filled in when the
// pop3 package is wired).
func popServices(cfg *config.Config, srv *server.Server, log *slog.Logger) (map[string]server.Service, error) {
	return map[string]server.Service{}, nil
}

func runAudit(args []string, env Env) int {
	fmt.Fprintln(env.Stderr, "kanmon audit: not wired yet")
	return 2
}

func runTrace(args []string, env Env) int {
	fmt.Fprintln(env.Stderr, "kanmon trace: not wired yet")
	return 2
}
