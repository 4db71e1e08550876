// Package admin is the admin HTTP listener's own code: its guard (the
// bearer token every request but /healthz and /metrics must carry, and
// the Host check that stops DNS rebinding) and the operator queue API
// under /queue/ (queue.go), which `kanmon queue` calls and which works
// through the scheduler's operations.
//
// SECURITY: the listener belongs on loopback, but loopback is not a
// boundary: any local user, and any web page whose name an attacker
// rebinds to 127.0.0.1, can send it requests. So a request is served only
// when its Host header names the listener itself (its bound address,
// localhost, or a configured name) — a rebound name is refused even with
// the token — and, except for the two harmless paths, when it carries the
// token kept in a 0600 file in the data directory, compared in constant
// time. Refusals are logged with the path and the client, never the token.
// Queue changes also need POST and "X-Kanmon-Admin: 1"; error replies say
// what went wrong in plain words, never a spool path (that is logged).
package admin

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// tokenBytes is the token's entropy: 256 bits, written as 64 hex digits.
const tokenBytes = 32

// EnsureToken creates the token file at path (mode 0600, whatever the
// umask) unless it exists, and reports whether it created it. An existing
// file is left as it is: FileModes tightens its mode.
func EnsureToken(path string) (bool, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("admin: create token %s: %w", path, err)
	}
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		f.Close()
		os.Remove(path)
		return false, fmt.Errorf("admin: token %s: no randomness: %w", path, err)
	}
	_, werr := f.WriteString(hex.EncodeToString(b) + "\n")
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(path)
		return false, fmt.Errorf("admin: write token %s: %w", path, err)
	}
	return true, nil
}

// ReadToken returns the token stored at path.
func ReadToken(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("admin: read token: %w", err)
	}
	tok := strings.TrimSpace(string(raw))
	if len(tok) < 32 || len(tok) > 1024 {
		return "", fmt.Errorf("admin: token %s: not a token (%d characters)", path, len(tok))
	}
	return tok, nil
}
