package cli

import (
	"context"
	"fmt"

	"kanmon/internal/config"
	"kanmon/internal/directory"
	"kanmon/internal/maildir"
)

// cmdUserQuota is `kanmon user quota ADDRESS [SIZE|default]`: without a
// size it shows the account's quota and its Maildir's usage; with one it
// sets the account's own quota (0 = none, "default" = limits.mailbox_quota).
func cmdUserQuota(ctx context.Context, cfg *config.Config, d *directory.DB, pos []string, env Env) error {
	if len(pos) != 1 && len(pos) != 2 {
		return usageError{"user quota ADDRESS [SIZE|default] --config FILE"}
	}
	addr, err := directory.Normalize(pos[0])
	if err != nil {
		return err
	}
	if _, ok := d.PasswordHash(addr); !ok { // quotas belong to accounts, not aliases
		return fmt.Errorf("cli: user quota %s: %w", addr, directory.ErrNotFound)
	}
	if len(pos) == 2 {
		if err := setQuota(ctx, d, addr, pos[1]); err != nil {
			return err
		}
	}
	q, own := d.Quota(addr)
	source := "its own"
	if !own {
		q, source = int64(cfg.Limits.MailboxQuota), "limits.mailbox_quota"
	}
	used, err := maildir.Dir(directory.MailboxPath(cfg.MailRoot(), addr)).Usage()
	if err != nil {
		return fmt.Errorf("cli: user quota %s: %w", addr, err)
	}
	limit := "none"
	if q > 0 {
		limit = fmt.Sprintf("%d octets", q)
	}
	fmt.Fprintf(env.Stdout, "%s: quota %s (%s), used %d octets\n", addr, limit, source, used)
	return nil
}

// setQuota sets an account's own quota from a size ("500MiB", "0") or
// clears it ("default").
func setQuota(ctx context.Context, d *directory.DB, addr, size string) error {
	n := int64(-1)
	if size != "default" {
		v, err := config.ParseSize(size)
		if err != nil {
			return fmt.Errorf("cli: quota of %s: %w", addr, err)
		}
		n = v
	}
	return d.SetQuota(ctx, addr, n)
}
