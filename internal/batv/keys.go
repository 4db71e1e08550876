package batv

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Key is one tag key. The key ring holds the active key (Retired zero)
// and the keys it replaced, each until Lifetime after it was retired:
// no tag made with it can be valid later.
type Key struct {
	Num     int
	Secret  []byte
	Created time.Time
	Retired time.Time
}

// keyFile is the key ring's file name in its directory.
const keyFile = "keys"

// reloadEvery is how often a running server looks for a key ring
// rotated by `kanmon batv rotate`.
const reloadEvery = 10 * time.Second

// Keyring is the key ring in DIR/keys (mode 0600, DIR 0700). Readers
// see an immutable snapshot; the file is re-read when it changes.
type Keyring struct {
	path string
	keys atomic.Pointer[[]Key]

	mu      sync.Mutex // guards the reload check
	checked time.Time
	mtime   time.Time
}

// OpenKeyring loads the key ring in dir, creating dir and a first key
// when there is none (created reports it).
func OpenKeyring(dir string, now time.Time) (k *Keyring, created bool, err error) {
	k = &Keyring{path: filepath.Join(dir, keyFile)}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("batv: key dir %s: %w", dir, err)
	}
	keys, err := readKeys(k.path)
	if errors.Is(err, os.ErrNotExist) {
		key, gerr := newKey(0, now)
		if gerr != nil {
			return nil, false, gerr
		}
		keys = []Key{key}
		if err := writeKeys(k.path, keys); err != nil {
			return nil, false, err
		}
		created = true
	} else if err != nil {
		return nil, false, err
	}
	k.keys.Store(&keys)
	if fi, err := os.Stat(k.path); err == nil {
		k.mtime = fi.ModTime()
	}
	k.checked = now
	return k, created, nil
}

// Path is the key ring's file.
func (k *Keyring) Path() string { return k.path }

// Active is the key new tags are made with.
func (k *Keyring) Active(now time.Time) Key {
	k.maybeReload(now)
	return (*k.keys.Load())[0]
}

// Secret returns the secret of key number num while it may verify tags
// (active, or retired less than Lifetime ago), else nil.
func (k *Keyring) Secret(num int, now time.Time) []byte {
	k.maybeReload(now)
	for _, key := range *k.keys.Load() {
		if key.Num == num && (key.Retired.IsZero() || now.Sub(key.Retired) <= Lifetime+24*time.Hour) {
			return key.Secret
		}
	}
	return nil
}

// Keys returns a copy of the ring, active key first.
func (k *Keyring) Keys() []Key {
	return append([]Key(nil), *k.keys.Load()...)
}

// Rotate makes a new active key with the next number, retires the old
// one, drops keys retired more than Lifetime ago, and writes the ring.
func (k *Keyring) Rotate(now time.Time) (Key, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	old := *k.keys.Load()
	next, err := newKey((old[0].Num+1)%10, now)
	if err != nil {
		return Key{}, err
	}
	keys := []Key{next}
	for _, key := range old {
		if key.Retired.IsZero() {
			key.Retired = now
		}
		// Numbers are one digit: a key whose number comes back is
		// dropped, however recent (ten rotations within a lifetime).
		if key.Num != next.Num && now.Sub(key.Retired) <= Lifetime+24*time.Hour {
			keys = append(keys, key)
		}
	}
	if err := writeKeys(k.path, keys); err != nil {
		return Key{}, err
	}
	k.keys.Store(&keys)
	return next, nil
}

// maybeReload re-reads the file when it changed, at most every
// reloadEvery; a broken file keeps the keys in memory.
func (k *Keyring) maybeReload(now time.Time) {
	if !k.mu.TryLock() {
		return
	}
	defer k.mu.Unlock()
	if now.Sub(k.checked) < reloadEvery && now.Sub(k.checked) >= 0 {
		return
	}
	k.checked = now
	fi, err := os.Stat(k.path)
	if err != nil || fi.ModTime().Equal(k.mtime) {
		return
	}
	keys, err := readKeys(k.path)
	if err != nil || len(keys) == 0 {
		return
	}
	k.mtime = fi.ModTime()
	k.keys.Store(&keys)
}

func newKey(num int, now time.Time) (Key, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return Key{}, fmt.Errorf("batv: new key: %w", err)
	}
	return Key{Num: num, Secret: secret, Created: now.UTC().Truncate(time.Second)}, nil
}

// readKeys reads "NUM SECRET-HEX CREATED RETIRED" lines (Unix seconds,
// RETIRED 0 for the active key, which comes first).
func readKeys(path string) ([]Key, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var keys []Key
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 4 {
			return nil, fmt.Errorf("batv: %s:%d: want NUM SECRET CREATED RETIRED", path, n)
		}
		num, err1 := strconv.Atoi(f[0])
		secret, err2 := hex.DecodeString(f[1])
		created, err3 := strconv.ParseInt(f[2], 10, 64)
		retired, err4 := strconv.ParseInt(f[3], 10, 64)
		if err := errors.Join(err1, err2, err3, err4); err != nil || num < 0 || num > 9 || len(secret) < 16 {
			return nil, fmt.Errorf("batv: %s:%d: malformed key line", path, n)
		}
		key := Key{Num: num, Secret: secret, Created: time.Unix(created, 0).UTC()}
		if retired != 0 {
			key.Retired = time.Unix(retired, 0).UTC()
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 || !keys[0].Retired.IsZero() {
		return nil, fmt.Errorf("batv: %s: no active key on the first line", path)
	}
	return keys, nil
}

// writeKeys replaces the file: temporary file, fsync, rename, fsync of
// the directory, so a crash leaves the old ring or the new one.
func writeKeys(path string, keys []Key) error {
	var b strings.Builder
	b.WriteString("# kanmon BATV keys: NUM SECRET CREATED RETIRED; the first is active. Keep secret.\n")
	for _, k := range keys {
		var retired int64
		if !k.Retired.IsZero() {
			retired = k.Retired.Unix()
		}
		fmt.Fprintf(&b, "%d %s %d %d\n", k.Num, hex.EncodeToString(k.Secret), k.Created.Unix(), retired)
	}
	return writeFileSync(path, []byte(b.String()))
}

// writeFileSync writes a 0600 file atomically and durably.
func writeFileSync(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("batv: write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("batv: write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Files are the files kept in dir (the key ring and the domain record),
// for those that hand them to another owner.
func Files(dir string) []string {
	return []string{filepath.Join(dir, keyFile), filepath.Join(dir, stateFile)}
}
