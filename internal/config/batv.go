package config

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// BATV is the [batv] section: bounce address tags (internal/batv).
type BATV struct {
	// Mode is every local domain's mode unless Domains names it:
	// "enforce" (bounces need a valid tag: 550 5.7.1 otherwise), "log"
	// (tag, check, accept and log) or "off" (neither tag nor check).
	Mode string `toml:"mode"`
	// Domains gives domains a mode of their own, e.g. { "example.org" = "log" }.
	Domains map[string]string `toml:"domains"`
}

// BATV modes.
const (
	BATVEnforce = "enforce"
	BATVLog     = "log"
	BATVOff     = "off"
)

// DefaultBATV enforces: a new installation has sent no untagged mail.
func DefaultBATV() BATV { return BATV{Mode: BATVEnforce, Domains: map[string]string{}} }

// BATVMode is a domain's mode (lower-case domain).
func (c *Config) BATVMode(domain string) string {
	for d, m := range c.BATV.Domains {
		if strings.EqualFold(strings.TrimSuffix(d, "."), domain) {
			return m
		}
	}
	return c.BATV.Mode
}

// BATVDir holds the tag keys and the per-domain record (mode 0700).
func (c *Config) BATVDir() string { return filepath.Join(c.DataDir, "batv") }

func validBATVMode(m string) bool { return m == BATVEnforce || m == BATVLog || m == BATVOff }

func (c *Config) validateBATV(raw []byte, e *Errors) {
	if !validBATVMode(c.BATV.Mode) {
		e.add(raw, "batv.mode", fmt.Sprintf("%q is not one of enforce, log, off", c.BATV.Mode))
	}
	names := make([]string, 0, len(c.BATV.Domains))
	for d := range c.BATV.Domains {
		names = append(names, d)
	}
	sort.Strings(names)
	for _, d := range names {
		m := c.BATV.Domains[d]
		if !validHostname(strings.TrimSuffix(d, ".")) {
			e.add(raw, "batv.domains", fmt.Sprintf("%q is not a valid domain", d))
		}
		if !validBATVMode(m) {
			e.add(raw, "batv.domains", fmt.Sprintf("%s = %q is not one of enforce, log, off", d, m))
		}
	}
}
