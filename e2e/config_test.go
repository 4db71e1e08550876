package e2e

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

type wantErr struct {
	key  string
	line int
}

// readWants reads the "# want: KEY LINE" comments of a bad config file.
func readWants(t *testing.T, path string) []wantErr {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ws []wantErr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "# want: ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 {
			t.Fatalf("%s: bad want line %q", path, sc.Text())
		}
		n, err := strconv.Atoi(f[1])
		if err != nil {
			t.Fatalf("%s: bad want line %q", path, sc.Text())
		}
		ws = append(ws, wantErr{f[0], n})
	}
	if len(ws) == 0 {
		t.Fatalf("%s has no '# want: KEY LINE' comment", path)
	}
	return ws
}

// TestCheckConfigBad: every file under testdata/badconfig is refused by
// kanmon check-config with a non-zero exit status, and each expected
// problem is reported as "FILE:LINE: KEY: message".
func TestCheckConfigBad(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/badconfig/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad configs found: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".toml"), func(t *testing.T) {
			t.Parallel()
			abs, err := filepath.Abs(file)
			if err != nil {
				t.Fatal(err)
			}
			wants := readWants(t, abs)
			out, code := runKanmon(t, t.TempDir(), "", "check-config", "--config", abs)
			if code == 0 {
				t.Fatalf("check-config accepted %s (exit 0):\n%s", file, out)
			}
			if strings.Contains(out, ": OK") {
				t.Errorf("check-config says OK:\n%s", out)
			}
			for _, w := range wants {
				want := abs + ":" + strconv.Itoa(w.line) + ": " + w.key + ":"
				if !strings.Contains(out, want) {
					t.Errorf("output does not report %q (key %s at line %d); got:\n%s", want, w.key, w.line, out)
				}
			}
		})
	}
}

// TestCheckConfigInit: the file kanmon init writes passes check-config,
// also after the edits the other tests make.
func TestCheckConfigInit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "kanmon.toml")
	ports := freePorts(t, 4)
	out := mustKanmon(t, dir, "", "init", "--dir", dir, "--domain", domain, "--hostname", hostname,
		"--mx-addr", addr(ports[0]), "--submission-addr", addr(ports[1]), "--smtps-addr", addr(ports[2]), "--admin-addr", addr(ports[3]))
	if !strings.Contains(out, "wrote "+cfg) {
		t.Errorf("init output: %q", out)
	}
	out = mustKanmon(t, dir, "", "check-config", "--config", cfg)
	if !strings.Contains(out, cfg+": OK") {
		t.Errorf("check-config output: %q", out)
	}
	editConfig(t, cfg, map[string]string{
		"trusted_networks":              `["127.0.0.1/32", "192.0.2.0/24"]`,
		"relay_domains":                 `["partner.test"]`,
		"limits.max_message_size":       `"64KiB"`,
		"limits.max_recipients":         "3",
		"limits.max_connections_per_ip": "250",
	})
	mustKanmon(t, dir, "", "check-config", "--config", cfg)

	// init refuses to overwrite.
	if out, code := runKanmon(t, dir, "", "init", "--dir", dir, "--domain", domain, "--hostname", hostname); code == 0 {
		t.Errorf("a second kanmon init overwrote the config:\n%s", out)
	}
}

// TestServeRefusesBadConfig: kanmon serve does not start on a config
// check-config refuses.
func TestServeRefusesBadConfig(t *testing.T) {
	t.Parallel()
	s := setupServer(t, options{})
	editConfig(t, s.Config, map[string]string{"trusted_networks": `["0.0.0.0/0"]`})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kanmonBin, "serve", "--config", s.Config)
	cmd.Dir = s.Dir
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 || ctx.Err() != nil {
		t.Fatalf("kanmon serve on an open-relay config: %v (want a non-zero exit at once)\n%s", err, out)
	}
	if !strings.Contains(string(out), "trusted_networks") {
		t.Errorf("the error does not name trusted_networks:\n%s", out)
	}
}
