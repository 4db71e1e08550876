package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestServiceUnitVerifies: dist/kanmon.service passes systemd-analyze
// verify (the unit's /usr/bin/kanmon is pointed at the binary under
// test, which must exist for verify) and keeps its hardening lines.
func TestServiceUnitVerifies(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join("..", "dist", "kanmon.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit := string(raw)
	for _, want := range []string{"User=kanmon", "AmbientCapabilities=CAP_NET_BIND_SERVICE", "NoNewPrivileges=yes",
		"ProtectSystem=strict", "ReadWritePaths=/var/lib/kanmon", "ProtectHome=yes", "PrivateTmp=yes",
		"ExecReload=/bin/kill -HUP $MAINPID", "StandardError=journal"} {
		if !strings.Contains(unit, "\n"+want+"\n") {
			t.Errorf("dist/kanmon.service lacks %q", want)
		}
	}
	sa := needTool(t, "systemd-analyze")
	dir := t.TempDir()
	path := filepath.Join(dir, "kanmon.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(unit, "/usr/bin/kanmon", kanmonBin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", "--man=no", path).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
