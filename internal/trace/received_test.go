package trace

import (
	"bytes"
	"net/netip"
	"os"
	"strings"
	"testing"
)

var ourHosts = Ours("kanmon.example", "198.51.100.0/28")

func chainOf(t *testing.T, file string) *Chain {
	t.Helper()
	f, err := os.Open("testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := Received(f, ourHosts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func kinds(c *Chain) []string {
	var out []string
	for _, in := range c.Inconsistencies {
		out = append(out, in.Kind+"@"+string(rune('0'+in.Hop)))
	}
	return out
}

func text(c *Chain) string {
	var b bytes.Buffer
	_ = c.WriteText(&b)
	return b.String()
}

// TestReceivedFixtures walks messages whose true origin is known.
func TestReceivedFixtures(t *testing.T) {
	for _, tc := range []struct {
		file       string
		origin     int
		originIP   string
		passedOurs bool
		ours       []int
		want       []string // inconsistencies, kind@hop
		inner      bool
	}{
		// Spam received by our MX from a bot, with a planted header below
		// claiming our submission server.
		{file: "inbound-forged-lower.eml", origin: 1, originIP: "203.0.113.77", passedOurs: true, ours: []int{0, 1, 2},
			want: []string{"forged-ours@2", "by-from-mismatch@2"}},
		// A compromised account of ours sent spam; the complaint's copy.
		{file: "complaint-outbound.eml", origin: 2, originIP: "192.0.2.99", passedOurs: true, ours: []int{2}},
		// The same copy inside an ARF report.
		{file: "arf-report.eml", origin: 2, originIP: "192.0.2.99", passedOurs: true, ours: []int{2}, inner: true},
		// Our domain forged by a bot, with a fake header of ours below the
		// recipient's: the recipient saw the bot.
		{file: "forged-domain.eml", origin: 1, originIP: "203.0.113.200", passedOurs: false, ours: []int{2},
			want: []string{"date-backwards@2", "forged-ours@2"}},
		// Never passed our servers at all.
		{file: "no-ours.eml", origin: -1, passedOurs: false},
		// Through a content filter on loopback: the origin is the sender's
		// server, not localhost.
		{file: "internal-filter.eml", origin: 1, originIP: "192.0.2.44", passedOurs: true, ours: []int{0, 1}},
		// Exim and qmail header formats.
		{file: "exim-qmail.eml", origin: 0, originIP: "192.0.2.7", passedOurs: true, ours: []int{0}},
		// Garbage in the chain.
		{file: "unparsable.eml", origin: 2, originIP: "192.0.2.44", passedOurs: true, ours: []int{0, 2},
			want: []string{"unparsable@1", "unparsable@1", "unparsable@2"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			c := chainOf(t, tc.file)
			if c.Origin != tc.origin || c.PassedOurs != tc.passedOurs || c.Inner != tc.inner {
				t.Errorf("origin %d passedOurs %v inner %v, want %d %v %v\n%s", c.Origin, c.PassedOurs, c.Inner, tc.origin, tc.passedOurs, tc.inner, text(c))
			}
			if tc.originIP != "" {
				if o := c.OriginHop(); o == nil || o.FromIP != netip.MustParseAddr(tc.originIP) {
					t.Errorf("origin hop %+v, want IP %s\n%s", o, tc.originIP, text(c))
				}
			}
			var ours []int
			for _, h := range c.Hops {
				if h.Ours {
					ours = append(ours, h.Index)
				}
			}
			if !equalInts(ours, tc.ours) {
				t.Errorf("ours hops %v, want %v\n%s", ours, tc.ours, text(c))
			}
			got := kinds(c)
			if strings.Join(sorted(got), " ") != strings.Join(sorted(tc.want), " ") {
				t.Errorf("inconsistencies %v, want %v\n%s", got, tc.want, text(c))
			}
		})
	}
}

func TestReceivedParsesFormats(t *testing.T) {
	c := chainOf(t, "exim-qmail.eml")
	exim, qmail := c.Hops[0], c.Hops[1]
	if exim.From != "sender" || exim.FromRDNS != "host.sender.example" || exim.By != "mx.kanmon.example" || exim.With != "esmtps" || exim.ID != "1qXyZ-0001-AB" || exim.For != "bob@kanmon.example" {
		t.Errorf("exim hop %+v", exim)
	}
	if qmail.From != "laptop" || qmail.FromIP != netip.MustParseAddr("192.0.2.150") || qmail.By != "host.sender.example" || qmail.Date.IsZero() {
		t.Errorf("qmail hop %+v", qmail)
	}
	c = chainOf(t, "complaint-outbound.eml")
	h := c.Hops[2]
	if h.From != "[10.1.2.3]" || h.FromIP != netip.MustParseAddr("192.0.2.99") || h.FromRDNS != "" || h.With != "ESMTPSA" || h.ID != "q5" {
		t.Errorf("postfix-style hop %+v", h)
	}
	if c.MessageID != "<spam-1@kanmon.example>" || c.Subject != "Cheap watches" {
		t.Errorf("header fields %q %q", c.MessageID, c.Subject)
	}
}

func TestReceivedText(t *testing.T) {
	out := text(chainOf(t, "forged-domain.eml"))
	for _, want := range []string{
		"Likely origin: bot-7.isp.example [203.0.113.200] (HELO mail.kanmon.example) (hop 1)",
		"[ours, FORGED?]",
		"! forged-ours: claims to be written by our server mail.kanmon.example",
		"! date-backwards:",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
	out = text(chainOf(t, "no-ours.eml"))
	if !strings.Contains(out, "did not pass through them") {
		t.Errorf("no-ours text:\n%s", out)
	}
	out = text(chainOf(t, "unparsable.eml"))
	if !strings.Contains(out, "1 malformed header lines skipped") {
		t.Errorf("unparsable text:\n%s", out)
	}
}

func TestReceivedHostileInput(t *testing.T) {
	msg := "Received: from evil (\x1b[2Jx [203.0.113.1]) by mx.kanmon.example; Sat, 01 Mar 2025 10:00:00 +0000\r\n" +
		"Received: (((unbalanced by\r\n" +
		"Received: from a by b; \r\n\r\nbody"
	c, err := Received(strings.NewReader(msg), ourHosts)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(text(c), "\x1b") {
		t.Error("control character reached the output")
	}
	if _, err := Received(strings.NewReader(""), ourHosts); err == nil {
		t.Error("empty message accepted")
	}
	if c, err := Received(strings.NewReader("From someone Sat Mar  1 10:00:00 2025\nSubject: x\n\nbody"), nil); err != nil || c.Subject != "x" {
		t.Errorf("mbox separator: %v %+v", err, c)
	}
}

func TestOurs(t *testing.T) {
	m := Ours("kanmon.example.", "198.51.100.0/28", "192.0.2.5", " ")
	for host, want := range map[string]bool{
		"kanmon.example":      true,
		"MX.Kanmon.Example.":  true,
		"evilkanmon.example":  false,
		"kanmon.example.evil": false,
		"198.51.100.10":       true,
		"[198.51.100.15]":     true,
		"198.51.100.16":       false,
		"192.0.2.5":           true,
		"[IPv6:2001:db8::1]":  false,
		"":                    false,
	} {
		if got := m(host); got != want {
			t.Errorf("Ours(%q) = %v, want %v", host, got, want)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}
