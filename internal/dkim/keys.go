// Package dkim signs the mail kanmon's own users send (RFC 6376) and keeps
// the signing keys.
//
// # Keys on disk
//
// Keys live under the data directory, one directory per domain:
//
//	dkim/DOMAIN/SELECTOR.ALGO.key          an active key: it signs
//	dkim/DOMAIN/SELECTOR.ALGO.key.pending  a new key waiting for its DNS
//	                                       record (kanmon dkim keygen on a
//	                                       domain that already has a key
//	                                       of that algorithm)
//	dkim/DOMAIN/SELECTOR.ALGO.key.retired  a key replaced by kanmon dkim
//	                                       activate; kept, never used
//
// ALGO is "ed25519" or "rsa" (2048 bits); the files are PKCS #8 PEM, mode
// 0600, in directories of mode 0700. A domain signs with every active
// key, so with the defaults each message carries two signatures, one
// ed25519-sha256 and one rsa-sha256: receivers that do not know Ed25519
// (RFC 8463) still find one they can check.
//
// Rotation never signs with a key whose record is not published yet: the
// new key waits as pending (kanmon dns-records prints its record), and
// kanmon dkim activate makes it the active key of its algorithm.
//
// SECURITY: the private keys are secrets (mode 0600, never logged). Domain
// and selector names become path elements, so both are checked against a
// strict DNS-label syntax before any file is touched.
package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// Algorithms kanmon signs with.
const (
	Ed25519 = "ed25519"
	RSA     = "rsa"
)

// RSABits is the size of the RSA keys kanmon creates.
const RSABits = 2048

// Key file suffixes: the state of a key is in its name.
const (
	suffixActive  = ".key"
	suffixPending = ".key.pending"
	suffixRetired = ".key.retired"
)

// Key states.
const (
	StateActive  = "active"
	StatePending = "pending"
)

// Key is one signing key.
type Key struct {
	Domain   string
	Selector string
	Algo     string // Ed25519 or RSA
	State    string // StateActive or StatePending
	Path     string
	Signer   crypto.Signer
}

// Record returns the key's DNS TXT record value ("v=DKIM1; k=...; p=...").
func (k *Key) Record() (string, error) {
	der, err := x509.MarshalPKIXPublicKey(k.Signer.Public())
	if err != nil {
		return "", fmt.Errorf("dkim: public key %s: %w", k.Path, err)
	}
	kt := "rsa"
	if k.Algo == Ed25519 {
		// RFC 8463: the raw 32-byte public key, not the SPKI structure.
		der = k.Signer.Public().(ed25519.PublicKey)
		kt = "ed25519"
	}
	return "v=DKIM1; k=" + kt + "; p=" + base64.StdEncoding.EncodeToString(der), nil
}

// Name is the DNS name of the key's record.
func (k *Key) Name() string { return k.Selector + "._domainkey." + k.Domain }

var (
	labelRe  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	errNoKey = errors.New("dkim: no such key")
)

// ValidDomain reports whether d is a lower-case DNS domain name kanmon
// will use as a key directory name.
func ValidDomain(d string) bool {
	if len(d) == 0 || len(d) > 253 {
		return false
	}
	for _, l := range strings.Split(d, ".") {
		if !labelRe.MatchString(l) {
			return false
		}
	}
	return true
}

// ValidSelector reports whether s is a selector kanmon accepts: one
// lower-case DNS label.
func ValidSelector(s string) bool { return labelRe.MatchString(s) }

// DefaultSelector is the selector kanmon picks for a key of algo made at
// t: the algorithm, then the year and month ("ed202601", "rsa202601"), so
// each key has its own DNS name (one record per name) and a rotation gets
// a new, ordered one.
func DefaultSelector(algo string, t time.Time) string {
	prefix := "rsa"
	if algo == Ed25519 {
		prefix = "ed"
	}
	return prefix + t.UTC().Format("200601")
}

// Store is the key directory (DATA_DIR/dkim). It is safe for concurrent
// use; the active keys of a domain are read from disk at most every
// reloadEvery, so a key made or activated by the command line is used
// within that time without a restart.
type Store struct {
	dir string

	mu    sync.Mutex
	cache map[string]cachedKeys
}

