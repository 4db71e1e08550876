package cli

import (
	"strings"
	"testing"
)

func TestReadCheckpasswordInput(t *testing.T) {
	u, p, err := readCheckpasswordInput(strings.NewReader("alice@example.org\x00secret pw\x00\x00"))
	if err != nil || u != "alice@example.org" || p != "secret pw" {
		t.Fatalf("got %q %q %v", u, p, err)
	}
	if _, _, err := readCheckpasswordInput(strings.NewReader("no-nul")); err == nil {
		t.Error("input without NULs accepted")
	}
	if _, _, err := readCheckpasswordInput(strings.NewReader(strings.Repeat("x", 600) + "\x00y\x00")); err == nil {
		t.Error("input over 512 bytes accepted")
	}
}

func TestParseCheckpasswordArgs(t *testing.T) {
	cfg, reply, err := parseCheckpasswordArgs([]string{"--config", "/etc/k.toml", "/usr/lib/dovecot/checkpassword-reply"})
	if err != nil || cfg != "/etc/k.toml" || len(reply) != 1 {
		t.Fatalf("got %q %v %v", cfg, reply, err)
	}
	if _, _, err := parseCheckpasswordArgs([]string{"--config", "x"}); err == nil {
		t.Error("no reply program accepted")
	}
}
