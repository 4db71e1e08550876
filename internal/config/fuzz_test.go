package config_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"kanmon/internal/config"
)

// FuzzParse: config.Parse never panics, a refusal is a *config.Errors that
// says something, and a config it accepts validates again (Finish) without
// error and with absolute paths. The seed corpus in
// testdata/fuzz/FuzzParse holds the template `kanmon init` writes,
// rendered with example values, and broken configs of every kind.
//
//	go test -run '^$' -fuzz FuzzParse -fuzztime 60s ./internal/config
func FuzzParse(f *testing.F) {
	f.Add([]byte("hostname = \"mx.example.org\"\ndomains = [\"example.org\"]\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		const path = "/etc/kanmon/kanmon.toml"
		c, err := config.Parse(raw, path)
		if err != nil {
			if c != nil {
				t.Fatalf("Parse returned a config and an error %v", err)
			}
			var errs *config.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Parse error %T (%v) is not *config.Errors", err, err)
			}
			if len(errs.List) == 0 || strings.TrimSpace(err.Error()) == "" {
				t.Fatalf("Parse refused with an empty error list")
			}
			return
		}
		if c == nil {
			t.Fatal("Parse returned nil, nil")
		}
		if err := c.Finish(); err != nil {
			t.Fatalf("a config Parse accepted does not validate again:\n%v\ninput:\n%s", err, raw)
		}
		if !filepath.IsAbs(c.DataDir) {
			t.Fatalf("data_dir %q is not absolute after Parse", c.DataDir)
		}
		for _, n := range c.Trusted {
			if !n.IsValid() || n != n.Masked() {
				t.Fatalf("trusted network %v is not a valid masked prefix", n)
			}
		}
	})
}
