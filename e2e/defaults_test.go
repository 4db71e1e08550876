package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"kanmon/internal/config"
)

// flatten turns a decoded TOML document into "table.key" -> value.
func flatten(prefix string, m map[string]any, out map[string]any) {
	for k, v := range m {
		full := k
		if prefix != "" {
			full = prefix + "." + k
		}
		// A nested table is a section, except the map-valued settings
		// (routes, users, max_connections_by_listener), which are values.
		if sub, ok := v.(map[string]any); ok && prefix == "" {
			flatten(full, sub, out)
			continue
		}
		out[full] = v
	}
}

// codeDefaults is config.Default() as "table.key" -> TOML value.
func codeDefaults(t *testing.T) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	d := config.Default()
	// The encoder leaves nil slices out; their default is "none".
	for _, p := range []*[]string{&d.Domains, &d.RelayDomains, &d.TrustedNetworks, &d.Listeners.AdminHosts} {
		if *p == nil {
			*p = []string{}
		}
	}
	if err := toml.NewEncoder(&buf).Encode(d); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if _, err := toml.Decode(buf.String(), &m); err != nil {
		t.Fatal(err)
	}
	out := map[string]any{}
	flatten("", m, out)
	for k := range deprecated {
		delete(out, k)
	}
	return out
}

// deprecated keys are still read for one release, but neither written by
// kanmon init nor documented as settings.
var deprecated = map[string]bool{"delivery.dns_server": true}

// sameValue reports whether a documented or templated value (as written:
// "25MiB", "5m", "100", "`[]`", "true") equals the code's default.
func sameValue(written string, code any) bool {
	w := strings.Trim(strings.TrimSpace(written), "`")
	if u, err := strconv.Unquote(w); err == nil {
		w = u
	}
	switch c := code.(type) {
	case bool:
		return w == strconv.FormatBool(c)
	case int64:
		if n, err := strconv.ParseInt(w, 10, 64); err == nil {
			return n == c
		}
		n, err := config.ParseSize(w)
		return err == nil && n == c
	case float64:
		f, err := strconv.ParseFloat(w, 64)
		return err == nil && f == c
	case string:
		if w == c {
			return true
		}
		wd, err1 := time.ParseDuration(w)
		cd, err2 := time.ParseDuration(c)
		return err1 == nil && err2 == nil && wd == cd
	case []any:
		var doc struct{ V []any }
		if _, err := toml.Decode("V = "+w, &doc); err != nil {
			return false
		}
		return fmt.Sprint(doc.V) == fmt.Sprint(c)
	case map[string]any:
		return len(c) == 0 && w == "{}"
	}
	return false
}

