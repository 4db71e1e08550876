package admin

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

const testToken = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func testGuard(t *testing.T, bound string, names ...string) http.Handler {
	t.Helper()
	a, err := net.ResolveTCPAddr("tcp", bound)
	if err != nil {
		t.Fatal(err)
	}
	g := NewGuard(testToken, a, names, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return g.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "served") }))
}

// TestGuard: DNS rebinding is refused whatever the token; the token is
// needed everywhere but /healthz and /metrics.
func TestGuard(t *testing.T) {
	t.Parallel()
	h := testGuard(t, "127.0.0.1:8025", "admin.example.org")
	cases := []struct {
		name, host, path, auth string
		want                   int
	}{
		{"own address with token", "127.0.0.1:8025", "/queue/list", "Bearer " + testToken, 200},
		{"localhost with token", "localhost:8025", "/queue/list", "Bearer " + testToken, 200},
		{"configured name", "Admin.Example.ORG.:8025", "/queue/list", "bearer " + testToken, 200},
		{"rebound name with token", "rebind.attacker.example:8025", "/queue/list", "Bearer " + testToken, 421},
		{"rebound name, healthz", "rebind.attacker.example:8025", "/healthz", "", 421},
		{"own address, other port", "127.0.0.1:9999", "/queue/list", "Bearer " + testToken, 421},
		{"other IP literal", "127.0.0.2:8025", "/queue/list", "Bearer " + testToken, 421},
		{"no port (80)", "localhost", "/queue/list", "Bearer " + testToken, 421},
		{"no token", "127.0.0.1:8025", "/queue/list", "", 401},
		{"wrong token", "127.0.0.1:8025", "/queue/list", "Bearer " + testToken[1:] + "0", 401},
		{"token prefix", "127.0.0.1:8025", "/queue/list", "Bearer " + testToken[:10], 401},
		{"basic scheme", "127.0.0.1:8025", "/queue/list", "Basic " + testToken, 401},
		{"pprof without token", "127.0.0.1:8025", "/debug/pprof/", "", 401},
		{"pprof with token", "127.0.0.1:8025", "/debug/pprof/", "Bearer " + testToken, 200},
		{"healthz without token", "127.0.0.1:8025", "/healthz", "", 200},
		{"metrics without token", "localhost:8025", "/metrics", "", 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://x"+c.path, nil)
			r.Host = c.host
			if c.auth != "" {
				r.Header.Set("Authorization", c.auth)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != c.want {
				t.Errorf("Host %q %s auth %q: %d %s, want %d", c.host, c.path, c.auth, w.Code, w.Body, c.want)
			}
		})
	}
}

// TestGuardWildcard: a listener on a wildcard address is reached at any
// IP literal, but still not by a name.
func TestGuardWildcard(t *testing.T) {
	t.Parallel()
	h := testGuard(t, "[::]:8025")
	for host, want := range map[string]int{"192.0.2.1:8025": 200, "[::1]:8025": 200, "evil.example:8025": 421} {
		r := httptest.NewRequest("GET", "http://x/queue/list", nil)
		r.Host = host
		r.Header.Set("Authorization", "Bearer "+testToken)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("Host %q: %d, want %d", host, w.Code, want)
		}
	}
}

// TestEnsureToken: created once, 0600 whatever the umask allows, kept on
// the next call, and read back.
func TestEnsureToken(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "admin.token")
	created, err := EnsureToken(p)
	if err != nil || !created {
		t.Fatalf("EnsureToken = %v, %v; want true, nil", created, err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Errorf("token file mode %o, want 600", m)
	}
	tok, err := ReadToken(p)
	if err != nil || len(tok) != 64 {
		t.Fatalf("ReadToken = %q, %v", tok, err)
	}
	if created, err := EnsureToken(p); err != nil || created {
		t.Errorf("second EnsureToken = %v, %v; want false, nil", created, err)
	}
	if again, _ := ReadToken(p); again != tok {
		t.Errorf("the token changed on the second EnsureToken")
	}
}
