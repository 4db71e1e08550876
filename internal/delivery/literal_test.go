package delivery

import (
	"context"
	"io"
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
			p := startPeer(t, &peer{listen: tc.listen})
			_, port, _ := net.SplitHostPort(p.addr)
			mock := &dnsresolve.Mock{}
			e := newEnv(t, func(s *Scheduler) {
				s.Remote.Resolver = mock
				s.Remote.Port, _ = strconv.Atoi(port)
			})
			id := e.submit(t, ownUser(tc.rcpt), testMessage("alice@example.org", tc.rcpt, "literal-"+tc.name))
			waitFor(t, "queue to empty", e.queueEmpty)
			msgs := p.messages()
			if len(msgs) != 1 || len(msgs[0].rcpts) != 1 || msgs[0].rcpts[0] != tc.rcpt {
				t.Fatalf("peer got %+v, want one message to %s", msgs, tc.rcpt)
			}
			if q := mock.Queries(); len(q) != 0 {
				t.Errorf("DNS questions for an address literal: %v", q)
			}
			if !hasLog(e.logs, "delivery", func(l map[string]any) bool {
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
	routed := startPeer(t, &peer{})
	r := &Remote{HeloName: "mx.example.org", Resolver: &dnsresolve.Mock{}, Port: 1,
		Routes:         map[string]string{"[127.0.0.1]": routed.addr},
		ConnectTimeout: 2 * time.Second, CommandTimeout: 5 * time.Second, DataTimeout: 5 * time.Second}
	env := ownUser("bob@[127.0.0.1]")
	res := r.Deliver(context.Background(), &env, "[127.0.0.1]", []string{"bob@[127.0.0.1]"},
		func() io.Reader { return strings.NewReader("Subject: x\r\n\r\nx\r\n") })
	if len(res) != 1 || !res[0].OK || len(routed.messages()) != 1 {
		t.Fatalf("Deliver = %+v, routed peer got %d messages; want delivery through the route", res, len(routed.messages()))
	}
}

// TestParseLiteral: which address literals are delivered to.
func TestParseLiteral(t *testing.T) {
	for lit, want := range map[string]string{
		"[192.0.2.1]":             "192.0.2.1",
		"[ipv6:2001:db8::1]":      "2001:db8::1",
		"[IPv6:::1]":              "::1",
		"[IPv6:::ffff:192.0.2.1]": "::ffff:192.0.2.1",
		"[::1]":                   "", // IPv6 needs its tag
		"[IPv6:192.0.2.1]":        "", // and IPv4 must not have it
		"[0.0.0.0]":               "", // reaches this host
		"[IPv6:::]":               "",
		"[224.0.0.1]":             "",
		"[255.255.255.255]":       "",
		"[IPv6:fe80::1%eth0]":     "",
		"[300.1.1.1]":             "",
		"[192.0.2.1":              "",
		"[x400:whatever]":         "",
		"[]":                      "",
	} {
		ip, ok := parseLiteral(lit)
		if got := map[bool]string{true: ip.String(), false: ""}[ok]; got != want {
			t.Errorf("parseLiteral(%q) = %q, want %q", lit, got, want)
		}
	}
	if _, fail := literalHop("[0.0.0.0]", 25); fail == nil || !fail.Permanent || fail.Enhanced != "5.1.2" {
		t.Errorf("literalHop([0.0.0.0]) = %+v, want a permanent 5.1.2 failure", fail)
	}
}
