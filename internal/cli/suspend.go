package cli

import (
	"context"
	"fmt"
	"strings"

	"kanmon/internal/directory"
)

// cmdUserSuspend is `kanmon user suspend ADDRESS [REASON...]` and `kanmon
// user unsuspend ADDRESS`. A suspended account still logs in and reads
// its mail; MAIL FROM gets 550 5.7.1. A running server sees the change
// within a second (the directory's data_version).
func cmdUserSuspend(ctx context.Context, d *directory.DB, sub string, pos []string, env Env) error {
	if len(pos) < 1 || sub == "unsuspend" && len(pos) != 1 {
		return usageError{"user suspend ADDRESS [REASON] --config FILE | user unsuspend ADDRESS --config FILE"}
	}
	addr, err := directory.Normalize(pos[0])
	if err != nil {
		return err
	}
	if sub == "unsuspend" {
		was, suspended := d.Suspended(addr)
		if err := d.Unsuspend(ctx, addr); err != nil {
			return fmt.Errorf("cli: unsuspend %s: %w", addr, err)
		}
		if suspended {
			fmt.Fprintf(env.Stdout, "%s: may send again (was suspended: %s)\n", addr, was)
		} else {
			fmt.Fprintf(env.Stdout, "%s: was not suspended\n", addr)
		}
		return nil
	}
	reason := "by the operator"
	if len(pos) > 1 {
		reason = "by the operator: " + strings.Join(pos[1:], " ")
	}
	if err := d.Suspend(ctx, addr, reason); err != nil {
		return fmt.Errorf("cli: suspend %s: %w", addr, err)
	}
	r, _ := d.Suspended(addr)
	fmt.Fprintf(env.Stdout, "%s: suspended (%s)\n", addr, r)
	return nil
}