type cachedKeys struct {
	keys []*Key
	err  error
	at   time.Time
}

const reloadEvery = 30 * time.Second

// NewStore returns the store rooted at dir.
func NewStore(dir string) *Store { return &Store{dir: dir, cache: map[string]cachedKeys{}} }

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) domainDir(domain string) string { return filepath.Join(s.dir, domain) }

// Generate makes a new key for domain. It is active when the domain has
// no active key of that algorithm yet, pending otherwise (it signs only
// after Activate, once its record is published).
func (s *Store) Generate(domain, selector, algo string) (*Key, error) {
	if !ValidDomain(domain) {
		return nil, fmt.Errorf("dkim: keygen: invalid domain %q", domain)
	}
	if !ValidSelector(selector) {
		return nil, fmt.Errorf("dkim: keygen %s: invalid selector %q (one DNS label: a-z, 0-9, -)", domain, selector)
	}
	keys, err := s.Keys(domain)
	if err != nil {
		return nil, err
	}
	state := StateActive
	for _, k := range keys {
		if k.Selector == selector {
			// One selector, one DNS record: two keys cannot share it.
			return nil, fmt.Errorf("dkim: keygen %s: selector %s is taken by the %s key %s", domain, selector, k.Algo, k.Path)
		}
		if k.Algo == algo && k.State == StateActive {
			state = StatePending
		}
	}
	signer, err := newSigner(algo)
	if err != nil {
		return nil, fmt.Errorf("dkim: keygen %s: %w", domain, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(signer)
	if err != nil {
		return nil, fmt.Errorf("dkim: keygen %s: %w", domain, err)
	}
	suffix := suffixActive
	if state == StatePending {
		suffix = suffixPending
	}
	path := filepath.Join(s.domainDir(domain), selector+"."+algo+suffix)
	if err := os.MkdirAll(s.domainDir(domain), 0o700); err != nil {
		return nil, fmt.Errorf("dkim: keygen %s: %w", domain, err)
	}
	if err := writeSecret(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return nil, fmt.Errorf("dkim: keygen %s: %w", domain, err)
	}
	s.forget(domain)
	return &Key{Domain: domain, Selector: selector, Algo: algo, State: state, Path: path, Signer: signer}, nil
}

func newSigner(algo string) (crypto.Signer, error) {
	switch algo {
	case Ed25519:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	case RSA:
		return rsa.GenerateKey(rand.Reader, RSABits)
	}
	return nil, fmt.Errorf("unknown algorithm %q (ed25519 or rsa)", algo)
}

// writeSecret writes a new file of mode 0600 atomically (temporary file,
// fsync, rename), never over an existing one.
func writeSecret(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// Link, not rename: it fails when the key exists.
		err = os.Link(tmp, path)
	}
	os.Remove(tmp)
	return err
}

// Ensure gives domain an active key of each algorithm in algos that it
// lacks, under DefaultSelector(algo, now), and returns the keys it made.
func (s *Store) Ensure(domain string, algos []string, now time.Time) ([]*Key, error) {
	keys, err := s.Keys(domain)
	if err != nil {
		return nil, err
	}
	var made []*Key
	for _, algo := range algos {
		have := false
		for _, k := range keys {
			have = have || k.Algo == algo && k.State == StateActive
		}
		if have {
			continue
		}
		k, err := s.Generate(domain, DefaultSelector(algo, now), algo)
		if err != nil {
			return made, err
		}
		made = append(made, k)
	}
	return made, nil
}

// Keys reads every active and pending key of domain from disk, ordered by
// state (active first), algorithm and selector. A domain without a
// directory has none.
func (s *Store) Keys(domain string) ([]*Key, error) {
	if !ValidDomain(domain) {
		return nil, fmt.Errorf("dkim: keys: invalid domain %q", domain)
	}
	ents, err := os.ReadDir(s.domainDir(domain))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dkim: keys %s: %w", domain, err)
	}
	var keys []*Key
	for _, e := range ents {
		k, ok := parseName(domain, e.Name())
		if !ok {
			continue
		}
		k.Path = filepath.Join(s.domainDir(domain), e.Name())
		if k.Signer, err = readKey(k.Path, k.Algo); err != nil {
			return nil, fmt.Errorf("dkim: keys %s: %w", domain, err)
		}
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.State != b.State {
			return a.State == StateActive
		}
		if a.Algo != b.Algo {
			return a.Algo < b.Algo
		}
		return a.Selector < b.Selector
	})
	return keys, nil
}

