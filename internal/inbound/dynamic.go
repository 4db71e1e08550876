package inbound

import (
	"context"
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
	host := hostPart(name)
	if host == "" {
		return "", false
	}
	if embedsAddress(host, c.IP) {
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

// hostPart is name without its last two labels ("" when it has no
// more): the part a provider fills in per customer.
func hostPart(name string) string {
	labels := strings.Split(name, ".")
	if len(labels) <= 2 {
		return ""
	}
	return strings.Join(labels[:len(labels)-2], ".")
}
