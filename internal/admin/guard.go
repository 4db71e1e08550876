package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// openPaths are served without the token: /healthz says only "ok", and
// /metrics holds counters and gauges (no address, header or account), so
// load balancers and Prometheus scrapers need no secret. The Host check
// still applies to them.
var openPaths = map[string]bool{"/healthz": true, "/metrics": true}

// Guard checks the Host header and the bearer token of admin requests.
type Guard struct {
	token [sha256.Size]byte
	ip    netip.Addr // the listener's bound address
	port  string
	names map[string]bool // lower-case host names besides localhost
	log   *slog.Logger
}

// NewGuard returns a Guard for a listener bound to bound, accepting the
// token and, besides the bound address and localhost, the host names in
// names (without port; the listener's port is implied).
func NewGuard(token string, bound net.Addr, names []string, log *slog.Logger) *Guard {
	g := &Guard{token: sha256.Sum256([]byte(token)), names: map[string]bool{"localhost": true}, log: log}
	if ap, err := netip.ParseAddrPort(bound.String()); err == nil {
		g.ip = ap.Addr().Unmap()
		g.port = bound.String()[strings.LastIndexByte(bound.String(), ':')+1:]
	}
	for _, n := range names {
		g.names[strings.ToLower(strings.TrimSuffix(n, "."))] = true
	}
	return g
}

// hostOK reports whether a Host header names this listener.
func (g *Guard) hostOK(hostHeader string) bool {
	host, port, err := net.SplitHostPort(hostHeader)
	if err != nil {
		// No port: HTTP's default.
		host, port = strings.Trim(hostHeader, "[]"), "80"
	}
	if port != g.port || host == "" {
		return false
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		// A wildcard listener is reached at any of the machine's
		// addresses; an IP literal is never a rebound name.
		return ip == g.ip || g.ip.IsUnspecified()
	}
	return g.names[strings.ToLower(strings.TrimSuffix(host, "."))]
}

// tokenOK reports whether r carries the token ("Authorization: Bearer
// TOKEN"). Both sides are hashed first, so the comparison takes the same
// time whatever the length of the guess.
func (g *Guard) tokenOK(r *http.Request) bool {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(sum[:], g.token[:]) == 1
}

// Wrap serves h only for requests that pass the Host check and, outside
// openPaths, carry the token.
func (g *Guard) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case !g.hostOK(r.Host):
			g.refuse(w, r, http.StatusMisdirectedRequest, "admin.host",
				"this listener answers only to its own address or a name in listeners.admin_hosts")
		case !openPaths[r.URL.Path] && !g.tokenOK(r):
			w.Header().Set("WWW-Authenticate", `Bearer realm="kanmon admin"`)
			g.refuse(w, r, http.StatusUnauthorized, "admin.token",
				"send the token from DATA_DIR/admin.token as Authorization: Bearer TOKEN")
		default:
			h.ServeHTTP(w, r)
		}
	})
}

func (g *Guard) refuse(w http.ResponseWriter, r *http.Request, code int, rule, text string) {
	g.log.Info("admin", "listener", "admin", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path,
		"host", truncate(r.Host, 256), "rule", rule, "code", code)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": text})
}

// truncate bounds client-chosen text in a log line.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
