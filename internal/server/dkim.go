package server

import (
	"strings"
	"time"

	"kanmon/internal/dkim"
)

// ensureDKIMKeys gives every local domain without DKIM keys a fresh set
// ([dkim] new_keys), at start and on reload, so a domain signs from its
// first message; the log line tells the operator to publish the record
// (kanmon dns-records). Address literals and single-label names
// (localhost, the demo's domain) have no public DNS and get none.
func (s *Server) ensureDKIMKeys() {
	if !s.cfg.DKIM.Sign {
		return
	}
	for _, d := range s.sortedDomains() {
		if !dkim.ValidDomain(d) || !strings.Contains(d, ".") {
			continue
		}
		made, err := s.dkim.Ensure(d, s.cfg.DKIM.NewKeyAlgorithms(), time.Now())
		if err != nil {
			s.log.Error("dkim", "op", "keygen", "domain", d, "err", err.Error())
		}
		for _, k := range made {
			s.log.Info("dkim", "op", "keygen", "domain", d, "selector", k.Selector, "algo", k.Algo, "path", k.Path,
				"reason", "no key for this domain: publish it with kanmon dns-records "+d)
		}
	}
}

// secureDKIMKeys gives the key directories mode 0700 and the keys 0600.
func (s *Server) secureDKIMKeys() {
	dirs, files := dkim.NewStore(s.cfg.DKIMDir()).Files()
	for _, d := range dirs {
		s.setMode(d, dataDirMode, false)
	}
	for _, f := range files {
		s.setMode(f, secretMode, false)
	}
}
