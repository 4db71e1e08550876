package inbound

import (
	"context"
	"strings"

	"kanmon/internal/config"
	"kanmon/internal/policy"
)

// CheckAccess applies the access lists: an allow entry skips every later
// connection and sender check (rule client.allow); a deny entry refuses
// with 554 5.7.1 (client.deny). Allow wins over deny, so an operator can
// deny a network and allow one host in it. A host name entry matches
// only a reverse name that resolves back to the client (FCrDNS), since
// whoever controls the reverse zone can claim any name.
func CheckAccess(ctx context.Context, s *Screen, c *Conn) Result {
	allow, deny := s.cfg.AllowParsed, s.cfg.DenyParsed
	if allow.Empty() && deny.Empty() {
		return Result{}
	}
	var names []string
	if allow.NeedsName() || deny.NeedsName() {
		names = s.confirmedNames(ctx, c)
	}
	if entry, ok := matchAccess(allow, c, names); ok {
		return Result{Rule: "client.allow", Action: config.ActionLog, Allow: true,
			Verdict: policy.Verdict{Accept: true, Rule: "client.allow", Reason: "client is on the allow list"},
			Attrs:   []any{"entry", entry}}
	}
	if entry, ok := matchAccess(deny, c, names); ok {
		r := judge(config.ActionReject, "client.deny", 554, 554, "7.1",
			"access denied to "+c.IP.String()+" by local policy", "entry", entry)
		return r
	}
	return Result{}
}

// matchAccess returns the entry of l matching the client.
func matchAccess(l config.AccessList, c *Conn, names []string) (string, bool) {
	ip := c.IP.Unmap()
	for _, p := range l.Prefixes {
		if p.Contains(ip) {
			return p.String(), true
		}
	}
	for _, n := range names {
		for _, want := range l.Names {
			if n == want {
				return want, true
			}
		}
		for _, suf := range l.Suffixes {
			if strings.HasSuffix(n, suf) {
				return "*" + suf, true
			}
		}
	}
	return "", false
}

// confirmedNames returns the client's reverse names that resolve back to
// its address; none when DNS fails.
func (s *Screen) confirmedNames(ctx context.Context, c *Conn) []string {
	names, err := c.PTR(ctx, s)
	if err != nil {
		return nil
	}
	var out []string
	for _, n := range names {
		if s.resolvesTo(ctx, n, c) {
			out = append(out, n)
		}
	}
	return out
}
