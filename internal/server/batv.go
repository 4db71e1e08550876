package server

import (
	"errors"
	"io/fs"
	"os"
	"time"

	"kanmon/internal/batv"
	"kanmon/internal/courier/remote"
)

// openBATV loads the tag keys (making the first one if there is none),
// brings the per-domain record up to date, and hands the guard to the
// RCPT check and the remote courier. existing says whether the data
// directory held an account database before this start (see batv.Sync:
// an installation without a record that is not new gets a grace period).
func (s *Server) openBATV(existing bool, r *remote.Remote) error {
	// What an operator's copy or umask left open is tightened (and
	// logged) before the keys are read.
	s.setMode(s.cfg.BATVDir(), dataDirMode, false)
	for _, f := range batv.Files(s.cfg.BATVDir()) {
		s.setMode(f, secretMode, false)
	}
	kr, created, err := batv.OpenKeyring(s.cfg.BATVDir(), time.Now())
	if err != nil {
		return err
	}
	if created {
		s.log.Info("batv", "op", "keygen", "path", kr.Path())
	}
	s.batv = batv.NewGuard(kr)
	s.syncBATV(existing)
	s.pol.BATV = s.batv
	r.Tagger = s.batv
	return nil
}

// syncBATV gives the guard every local domain's mode and record, at start
// and on reload (a domain added since). One batv line per domain whose
// tagging began or ended.
func (s *Server) syncBATV(existing bool) {
	modes := map[string]batv.Mode{}
	for d := range s.domains().Local {
		modes[d] = batv.Mode(s.cfg.BATVMode(d))
	}
	states, changes, err := batv.Sync(s.cfg.BATVDir(), modes, existing, time.Now())
	if err != nil {
		// Keep what the guard had: tagging and checking go on as before.
		s.log.Error("batv", "op", "sync", "err", err.Error())
		return
	}
	for _, c := range changes {
		attrs := []any{"op", "tagging_off", "domain", c.Domain, "mode", string(modes[c.Domain])}
		if c.State.Tagging {
			attrs = []any{"op", "tagging_on", "domain", c.Domain, "mode", string(modes[c.Domain])}
			if !c.State.GraceUntil.IsZero() {
				attrs = append(attrs, "grace_until", c.State.GraceUntil.Format(time.RFC3339),
					"reason", "the domain may have sent untagged mail: untagged bounces are accepted and logged until then")
			}
		}
		s.log.Info("batv", attrs...)
	}
	s.batv.SetDomains(modes, states)
}

// hadDatabase reports whether the account database exists (before Open
// creates it).
func hadDatabase(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}
