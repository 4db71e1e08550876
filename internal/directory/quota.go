package directory

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	mailaddr "kanmon/internal/address"
	"kanmon/internal/maildir"
)

// migrate brings a database created by an older kanmon up to the current
// schema. Each step checks for itself, so running it again is harmless.
func migrate(db *sql.DB) error {
	// users.quota (per-account mailbox quota; NULL = the configured default).
	if err := addColumn(db, "users", "quota", "INTEGER"); err != nil {
		return err
	}
	// users.suspended (why the account may not send; NULL = it may).
	return addColumn(db, "users", "suspended", "TEXT")
}

// addColumn adds a column to a table unless it is there already.
func addColumn(db *sql.DB, table, column, typ string) error {
	rows, err := db.Query("SELECT " + column + " FROM " + table + " LIMIT 0")
	if err == nil {
		rows.Close()
		return nil
	}
	if _, err := db.Exec("ALTER TABLE " + table + " ADD COLUMN " + column + " " + typ); err != nil {
		return fmt.Errorf("add %s.%s: %w", table, column, err)
	}
	return nil
}

// Quota returns the account's own mailbox quota in octets (0: none), and
// false when it has none set and the configured default applies.
func (d *DB) Quota(account string) (int64, bool) {
	q, ok := d.current().quotas[mailaddr.LowerASCII(account)]
	return q, ok
}

// SetQuota sets an account's own mailbox quota in octets (0: no quota);
// a negative quota clears it, so the configured default applies again.
func (d *DB) SetQuota(ctx context.Context, account string, quota int64) error {
	a := mailaddr.LowerASCII(account)
	var v any
	if quota >= 0 {
		v = quota
	}
	res, err := d.sql.ExecContext(ctx, "UPDATE users SET quota = ? WHERE address = ?", v, a)
	if err != nil {
		return fmt.Errorf("directory: set quota of %s: %w", a, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("directory: set quota of %s: %w", a, ErrNotFound)
	}
	return d.Reload()
}

// Mailboxes answers the mailbox quota questions of the RCPT stage
// (policy.Mailboxes): an account's quota from the directory, else Default,
// and its Maildir's usage through a short-lived cache.
type Mailboxes struct {
	DB      *DB
	Root    string // the mail root holding DOMAIN/USER Maildirs
	Default int64  // quota of accounts without their own (0: none)
	Cache   *maildir.UsageCache
}

// Quota returns the account's quota in octets; 0 means none.
func (m *Mailboxes) Quota(account string) int64 {
	if q, ok := m.DB.Quota(account); ok {
		return q
	}
	return m.Default
}

// Usage returns the octets the account's Maildir holds.
func (m *Mailboxes) Usage(account string) (int64, error) {
	return m.Cache.Usage(maildir.Dir(MailboxPath(m.Root, account)))
}

// Charge counts an accepted message of n octets against the account until
// the next scan of its Maildir.
func (m *Mailboxes) Charge(account string, n int64) {
	m.Cache.Add(maildir.Dir(MailboxPath(m.Root, account)), n)
}

// usageTTL is how old a Maildir's usage figure may be: short enough that
// a mailbox emptied over POP3 takes mail again within seconds, long enough
// that a busy mailbox is scanned a few times a minute at most.
const usageTTL = 5 * time.Second

// NewMailboxes returns the quota source for accounts of db whose Maildirs
// live under root, with defaultQuota for accounts without their own.
func NewMailboxes(db *DB, root string, defaultQuota int64) *Mailboxes {
	return &Mailboxes{DB: db, Root: root, Default: defaultQuota, Cache: maildir.NewUsageCache(usageTTL)}
}
