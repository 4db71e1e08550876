package inbound

import (
	"context"
	"fmt"
	"strings"

	"kanmon/internal/config"
)

// dynamicLabels mark a reverse name as generic or dynamic: providers
// name the addresses of their home customers this way (seed 003).
// inbound.dynamic_labels extends the list.
var dynamicLabels = []string{"dyn", "dynamic", "dynip", "dhcp", "ppp", "pppoe", "pool", "dsl", "adsl", "vdsl", "xdsl",
	"cable", "client", "dial", "dialup", "dip", "broadband", "cpe", "nat", "unused", "unassigned"}

// submissionHint is the advice every dynamic-client refusal gives.
const submissionHint = ": send through your provider's mail server (submission, port 587), not directly to this MX"

// CheckDynamicClient: a client whose reverse name looks generic or
// dynamic — its address embedded in the name, or a label such as dyn,
// dhcp, ppp, pool, dsl, cable, client — is a home PC speaking straight
// to the MX (rule client.dynamic; default reject, 550 5.7.1).
func CheckDynamicClient(ctx context.Context, s *Screen, c *Conn) Result {
	if s.cfg.DynamicClient == config.ActionOff {
		return Result{}
	}
	names, err := c.PTR(ctx, s)
	if err != nil || len(names) == 0 {
		return Result{}
	}
	name := names[0]
	why, ok := dynamicName(name, c, s.cfg.DynamicLabels)
	if !ok {
		return Result{}
	}
	return judge(s.cfg.DynamicClient, "client.dynamic", 550, 450, "7.1",
		"the reverse name "+name+" of "+c.IP.String()+" looks dynamic"+submissionHint, "ptr", name, "why", why)
}

// dynamicName reports why name looks like a dynamic client's reverse
// name. The domain's last two labels are not looked at, so a provider
// called "pool.example" is not held against its own servers.
func dynamicName(name string, c *Conn, extra []string) (string, bool) {
	labels := strings.Split(name, ".")
	if len(labels) <= 2 {
		return "", false
	}
	host := strings.Join(labels[:len(labels)-2], ".")
	if embedsAddress(host, c) {
		return "address in name", true
	}
	for _, tok := range strings.FieldsFunc(host, func(r rune) bool { return r == '.' || r == '-' || r == '_' }) {
		word := strings.TrimRight(tok, "0123456789")
		for _, l := range dynamicLabels {
			if word == l {
				return "label " + tok, true
			}
		}
		for _, l := range extra {
			if word == strings.ToLower(l) || tok == strings.ToLower(l) {
				return "label " + tok, true
			}
		}
	}
	return "", false
}

// embedsAddress reports whether an IPv4 address appears in host, in
// either byte order, with any separator, or as 8 hex digits.
func embedsAddress(host string, c *Conn) bool {
	ip := c.IP.Unmap()
	if !ip.Is4() {
		return false
	}
	b := ip.As4()
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return '.'
	}, host)
	joined := "." + strings.Join(strings.FieldsFunc(digits, func(r rune) bool { return r == '.' }), ".") + "."
	fwd := fmt.Sprintf(".%d.%d.%d.%d.", b[0], b[1], b[2], b[3])
	rev := fmt.Sprintf(".%d.%d.%d.%d.", b[3], b[2], b[1], b[0])
	hex := fmt.Sprintf("%02x%02x%02x%02x", b[0], b[1], b[2], b[3])
	return strings.Contains(joined, fwd) || strings.Contains(joined, rev) || strings.Contains(host, hex)
}
