package dsn

import (
	"testing"

	"kanmon/internal/queue"
)

// TestBounceAllowed: law 3 in one table: a DSN only for mail our own
// users sent, never to <>, never about a DSN, never for mail from outside.
func TestBounceAllowed(t *testing.T) {
	for _, c := range []struct {
		from   string
		origin queue.Origin
		want   bool
	}{
		{"alice@example.org", queue.OriginAuthenticated, true},
		{"alice@example.org", queue.OriginTrusted, true},
		{"alice@example.org", queue.OriginPopBeforeSMTP, true},
		{"", queue.OriginAuthenticated, false},
		{"", queue.OriginLocal, false},
		{"someone@outside.test", queue.OriginInbound, false},
		{"alice@example.org", queue.OriginLocal, false},
	} {
		env := &queue.Envelope{From: c.from, Origin: c.origin}
		if got := BounceAllowed(env); got != c.want {
			t.Errorf("BounceAllowed(from %q, origin %s) = %v, want %v", c.from, c.origin, got, c.want)
		}
		if !c.want && dropReason(env) == "" {
			t.Errorf("no drop reason for from %q, origin %s", c.from, c.origin)
		}
	}
}

func TestStatusOf(t *testing.T) {
	for reply, want := range map[string]string{
		"550 5.1.1 no such user":                "5.1.1",
		"4.4.7 expired: undelivered after 5d0h": "4.4.7",
		"451 try later":                         "4.0.0",
		"":                                      "5.0.0",
	} {
		if got := StatusOf(reply, "5.0.0"); got != want {
			t.Errorf("StatusOf(%q) = %q, want %q", reply, got, want)
		}
	}
}
