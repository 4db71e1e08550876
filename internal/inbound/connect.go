package inbound

import (
	"context"
	"strconv"
	"strings"
)

// ConnectCheck is one check of the connection stage, run before the
// greeting is due. The checks of the list run concurrently; their
// findings are weighed in list order.
type ConnectCheck func(ctx context.Context, s *Screen, c *Conn) Result

// ConnectChecks is the connection stage after the access lists (which
// run first, alone: an allow entry skips all of these), most decisive
// first.
var ConnectChecks = []ConnectCheck{
	CheckDNSBL,
	CheckPolicyBlock,
	CheckDynamicClient,
	CheckMissingPTR,
	CheckFCrDNS,
}

// Connect runs the connection stage for c. The caller sends the
// refusal, if any, in place of accepting the client's first MAIL.
func (s *Screen) Connect(ctx context.Context, c *Conn) Outcome {
	if r := CheckAccess(ctx, s, c); r.Rule != "" {
		if r.Allow {
			c.Allowed = true
			s.note(c, r, "")
			return Outcome{}
		}
		return s.decide(c, []Result{r})
	}
	return s.decide(c, runAll(s.connect, func(ch ConnectCheck) Result { return ch(ctx, s, c) }))
}

// normName lower-cases a DNS name and drops its trailing dot.
func normName(n string) string { return strings.ToLower(strings.TrimSuffix(n, ".")) }

func itoa(n int) string { return strconv.Itoa(n) }
