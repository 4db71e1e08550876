package batv

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// stateFile is the per-domain record's file name in the key directory.
const stateFile = "domains.json"

// DomainState is what the data directory remembers of one domain: since
// when its outgoing mail is tagged, and until when untagged bounces are
// still accepted (and logged), because mail it sent before tagging
// began may still bounce.
type DomainState struct {
	// Tagging is false while the domain's mode is off.
	Tagging bool `json:"tagging"`
	// Since is when tagging began (zero while off).
	Since time.Time `json:"since,omitzero"`
	// GraceUntil is the end of the grace period (zero: none).
	GraceUntil time.Time `json:"grace_until,omitzero"`
}

// Change is one domain whose record Sync changed, for the log.
type Change struct {
	Domain string
	State  DomainState
}

// Sync brings the record in dir up to date with the domains' modes,
// writes it, and returns the states of the domains in modes. The rule: a domain is given a grace period of one Lifetime
// when tagging begins for it after it may have sent untagged mail, that
// is when it was recorded with tagging off, or when there is no record
// at all but the installation is not new (existing: an account database
// older than the record, an upgrade from a version without BATV). A
// domain the record has never seen on an existing record is new (every
// start records every local domain), and a new installation enforces at
// once: neither has sent mail without tags.
func Sync(dir string, modes map[string]Mode, existing bool, now time.Time) (map[string]DomainState, []Change, error) {
	path := filepath.Join(dir, stateFile)
	rec := map[string]DomainState{}
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(raw, &rec); err != nil {
			return nil, nil, fmt.Errorf("batv: read %s: %w", path, err)
		}
	case errors.Is(err, os.ErrNotExist):
	default:
		return nil, nil, fmt.Errorf("batv: read %s: %w", path, err)
	}
	noRecord := err != nil
	var changes []Change
	names := make([]string, 0, len(modes))
	for d := range modes {
		names = append(names, d)
	}
	sort.Strings(names)
	for _, d := range names {
		on := modes[d] != ModeOff
		old, seen := rec[d]
		var st DomainState
		switch {
		case !on:
			st = DomainState{}
		case seen && old.Tagging:
			continue
		default:
			st = DomainState{Tagging: true, Since: now.UTC().Truncate(time.Second)}
			if seen || noRecord && existing {
				st.GraceUntil = st.Since.Add(Lifetime)
			}
		}
		if seen && old == st {
			continue
		}
		rec[d] = st
		changes = append(changes, Change{Domain: d, State: st})
	}
	cur := make(map[string]DomainState, len(modes))
	for d := range modes {
		cur[d] = rec[d]
	}
	if len(changes) > 0 || noRecord {
		out, err := json.MarshalIndent(rec, "", "  ")
		if err != nil {
			return nil, nil, fmt.Errorf("batv: write %s: %w", path, err)
		}
		if err := writeFileSync(path, append(out, '\n')); err != nil {
			return nil, nil, err
		}
	}
	return cur, changes, nil
}
