package inbound

import (
	"net/netip"
	"testing"
	"time"

	"kanmon/internal/config"
	"kanmon/internal/state"
)

func TestGreyDecision(t *testing.T) {
	g := config.DefaultGreylisting() // delay 5m, expiry 4h, pass 35 days
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) int64 { return now.Add(d).UnixNano() }
	tests := []struct {
		name     string
		r        state.Record
		found    bool
		pass     bool
		wait     time.Duration
		expires  int64
		passedTo int64 // B after the decision
	}{
		{"first time", state.Record{}, false, false, 5 * time.Minute, at(4 * time.Hour), greyPending},
		{"retry too early", state.Record{A: at(-2 * time.Minute), Expires: at(time.Hour)}, true, false, 3 * time.Minute, at(time.Hour), greyPending},
		{"retry after the delay", state.Record{A: at(-5 * time.Minute), Expires: at(time.Hour)}, true, true, 0, at(35 * 24 * time.Hour), greyPassed},
		{"passed before", state.Record{A: at(-48 * time.Hour), B: greyPassed, Expires: at(time.Hour)}, true, true, 0, at(35 * 24 * time.Hour), greyPassed},
	}
	for _, tt := range tests {
		pass, wait, keep := GreyDecision(g, tt.r, tt.found, now)
		if pass != tt.pass || wait != tt.wait || keep.Expires != tt.expires || keep.B != tt.passedTo {
			t.Errorf("%s: pass=%v wait=%v keep=%+v; want %v %v expires %d state %d", tt.name, pass, wait, keep, tt.pass, tt.wait, tt.expires, tt.passedTo)
		}
	}
}

func TestGreyNet(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.77":             "192.0.2.0/24",
		"::ffff:192.0.2.77":      "192.0.2.0/24",
		"2001:db8:1:2:3:4:5:6":   "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::abc": "2001:db8:1:2::/64",
	} {
		if got := greyNet(netip.MustParseAddr(in)); got != want {
			t.Errorf("greyNet(%s) = %s, want %s", in, got, want)
		}
	}
}
