package directory

import (
	"context"
	"fmt"

	mailaddr "kanmon/internal/address"
)

// Suspended reports whether an account is suspended (it may log in and
// read its mail, but not send), and why.
func (d *DB) Suspended(account string) (reason string, ok bool) {
	reason, ok = d.current().suspended[mailaddr.LowerASCII(account)]
	return reason, ok
}

// Suspend suspends an account, recording why; suspending one already
// suspended keeps its first reason.
func (d *DB) Suspend(ctx context.Context, account, reason string) error {
	a := mailaddr.LowerASCII(account)
	if reason == "" {
		reason = "suspended"
	}
	res, err := d.sql.ExecContext(ctx, "UPDATE users SET suspended = COALESCE(suspended, ?) WHERE address = ?", reason, a)
	if err != nil {
		return fmt.Errorf("directory: suspend %s: %w", a, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("directory: suspend %s: %w", a, ErrNotFound)
	}
	return d.Reload()
}

// Unsuspend lets a suspended account send again.
func (d *DB) Unsuspend(ctx context.Context, account string) error {
	a := mailaddr.LowerASCII(account)
	res, err := d.sql.ExecContext(ctx, "UPDATE users SET suspended = NULL WHERE address = ?", a)
	if err != nil {
		return fmt.Errorf("directory: unsuspend %s: %w", a, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("directory: unsuspend %s: %w", a, ErrNotFound)
	}
	return d.Reload()
}
