package smtpd

import (
	"log/slog"
	"net"
	"net/netip"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// forgeryCount reads kanmon_forgery_total for a kind.
func forgeryCount(t testing.TB, ts *testServer, kind string) float64 {
	t.Helper()
	var m dto.Metric
	if err := ts.srv.d.Metrics.Forgery.WithLabelValues(kind).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestForgeryMetric: the refusals that are evidence of forgery count in
// kanmon_forgery_total by kind where every refusal is logged, whatever
// check made them: a forged local sender through a real session, and the
// bounce and DMARC rules as their checks report them (a DMARC failure
// only for one of our domains); other refusals do not count.
func TestForgeryMetric(t *testing.T) {
	ts := newTestServer(t, nil)
	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO client.remote.test", "250 ")
	cl.cmd("MAIL FROM:<alice@example.org>", "550 5.7.1")
	if n := forgeryCount(t, ts, "local_sender"); n != 1 {
		t.Errorf("local_sender = %v after a forged local sender, want 1", n)
	}

	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := newConn(ts.srv, a, RoleMX, "ctest", netip.MustParseAddr("192.0.2.1"), slog.New(slog.DiscardHandler))
	c.reject("rcpt.batv", 550, "5.7.1", "bounce without a valid BATV tag", "addr", "alice@example.org")
	c.reject("rcpt.bounce_recipients", 452, "4.5.3", "a bounce has one recipient")
	c.reject("data.dmarc", 550, "5.7.1", "DMARC", "from_domain", "example.org")
	c.reject("data.dmarc", 550, "5.7.1", "DMARC", "from_domain", "bank.example")
	c.reject("rcpt.unknown", 550, "5.1.1", "no such user")
	for kind, want := range map[string]float64{"bounce": 2, "dmarc": 1, "local_sender": 1} {
		if n := forgeryCount(t, ts, kind); n != want {
			t.Errorf("%s = %v, want %v", kind, n, want)
		}
	}
}
