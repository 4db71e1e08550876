package server

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"kanmon/internal/admin"
)

// serveAdmin serves the admin listener on ln. Its handler is built here,
// once the listener is bound, because the Host check needs the bound
// address.
func (s *Server) serveAdmin(ln net.Listener) error {
	s.admin.Handler = s.adminHandler(ln.Addr())
	return s.admin.Serve(ln)
}

// adminHandler is the admin listener's mux behind the admin guard: every
// request must name the listener in its Host header, and everything but
// /healthz and /metrics needs the token (see package admin).
func (s *Server) adminHandler(bound net.Addr) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "ok")
	})
	// Operator queue commands (kanmon queue ...): through the scheduler,
	// so they never race a delivery.
	mux.Handle("/queue/", admin.QueueHandler(s.sched, s.log))
	mux.Handle("/metrics", promhttp.HandlerFor(s.met.Registry, promhttp.HandlerOpts{}))
	// Profiles for operators chasing CPU; they show the program's memory
	// and stacks, so they need the token like the queue.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	return admin.NewGuard(s.adminToken, bound, s.cfg.Listeners.AdminHosts, s.log).Wrap(mux)
}
