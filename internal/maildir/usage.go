package maildir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Usage returns the octets held by the messages in d's new/ and cur/ (tmp/
// holds deliveries in progress, which are not yet the mailbox's). A
// Maildir that does not exist yet holds nothing.
//
// It is the sum of the files' sizes, read from the directories, not from a
// Maildir++ maildirsize file: every reader that removes messages (our POP3
// server, or any other tool working on the Maildir) would have to keep
// such a file in step, and a sum of sizes cannot drift. UsageCache keeps
// the cost to one directory scan per mailbox every few seconds.
func (d Dir) Usage() (int64, error) {
	var total int64
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(string(d), sub))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("maildir: usage of %s: %w", d, err)
		}
		for _, e := range entries {
			info, err := e.Info()
			if err != nil {
				continue // removed while we looked: no longer counts
			}
			if info.Mode().IsRegular() {
				total += info.Size()
			}
		}
	}
	return total, nil
}

// maxCached bounds the UsageCache: past it, expired entries are dropped
// before a new one is added.
const maxCached = 10000

// UsageCache remembers each Maildir's usage for a short time, so a
// message with a hundred recipients, or a hundred messages a second, costs
// one directory scan per mailbox and period instead of one per recipient.
// Add counts accepted mail at once, so a burst within the period is not
// let through on a stale figure.
type UsageCache struct {
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	m  map[Dir]cachedUsage
}

type cachedUsage struct {
	bytes int64
	at    time.Time
}

// NewUsageCache returns a cache whose figures are at most ttl old.
func NewUsageCache(ttl time.Duration) *UsageCache {
	return &UsageCache{ttl: ttl, now: time.Now, m: map[Dir]cachedUsage{}}
}

// Usage returns d's usage, scanning the Maildir when the cached figure is
// older than the cache's period.
func (u *UsageCache) Usage(d Dir) (int64, error) {
	now := u.now()
	u.mu.Lock()
	e, ok := u.m[d]
	u.mu.Unlock()
	if ok && now.Sub(e.at) < u.ttl {
		return e.bytes, nil
	}
	// Scan without the lock: a slow disk must not hold up other mailboxes.
	n, err := d.Usage()
	if err != nil {
		return 0, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.m) >= maxCached {
		for k, v := range u.m {
			if now.Sub(v.at) >= u.ttl {
				delete(u.m, k)
			}
		}
	}
	if len(u.m) < maxCached {
		u.m[d] = cachedUsage{bytes: n, at: now}
	}
	return n, nil
}

// Add counts n more octets for d until its next scan (a message accepted
// for it that may not be delivered yet).
func (u *UsageCache) Add(d Dir, n int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if e, ok := u.m[d]; ok {
		e.bytes += n
		u.m[d] = e
	}
}