// templateValues runs kanmon init and reads the file it writes, with each
// value as written in it.
func templateValues(t *testing.T) map[string]any {
	t.Helper()
	dir := t.TempDir()
	mustKanmon(t, dir, "", "init", "--dir", dir, "--domain", domain, "--hostname", hostname)
	raw, err := os.ReadFile(filepath.Join(dir, "kanmon.toml"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if _, err := toml.Decode(string(raw), &m); err != nil {
		t.Fatal(err)
	}
	out := map[string]any{}
	flatten("", m, out)
	return out
}

// written renders a value decoded from the template the way sameValue
// reads it.
func written(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = written(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case map[string]any:
		if len(x) == 0 {
			return "{}"
		}
	}
	return fmt.Sprint(v)
}

// Keys whose kanmon init value is the deployment's own, not a default.
var initSetsItself = map[string]bool{
	"hostname": true, "domains": true, "data_dir": true,
	"listeners.mx": true, "listeners.submission": true, "listeners.smtps": true,
	"listeners.pop3": true, "listeners.pop3s": true, "listeners.admin": true,
	"tls.cert": true, "tls.key": true,
}

// TestDefaultsPinned ties the three places a default is stated: the
// code (config.Default), the file kanmon init writes, and the README's
// configuration table. Every key of one is in the others with the same
// value, so none can drift.
func TestDefaultsPinned(t *testing.T) {
	t.Parallel()
	code := codeDefaults(t)
	tmpl := templateValues(t)
	for k, v := range tmpl {
		c, ok := code[k]
		if !ok {
			t.Errorf("kanmon init writes %s, which config.Default does not have", k)
			continue
		}
		if !initSetsItself[k] && !sameValue(written(v), c) {
			t.Errorf("kanmon init writes %s = %s, config.Default has %v", k, written(v), c)
		}
	}
	for k := range code {
		if _, ok := tmpl[k]; !ok {
			t.Errorf("config.Default has %s, which kanmon init does not write", k)
		}
	}

	doc := readmeDefaults(t)
	// What the README names differently from the code on purpose.
	prose := map[string]string{
		"log_file":           "stderr", // "" means stderr
		"delivery.helo_name": "hostname",
		"data_dir":           "data", // kanmon init's; the demo mode uses kanmon-data
	}
	var keys []string
	for k := range code {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if initSetsItself[k] && k != "data_dir" && k != "tls.cert" && k != "tls.key" {
			continue // documented without a default
		}
		w, ok := doc[k]
		if !ok {
			t.Errorf("README's configuration table does not document %s (default %v)", k, code[k])
			continue
		}
		if p, ok := prose[k]; ok {
			if w != p {
				t.Errorf("README: %s default %q, want %q", k, w, p)
			}
			continue
		}
		if !sameValue(w, code[k]) {
			t.Errorf("README: %s default %s, config.Default has %v", k, w, code[k])
		}
	}
	for k := range doc {
		if _, ok := code[k]; !ok {
			t.Errorf("README documents %s, which config.Default does not have", k)
		}
	}
	if len(doc) < 40 {
		t.Errorf("read %d defaults from the README's table, want the whole table (40+): %v", len(doc), doc)
	}
}

var (
	readmeCell    = regexp.MustCompile("`([^`]*)`")
	readmeSection = regexp.MustCompile("^`\\[([a-z0-9]+)\\]`\\s*")
)

// readmeDefaults reads "table.key" -> default as written from the
// README's configuration table (rows like "| `[queue]` `max_messages`,
// `max_size` | 100000, `4GiB` | ... |"; a [table] cell starts a table for
// the rows below it).
func readmeDefaults(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(raw), "\n## Configuration\n")
	if !ok {
		t.Fatal("README has no ## Configuration section")
	}
	out := map[string]string{}
	section := ""
	in, perName := false, false
	for _, line := range strings.Split(rest, "\n") {
		if !strings.HasPrefix(line, "|") {
			if in {
				break // the table ended
			}
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) < 3 || strings.TrimSpace(cells[0]) == "key" || strings.HasPrefix(strings.TrimSpace(cells[0]), "---") {
			in = true
			continue
		}
		in = true
		keysCell, defCell := strings.TrimSpace(cells[0]), strings.TrimSpace(cells[1])
		if perName && readmeSection.FindStringSubmatch(keysCell) == nil && !strings.HasPrefix(keysCell, "`[") {
			continue
		}
		if strings.HasPrefix(keysCell, "`[") && strings.Contains(keysCell, `."`) {
			// A per-name table (`[relay_verify."DOMAIN"]`) and its rows:
			// no defaults of their own in config.Default.
			perName = true
			continue
		}
		if m := readmeSection.FindStringSubmatch(keysCell); m != nil {
			perName = false
			section = m[1]
			keysCell = keysCell[len(m[0]):]
		}
		var keys []string
		for _, m := range readmeCell.FindAllStringSubmatch(keysCell, -1) {
			keys = append(keys, m[1])
		}
		if defCell == "" {
			continue // no default (hostname, domains, listeners)
		}
		sep := ","
		if strings.Contains(keysCell, " / ") {
			sep = " / "
		}
		defs := strings.Split(defCell, sep)
		if len(defs) == 1 {
			for len(defs) < len(keys) { // one default for every key of the row
				defs = append(defs, defs[0])
			}
		}
		if len(defs) != len(keys) {
			t.Errorf("README row %q: %d keys, %d defaults", line, len(keys), len(defs))
			continue
		}
		for i, k := range keys {
			if section != "" {
				k = section + "." + k
			}
			d := strings.TrimSpace(defs[i])
			d, _, _ = strings.Cut(d, " (") // "`0s` (off)"
			out[k] = strings.Trim(d, "`")
		}
	}
	return out
}
