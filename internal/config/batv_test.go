package config_test

import (
	"strings"
	"testing"

	"kanmon/internal/config"
)

func TestBATVSection(t *testing.T) {
	c, err := config.Parse([]byte(base+"[batv]\nmode = \"log\"\ndomains = { \"Example.org\" = \"off\" }\n"), "/k/kanmon.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.BATVMode("example.org") != "off" || c.BATVMode("other.example") != "log" {
		t.Errorf("modes: example.org %q, other %q", c.BATVMode("example.org"), c.BATVMode("other.example"))
	}
	if d := config.Default(); d.BATV.Mode != "enforce" {
		t.Errorf("default mode %q, want enforce", d.BATV.Mode)
	}
}

// TestBATVBadModes: an unknown mode is refused with its key and line.
func TestBATVBadModes(t *testing.T) {
	for _, tc := range []struct{ toml, want string }{
		{base + "[batv]\nmode = \"strict\"\n", "/k/kanmon.toml:4: batv.mode: \"strict\" is not one of enforce, log, off"},
		{base + "[batv]\ndomains = { \"example.org\" = \"warn\" }\n", "/k/kanmon.toml:4: batv.domains: example.org = \"warn\" is not one of"},
		{base + "[batv]\ndomains = { \"bad domain\" = \"log\" }\n", "/k/kanmon.toml:4: batv.domains: \"bad domain\" is not a valid domain"},
	} {
		_, err := config.Parse([]byte(tc.toml), "/k/kanmon.toml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config:\n%s\nerror %v, want %q", tc.toml, err, tc.want)
		}
	}
}
