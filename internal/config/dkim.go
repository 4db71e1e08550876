package config

import (
	"fmt"
	"path/filepath"
)

// DKIM is the [dkim] section: signing our own users' mail.
type DKIM struct {
	// Sign turns DKIM signing on for mail from authenticated users,
	// trusted networks and the sendmail socket whose envelope sender is
	// in a local domain with active keys.
	Sign bool `toml:"sign"`
	// NewKeys names the algorithms of the keys kanmon makes for a local
	// domain that has none (kanmon init, and the server at start):
	// "both" (ed25519 and rsa), "ed25519" or "rsa".
	NewKeys string `toml:"new_keys"`
}

// DefaultDKIM is the [dkim] section's defaults: sign, with both kinds of
// key (receivers that cannot check Ed25519 check the RSA signature).
func DefaultDKIM() DKIM { return DKIM{Sign: true, NewKeys: "both"} }

// NewKeyAlgorithms returns the algorithms of [dkim] new_keys ("ed25519",
// "rsa").
func (d DKIM) NewKeyAlgorithms() []string {
	switch d.NewKeys {
	case "ed25519", "rsa":
		return []string{d.NewKeys}
	}
	return []string{"ed25519", "rsa"}
}

func (c *Config) validateDKIM(raw []byte, e *Errors) {
	switch c.DKIM.NewKeys {
	case "both", "ed25519", "rsa":
	default:
		e.add(raw, "dkim.new_keys", fmt.Sprintf("%q is not one of both, ed25519, rsa", c.DKIM.NewKeys))
	}
}

// DKIMDir is where the signing keys live (see internal/dkim).
func (c *Config) DKIMDir() string { return filepath.Join(c.DataDir, "dkim") }
