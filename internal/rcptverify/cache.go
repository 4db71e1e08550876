package rcptverify

import (
	"sync"
	"time"
)

// cache holds probe answers until they expire, at most max of them.
type cache struct {
	mu  sync.Mutex
	max int
	m   map[string]cached
}

type cached struct {
	res     Result
	expires time.Time
}

func newCache(max int) *cache { return &cache{max: max, m: map[string]cached{}} }

// get returns the answer for key unless it has expired.
func (c *cache) get(key string, now time.Time) (Result, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok {
		return Result{}, false
	}
	if !now.Before(e.expires) {
		delete(c.m, key)
		return Result{}, false
	}
	return e.res, true
}

// put stores an answer. When the cache is full, expired entries go
// first, then arbitrary ones: a flood of made-up addresses can push out
// good answers (which costs a probe later) but never grow memory.
func (c *cache) put(key string, r Result, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; !ok && len(c.m) >= c.max {
		now := time.Now()
		for k, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, k)
			}
		}
		// Make room for a sixteenth at once, so a flood does not sweep
		// the whole map on every answer.
		for k := range c.m {
			if len(c.m) < c.max-c.max/16 {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[key] = cached{res: r, expires: expires}
}

// len is the number of entries (tests).
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
