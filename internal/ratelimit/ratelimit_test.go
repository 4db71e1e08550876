package ratelimit

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"kanmon/internal/address"
	"kanmon/internal/config"
	"kanmon/internal/policy"
	"kanmon/internal/state"
)

type fakeDir struct {
	mu sync.Mutex
	m  map[string]string
}

func (f *fakeDir) Suspended(a string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.m[a]
	return r, ok
}

func (f *fakeDir) Suspend(_ context.Context, a, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]string{}
	}
	f.m[a] = reason
	return nil
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newLimiter(cfg config.RateLimit) (*Limiter, *fakeDir, *clock, *bytes.Buffer) {
	d := &fakeDir{}
	c := &clock{time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)}
	l := New(cfg, state.NewMemory(0), d, nil)
	l.Now = c.now
	return l, d, c, &bytes.Buffer{}
}

func sender(log *bytes.Buffer) Sender {
	return Sender{Conn: "c1", Listener: policy.ListenerSubmission, Account: "alice@example.org",
		IP: netip.MustParseAddr("192.0.2.7"), Log: slog.New(slog.NewTextHandler(log, nil))}
}

func small() config.RateLimit {
	c := config.DefaultRateLimit()
	c.MessagesPerHour, c.MessagesBurst = 1, 3
	c.SuspendFactor = 2
	return c
}

func TestMessagesLimitAndSuspension(t *testing.T) {
	l, dir, clk, log := newLimiter(small())
	s := sender(log)
	for i := 1; i <= 3; i++ {
		if v := l.Mail(s); !v.Accept {
			t.Fatalf("message %d refused within the burst: %v", i, v)
		}
	}
	v := l.Mail(s)
	if v.Accept || v.Code != 450 || v.Enhanced != "4.7.1" || v.Rule != "submission.rate_messages" || !strings.Contains(v.Reason, "try again in 1h0m1s") {
		t.Fatalf("4th message: %v; want 450 4.7.1 submission.rate_messages with the time to retry", v)
	}
	clk.t = clk.t.Add(time.Hour)
	if v := l.Mail(s); !v.Accept {
		t.Fatalf("a token did not come back after an hour: %v", v)
	}
	// Demand at twice the limit (2 an hour, burst 6): 6 attempts more are
	// refused, the next suspends.
	for i := 0; i < 3; i++ {
		l.Mail(s)
	}
	v = l.Mail(s)
	if v.Rule != "account.suspended" || v.Code != 550 || v.Enhanced != "5.7.1" {
		t.Fatalf("attempt far beyond the limit: %v; want account.suspended 550 5.7.1", v)
	}
	if r, ok := dir.Suspended(s.Account); !ok || !strings.HasPrefix(r, "rate:") {
		t.Fatalf("not suspended in the directory (reason %q)", r)
	}
	if !strings.Contains(log.String(), "rule=account.suspend ") {
		t.Errorf("no suspension decision line:\n%s", log)
	}
	// The suspension refilled the buckets: lifting it lets the account send.
	delete(dir.m, s.Account)
	if v := l.Mail(s); !v.Accept {
		t.Fatalf("after unsuspend: %v", v)
	}
}

func TestNotLimited(t *testing.T) {
	l, _, _, log := newLimiter(small())
	for _, s := range []Sender{
		{Listener: policy.ListenerMX, IP: netip.MustParseAddr("192.0.2.1")},
		{Listener: policy.ListenerLocal, Account: "alice@example.org"},
	} {
		for i := 0; i < 10; i++ {
			if v := l.Mail(s); !v.Accept {
				t.Fatalf("%+v refused: %v", s, v)
			}
		}
	}
	_ = log
}

func TestAddressLimitSharedByAccounts(t *testing.T) {
	c := config.DefaultRateLimit()
	c.AddressMessagesPerHour, c.AddressMessagesBurst = 1, 2
	l, _, _, log := newLimiter(c)
	a, b := sender(log), sender(log)
	b.Account = "bob@example.org"
	if !l.Mail(a).Accept || !l.Mail(b).Accept {
		t.Fatal("refused within the address burst")
	}
	if v := l.Mail(a); v.Rule != "submission.address_rate_messages" || v.Code != 450 {
		t.Fatalf("third message from the address: %v", v)
	}
}

func TestRecipientDomains(t *testing.T) {
	c := config.DefaultRateLimit()
	c.DomainsPerHour, c.DomainsBurst = 1, 2
	l, _, _, log := newLimiter(c)
	s := sender(log)
	rc := func(a string) policy.Verdict {
		to, err := address.Parse("<"+a+">", false)
		if err != nil {
			t.Fatal(err)
		}
		return l.Rcpt(s, to)
	}
	for _, a := range []string{"x@one.example", "y@two.example", "z@one.example", "w@two.example"} {
		if v := rc(a); !v.Accept {
			t.Fatalf("%s refused: %v (known domains cost nothing)", a, v)
		}
	}
	if v := rc("v@three.example"); v.Rule != "submission.rate_domains" || v.Code != 450 {
		t.Fatalf("third domain: %v", v)
	}
}

