package scheduler

import (
	"context"
	"io"
	"kanmon/internal/courier/remote"
	"kanmon/internal/testutil/smtppeer"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"kanmon/internal/dnsresolve"
)

// TestAddressLiteralDelivered: a recipient at an address literal, from
// our authenticated user, is delivered to that address on Port without
// any DNS question (RFC 5321 4.1.3), for IPv4 and IPv6 literals; it used
// to fail with "has no MX".
func TestAddressLiteralDelivered(t *testing.T) {
	for _, tc := range []struct{ name, listen, rcpt string }{
		{"ipv4", "127.0.0.1:0", "bob@[127.0.0.1]"},
		{"ipv6", "[::1]:0", "bob@[IPv6:::1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := smtppeer.Start(t, &smtppeer.Peer{Listen: tc.listen})
			_, port, _ := net.SplitHostPort(p.Addr)
			mock := &dnsresolve.Mock{}
			e := newEnv(t, func(s *Scheduler) {
				rem(s).Resolver = mock
				rem(s).Port, _ = strconv.Atoi(port)
			})
			id := e.submit(t, ownUser(tc.rcpt), testMessage("alice@example.org", tc.rcpt, "literal-"+tc.name))
			waitFor(t, "queue to empty", e.queueEmpty)
			msgs := p.Messages()
			if len(msgs) != 1 || len(msgs[0].Rcpts) != 1 || msgs[0].Rcpts[0] != tc.rcpt {
				t.Fatalf("peer got %+v, want one message to %s", msgs, tc.rcpt)
			}
			if q := mock.Queries(); len(q) != 0 {
				t.Errorf("DNS questions for an address literal: %v", q)
			}
			if !e.logs.Has("delivery", func(l map[string]any) bool {
				return l["queue_id"] == id && l["rcpt"] == tc.rcpt && l["result"] == "delivered"
			}) {
				t.Errorf("no delivered line for %s", tc.rcpt)
			}
		})
	}
}

// TestAddressLiteralRoutePrecedence: a static route for the literal
// still wins over connecting to the address itself.
func TestAddressLiteralRoutePrecedence(t *testing.T) {
	routed := smtppeer.Start(t, &smtppeer.Peer{})
	r := &remote.Remote{HeloName: "mx.example.org", Resolver: &dnsresolve.Mock{}, Port: 1,
		Routes:         map[string]string{"[127.0.0.1]": routed.Addr},
		ConnectTimeout: 2 * time.Second, CommandTimeout: 5 * time.Second, DataTimeout: 5 * time.Second}
	env := ownUser("bob@[127.0.0.1]")
	res := r.Send(context.Background(), &env, "[127.0.0.1]", []string{"bob@[127.0.0.1]"},
		func() io.Reader { return strings.NewReader("Subject: x\r\n\r\nx\r\n") })
	if len(res) != 1 || !res[0].OK || len(routed.Messages()) != 1 {
		t.Fatalf("Deliver = %+v, routed peer got %d messages; want delivery through the route", res, len(routed.Messages()))
	}
}
