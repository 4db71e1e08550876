package smtpd

import (
	"net/netip"
	"strings"
	"testing"

	"kanmon/internal/trace"
)

// An EHLO argument that is not a domain goes into our Received line only
// as an escaped comment: the line still parses as ours, with the client's
// real address, and the raw injection does not appear.
func TestReceivedEHLOInjection(t *testing.T) {
	const evil = `evil.example]by:mx.example.test<>"'`
	ts := newTestServer(t, nil)
	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO "+evil, "250 ")
	reply := sendMessage(cl, "a@remote.test", []string{"alice@example.org"}, "Subject: helo\r\n\r\nhello\r\n")
	id := strings.TrimSpace(reply[strings.LastIndex(reply, " "):])
	_, body := readQueued(t, ts, id)
	hdr, _, _ := strings.Cut(body, "\r\n\r\n")
	if strings.Contains(hdr, evil) {
		t.Fatalf("raw EHLO argument in the header:\n%s", hdr)
	}
	chain, err := trace.Received(strings.NewReader(body), trace.Ours("mx.example.org"))
	if err != nil {
		t.Fatal(err)
	}
	if len(chain.Hops) != 1 {
		t.Fatalf("%d hops parsed, want 1:\n%s", len(chain.Hops), hdr)
	}
	h := chain.Hops[0]
	if h.By != "mx.example.org" || h.ID != id || h.With != "ESMTP" || h.FromIP.String() != "127.0.0.1" || h.For != "alice@example.org" || h.Date.IsZero() {
		t.Fatalf("parsed hop %+v from:\n%s", h, hdr)
	}
	if !strings.Contains(hdr, `(bad-helo "evil.example]by:mx.example.test<>\"'")`) {
		t.Fatalf("EHLO argument not kept as an escaped comment:\n%s", hdr)
	}
}

func TestQuoteComment(t *testing.T) {
	for in, want := range map[string]string{
		`a(b)c\d"e`:       `"a\(b\)c\\d\"e"`,
		"x\x00y\r\nz\x7f": `"xyz"`,
		"ü":               `""`,
		"":                `""`,
	} {
		if got := quoteComment(in); got != want {
			t.Errorf("quoteComment(%q) = %s, want %s", in, got, want)
		}
	}
	if got := quoteComment(strings.Repeat("(", 1000)); len(got) > 260 {
		t.Errorf("quoteComment is not bounded: %d octets", len(got))
	}
}

func TestValidHeloDomain(t *testing.T) {
	for h, want := range map[string]bool{
		"mx.example.org": true, "localhost": true, "[192.0.2.1]": true, "[IPv6:2001:db8::1]": true,
		"evil.example]by:x": false, "a_b.example": false, "[300.1.1.1]": false, "x..y": false, "ü.example": false,
	} {
		if got := validHeloDomain(h); got != want {
			t.Errorf("validHeloDomain(%q) = %v, want %v", h, got, want)
		}
	}
}

// FuzzReceivedHelo: whatever the client's EHLO argument, our Received line
// parses as one hop by us, with the client's address and our id.
func FuzzReceivedHelo(f *testing.F) {
	f.Add(`evil.example]by:mx.example.test<>"'`)
	f.Add("mx.example.org")
	f.Add("[192.0.2.1]")
	f.Add(`a) by evil.example with ESMTP id x; (b`)
	f.Add(`\(\)\\"`)
	ts := newTestServer(f, nil)
	f.Fuzz(func(t *testing.T, helo string) {
		if !validHelo(helo) {
			return // refused at EHLO, never written
		}
		c := &conn{s: ts.srv, role: RoleMX, helo: helo, esmtp: true}
		c.ip = mustAddr("192.0.2.7")
		c.rcpts = []rcpt{{}}
		hdr := string(c.receivedHeader("qtestid"))
		chain, err := trace.Received(strings.NewReader(hdr+"\r\nbody\r\n"), trace.Ours("mx.example.org"))
		if err != nil || len(chain.Hops) != 1 {
			t.Fatalf("%v, %d hops from %q", err, len(chain.Hops), hdr)
		}
		h := chain.Hops[0]
		if h.By != "mx.example.org" || h.ID != "qtestid" || h.FromIP.String() != "192.0.2.7" {
			t.Fatalf("hop %+v from %q", h, hdr)
		}
	})
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