func TestConnect(t *testing.T) {
	c := config.DefaultRateLimit()
	c.MXConnectionsPerMinute = 2
	l, _, clk, _ := newLimiter(c)
	ip := netip.MustParseAddr("2001:db8::1")
	other := netip.MustParseAddr("2001:db8::2") // same /64
	if !l.Connect(ip).Accept || !l.Connect(other).Accept {
		t.Fatal("refused within the rate")
	}
	v := l.Connect(ip)
	if v.Accept || v.Code != 421 || v.Enhanced != "4.7.0" || v.Rule != "client.connection_rate" {
		t.Fatalf("third connection of the /64: %v", v)
	}
	clk.t = clk.t.Add(30 * time.Second)
	if !l.Connect(ip).Accept {
		t.Fatal("no connection allowed after half a minute")
	}
	c.MXConnectionsPerMinute = 0
	off, _, _, _ := newLimiter(c)
	for i := 0; i < 100; i++ {
		if !off.Connect(ip).Accept {
			t.Fatal("0 did not turn the rate off")
		}
	}
}

func TestRoll(t *testing.T) {
	tests := []struct {
		name string
		in   hourly
		hour int64
		want float64
	}{
		{"new account", hourly{}, 100, 0},
		{"same hour", hourly{Hour: 100, Count: 5, Baseline: 2}, 100, 2},
		{"next hour", hourly{Hour: 100, Count: 24, Baseline: 0}, 101, 1},
		{"steady", hourly{Hour: 100, Count: 10, Baseline: 10}, 101, 10},
		{"a quiet day halves it roughly", hourly{Hour: 100, Count: 10, Baseline: 10}, 125, 10 * pow(23.0/24, 24)},
	}
	for _, tt := range tests {
		got := roll(tt.in, tt.hour)
		if d := got.Baseline - tt.want; d > 1e-9 || d < -1e-9 || got.Hour != tt.hour || got.Count != 0 && tt.hour != tt.in.Hour {
			t.Errorf("%s: roll = %+v, want baseline %.4f", tt.name, got, tt.want)
		}
	}
}

func pow(x float64, n int) float64 {
	r := 1.0
	for range n {
		r *= x
	}
	return r
}

func TestSignals(t *testing.T) {
	c := config.DefaultRateLimit() // factor 5, floor 50, share 0.9, sample 40
	tests := []struct {
		name string
		h    hourly
		want int64
	}{
		{"quiet", hourly{Count: 10, Baseline: 1}, 0},
		{"busy but usual", hourly{Count: 200, Baseline: 100}, 0},
		{"below the floor", hourly{Count: 49, Baseline: 1}, 0},
		{"sudden rise", hourly{Count: 60, Baseline: 10}, alertVolume},
		{"new account above the floor", hourly{Count: 50}, alertVolume},
		{"new recipients", hourly{Count: 40, New: 37, Baseline: 20}, alertNew},
		{"new recipients, small sample", hourly{Count: 39, New: 39, Baseline: 20}, 0},
		{"both", hourly{Count: 100, New: 100, Baseline: 2}, alertVolume | alertNew},
		{"already alerted", hourly{Count: 100, New: 100, Baseline: 2, Alerted: alertVolume}, alertNew},
	}
	for _, tt := range tests {
		if got := signals(tt.h, c); got != tt.want {
			t.Errorf("%s: signals = %b, want %b", tt.name, got, tt.want)
		}
	}
}

func TestAnomalyAlertAndSuspend(t *testing.T) {
	c := config.DefaultRateLimit()
	c.AnomalyFloor, c.AnomalyMinSample, c.AnomalyFactor = 5, 100, 3
	c.Anomaly = config.AnomalySuspend
	l, dir, _, log := newLimiter(c)
	s := sender(log)
	var v policy.Verdict
	for i := range 5 {
		to := address.Addr{Local: "r" + string(rune('a'+i)), Domain: "example.net"}
		v = l.Rcpt(s, to)
	}
	if v.Rule != "account.suspended" {
		t.Fatalf("5th recipient of a new account (floor 5): %v, want the suspension", v)
	}
	if n := strings.Count(log.String(), "rule=account.anomaly signal=volume"); n != 1 {
		t.Fatalf("%d volume alerts, want 1:\n%s", n, log)
	}
	if _, ok := dir.Suspended(s.Account); !ok {
		t.Fatal("not suspended")
	}
}

// BenchmarkSubmissionMessage is the limits' cost for one message with
// two recipients (MAIL, two RCPT): the accept path's share.
func BenchmarkSubmissionMessage(b *testing.B) {
	c := config.DefaultRateLimit()
	c.MessagesPerHour, c.MessagesBurst = 1<<40, 1<<20
	c.RecipientsPerHour, c.RecipientsBurst = 1<<40, 1<<20
	c.AddressMessagesPerHour, c.AddressMessagesBurst = 1<<40, 1<<20
	c.AddressRecipientsPerHour, c.AddressRecipientsBurst = 1<<40, 1<<20
	c.AnomalyFloor, c.AnomalyMinSample = 1<<40, 1<<40
	l := New(c, state.NewMemory(0), &fakeDir{}, nil)
	s := Sender{Listener: policy.ListenerSubmission, Account: "alice@example.org", IP: netip.MustParseAddr("192.0.2.7")}
	to := []address.Addr{{Local: "bob", Domain: "example.net"}, {Local: "carol", Domain: "example.com"}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		l.Mail(s)
		l.Rcpt(s, to[0])
		l.Rcpt(s, to[1])
	}
}
