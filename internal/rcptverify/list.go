package rcptverify

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Bounds of a recipient list file.
const (
	maxListSize = 64 << 20 // bytes
	maxListLine = 1024     // bytes per line
	// listCheckEvery is how often a list's file is looked at for changes,
	// so an edit reaches a running server within a second, as account
	// changes do.
	listCheckEvery = time.Second
)

// list is one relay domain's file of valid recipients: one address per
// line (or a bare local part, meaning LOCAL@DOMAIN), "#" starts a
// comment. Local parts are compared with ASCII case folding, as for our
// own users.
type list struct {
	path, domain string

	mu      sync.Mutex
	locals  map[string]bool
	mod     time.Time
	size    int64
	checked time.Time
}

func loadList(path, domain string) (*list, error) {
	l := &list{path: path, domain: domain}
	if err := l.reload(true); err != nil {
		return nil, err
	}
	return l, nil
}

// has reports whether local is in the list, re-reading the file first
// when it changed.
func (l *list) has(local string) (bool, error) {
	err := l.reload(false)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.locals == nil {
		// Never read: a list that failed later keeps its old contents.
		return false, err
	}
	return l.locals[strings.ToLower(local)], nil
}

// reload re-reads the file when forced or when its size or time changed
// (looked at once per listCheckEvery). On error the old contents stay.
func (l *list) reload(force bool) error {
	l.mu.Lock()
	now := time.Now()
	if !force && now.Sub(l.checked) < listCheckEvery {
		l.mu.Unlock()
		return nil
	}
	l.checked = now
	mod, size := l.mod, l.size
	l.mu.Unlock()
	fi, err := os.Stat(l.path)
	if err != nil {
		return fmt.Errorf("rcptverify: list for %s: %w", l.domain, err)
	}
	if !force && fi.ModTime().Equal(mod) && fi.Size() == size {
		return nil
	}
	locals, err := readList(l.path, l.domain)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.locals, l.mod, l.size = locals, fi.ModTime(), fi.Size()
	l.mu.Unlock()
	return nil
}

// readList parses a list file within its bounds.
func readList(path, domain string) (map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("rcptverify: list for %s: %w", domain, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, maxListSize+1))
	sc.Buffer(make([]byte, 0, 4096), maxListLine)
	locals := map[string]bool{}
	n, read := 0, 0
	for sc.Scan() {
		n++
		read += len(sc.Bytes()) + 1
		line := sc.Bytes()
		if i := bytes.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		entry := strings.ToLower(strings.TrimSpace(string(line)))
		if entry == "" {
			continue
		}
		local, dom, hasAt := strings.Cut(entry, "@")
		if i := strings.LastIndexByte(entry, '@'); i >= 0 {
			local, dom = entry[:i], entry[i+1:]
		}
		if local == "" || hasAt && dom != domain || strings.ContainsAny(local, " \t<>") {
			return nil, fmt.Errorf("rcptverify: list for %s: %s:%d: %q is not an address in %s", domain, path, n, entry, domain)
		}
		locals[local] = true
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("rcptverify: list for %s: %s:%d: %w (lines are at most %d bytes)", domain, path, n+1, err, maxListLine)
	}
	if read > maxListSize {
		return nil, fmt.Errorf("rcptverify: list for %s: %s is over %d bytes", domain, path, maxListSize)
	}
	return locals, nil
}
