package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// adminToken reads the admin token kanmon init wrote into the data
// directory.
func (s *server) adminToken(t testing.TB) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(s.Dir, "data", "admin.token"))
	if err != nil {
		t.Fatalf("reading the admin token: %v", err)
	}
	return strings.TrimSpace(string(raw))
}

// adminStatus requests path on the admin listener with curl, with the
// given Host header and token ("" sends none), and returns the HTTP
// status and body.
func adminStatus(t *testing.T, s *server, method, path, host, token string) (int, string) {
	t.Helper()
	args := []string{"-X", method, "-w", "\n%{http_code}", "-H", "X-Kanmon-Admin: 1"}
	if host != "" {
		args = append(args, "-H", "Host: "+host)
	}
	if token != "" {
		args = append(args, "-H", "Authorization: Bearer "+token)
	}
	out, code := curl(t, append(args, "http://"+s.Admin+path)...)
	if code != 0 {
		t.Fatalf("curl %s %s: exit status %d\n%s", method, path, code, out)
	}
	i := strings.LastIndexByte(out, '\n')
	status, err := strconv.Atoi(strings.TrimSpace(out[i+1:]))
	if err != nil {
		t.Fatalf("curl %s %s: no status in %q", method, path, out)
	}
	return status, out[:i]
}

// TestAdminRebindingAndToken: the admin listener answers only to its own
// address (or localhost) in the Host header, so a web page that rebinds
// its name to 127.0.0.1 is refused even with the token; everything but
// /healthz and /metrics needs the token, pprof included.
func TestAdminRebindingAndToken(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{})
	tok := s.adminToken(t)
	if len(tok) < 32 {
		t.Fatalf("admin token %q is too short", tok)
	}
	_, port, _ := strings.Cut(s.Admin, ":")
	rebound := "rebind.attacker.example:" + port
	cases := []struct {
		name, method, path, host, token string
		want                            int
	}{
		{"rebound name, queue list, token", "GET", "/queue/list", rebound, tok, 421},
		{"rebound name, release, token", "POST", "/queue/release?id=qx", rebound, tok, 421},
		{"rebound name, pprof, token", "GET", "/debug/pprof/", rebound, tok, 421},
		{"rebound name, metrics", "GET", "/metrics", rebound, "", 421},
		{"queue list without token", "GET", "/queue/list", "", "", 401},
		{"queue list, wrong token", "GET", "/queue/list", "", strings.Repeat("0", len(tok)), 401},
		{"release without token", "POST", "/queue/release?id=qx", "", "", 401},
		{"pprof without token", "GET", "/debug/pprof/", "", "", 401},
		{"pprof profile without token", "GET", "/debug/pprof/profile?seconds=1", "", "", 401},
		{"queue list with token", "GET", "/queue/list", "", tok, 200},
		{"queue list with token via localhost", "GET", "/queue/list", "localhost:" + port, tok, 200},
		{"pprof with token", "GET", "/debug/pprof/", "", tok, 200},
		{"healthz without token", "GET", "/healthz", "", "", 200},
		{"metrics without token", "GET", "/metrics", "", "", 200},
	}
	for _, c := range cases {
		status, body := adminStatus(t, s, c.method, c.path, c.host, c.token)
		if status != c.want {
			t.Errorf("%s: %s %s Host %q: HTTP %d, want %d\n%s", c.name, c.method, c.path, c.host, status, c.want, body)
		}
		if strings.Contains(body, tok) {
			t.Errorf("%s: the reply shows the token", c.name)
		}
	}
	if strings.Contains(s.LogRaw(t), tok) {
		t.Errorf("the token reached the log")
	}
	// The refusals are logged with their rule.
	s.WaitLog(t, "admin refusal for the rebound Host", func(l logLine) bool {
		return l.str("msg") == "admin" && l.str("rule") == "admin.host" && strings.HasPrefix(l.str("host"), "rebind.attacker.example")
	})
	s.WaitLog(t, "admin refusal without token", func(l logLine) bool {
		return l.str("msg") == "admin" && l.str("rule") == "admin.token" && l.str("path") == "/debug/pprof/"
	})
}

// TestAdminQueueNoDescriptorLeak: queue operations by id close the queue
// file they open: 50 rounds of show, hold and release against the real
// server leave its open descriptors where they were.
func TestAdminQueueNoDescriptorLeak(t *testing.T) {
	t.Parallel()
	needTool(t, "curl")
	s := startServer(t, options{set: map[string]string{"trusted_networks": `["127.0.0.1/32"]`}})
	// Mail for a remote domain stays queued: DNS goes nowhere.
	id := sendMail(t, s.MX, "x@remote.test", []string{"friend@remote.test"},
		message("x@remote.test", "friend@remote.test", "leak", newMessageID(t), "stay queued\n"))
	// Hold it, so no delivery attempt opens it meanwhile.
	if st, body := adminStatus(t, s, "POST", "/queue/hold?id="+id, "", s.adminToken(t)); st != 200 {
		t.Fatalf("hold: HTTP %d %s", st, body)
	}
	fds := func() int {
		ents, err := os.ReadDir("/proc/" + strconv.Itoa(s.PID()) + "/fd")
		if err != nil {
			t.Fatalf("counting descriptors: %v", err)
		}
		return len(ents)
	}
	before := fds()
	tok := s.adminToken(t)
	for _, op := range []struct{ method, path string }{{"GET", "show"}, {"POST", "hold"}, {"POST", "release"}} {
		// One curl, 50 requests over one connection.
		args := []string{"-f", "-o", "/dev/null", "-X", op.method, "-H", "Authorization: Bearer " + tok, "-H", "X-Kanmon-Admin: 1"}
		for range 50 {
			args = append(args, "http://"+s.Admin+"/queue/"+op.path+"?id="+id)
		}
		if out, code := curl(t, args...); code != 0 {
			t.Fatalf("curl 50 x %s: exit status %d\n%s", op.path, code, out)
		}
	}
	after := fds()
	t.Logf("open descriptors of kanmon serve: %d before, %d after 150 queue requests", before, after)
	if after > before+10 {
		t.Errorf("open descriptors: %d before, %d after 50 rounds of show, hold and release", before, after)
	}
	// An error reply names no file of the server.
	st, body := adminStatus(t, s, "GET", "/queue/show?id=qnosuchmessage", "", tok)
	if st != 404 || strings.Contains(body, "/") || !strings.Contains(body, "no such message") {
		t.Errorf("show of a missing message: HTTP %d %s; want 404 with a plain message and no path", st, body)
	}
	st, body = adminStatus(t, s, "POST", "/queue/delete?id=qnosuchmessage", "", tok)
	if st != 404 || strings.Contains(body, "/") {
		t.Errorf("delete of a missing message: HTTP %d %s; want 404 with no path", st, body)
	}
}