// parseName reads SELECTOR.ALGO.key[.pending]; retired keys and anything
// else are not keys.
func parseName(domain, name string) (*Key, bool) {
	state := StateActive
	base, ok := strings.CutSuffix(name, suffixActive)
	if !ok {
		if base, ok = strings.CutSuffix(name, suffixPending); !ok {
			return nil, false
		}
		state = StatePending
	}
	sel, algo, ok := strings.Cut(base, ".")
	if !ok || !ValidSelector(sel) || algo != Ed25519 && algo != RSA {
		return nil, false
	}
	return &Key{Domain: domain, Selector: sel, Algo: algo, State: state}, true
}

func readKey(path, algo string) (crypto.Signer, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(raw)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: not a PKCS #8 PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	switch k := k.(type) {
	case ed25519.PrivateKey:
		if algo == Ed25519 {
			return k, nil
		}
	case *rsa.PrivateKey:
		if algo == RSA {
			if k.N.BitLen() < 1024 {
				return nil, fmt.Errorf("%s: RSA key of %d bits is too weak (RFC 8301)", path, k.N.BitLen())
			}
			return k, nil
		}
	}
	return nil, fmt.Errorf("%s: key is not %s", path, algo)
}

// Active returns the keys that sign domain's mail (nil when none), from a
// cache refreshed every reloadEvery.
func (s *Store) Active(domain string) ([]*Key, error) {
	domain = strings.ToLower(domain)
	if !ValidDomain(domain) {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.cache[domain]; ok && time.Since(c.at) < reloadEvery {
		return c.keys, c.err
	}
	keys, err := s.Keys(domain)
	var active []*Key
	for _, k := range keys {
		if k.State == StateActive {
			active = append(active, k)
		}
	}
	s.cache[domain] = cachedKeys{keys: active, err: err, at: time.Now()}
	return active, err
}

func (s *Store) forget(domain string) {
	s.mu.Lock()
	delete(s.cache, domain)
	s.mu.Unlock()
}

// Activate makes the pending key(s) of selector active, and retires the
// active key of the same algorithm it replaces. It returns the keys it
// activated.
func (s *Store) Activate(domain, selector string) ([]*Key, error) {
	keys, err := s.Keys(domain)
	if err != nil {
		return nil, err
	}
	var done []*Key
	for _, k := range keys {
		if k.Selector != selector || k.State != StatePending {
			continue
		}
		for _, old := range keys {
			if old.Algo == k.Algo && old.State == StateActive {
				retired := strings.TrimSuffix(old.Path, suffixActive) + suffixRetired
				if err := os.Rename(old.Path, retired); err != nil {
					return done, fmt.Errorf("dkim: activate %s %s: retire %s: %w", domain, selector, old.Selector, err)
				}
			}
		}
		active := strings.TrimSuffix(k.Path, suffixPending) + suffixActive
		if err := os.Rename(k.Path, active); err != nil {
			return done, fmt.Errorf("dkim: activate %s %s: %w", domain, selector, err)
		}
		k.Path, k.State = active, StateActive
		done = append(done, k)
	}
	s.forget(domain)
	if len(done) == 0 {
		return nil, fmt.Errorf("dkim: activate %s %s: %w (no pending key with that selector)", domain, selector, errNoKey)
	}
	return done, nil
}

// Files lists every key file and key directory under the store, for the
// server's mode check at start.
func (s *Store) Files() (dirs, files []string) {
	filepath.WalkDir(s.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		} else if strings.Contains(d.Name(), ".key") {
			files = append(files, p)
		}
		return nil
	})
	return dirs, files
}
