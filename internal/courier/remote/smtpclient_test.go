package remote

import (
	"bytes"
	"strings"
	"testing"
)

// TestReadReply: what the reply parser makes of well-formed and broken
// replies.
func TestReadReply(t *testing.T) {
	for _, tc := range []struct {
		in, enh, text string
		code, lines   int
		err           string
	}{
		{in: "220 mx.test ESMTP\r\n", code: 220, text: "mx.test ESMTP", lines: 1},
		{in: "250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n", code: 250, text: "8BITMIME", lines: 3},
		{in: "550 5.1.1 no such user\r\n", code: 550, enh: "5.1.1", text: "no such user", lines: 1},
		{in: "451 5.1.1 class does not match\r\n", code: 451, text: "5.1.1 class does not match", lines: 1},
		{in: "250\r\n", code: 250, lines: 1},
		{in: "250 bare LF\n", code: 250, text: "bare LF", lines: 1},
		{in: "250 ctl\x01\xffchars\r\n", code: 250, text: "ctl??chars", lines: 1},
		{in: "250-a\r\n251 b\r\n", err: "malformed reply line"},
		{in: "hello\r\n", err: "malformed reply line"},
		{in: "199 too low\r\n", err: "malformed reply line"},
		{in: "250x\r\n", err: "malformed reply line"},
		{in: "250 no newline", err: "closed the connection"},
		{in: "", err: "closed the connection"},
		{in: "250 " + strings.Repeat("a", maxReplyLine-4) + "\r\n", code: 250, text: strings.Repeat("a", maxReplyLine-4), lines: 1},
		{in: "250 " + strings.Repeat("a", maxReplyLine-3) + "\r\n", err: "reply line over 4096 bytes"},
		{in: strings.Repeat("250-x\r\n", maxReplyLines-1) + "250 x\r\n", code: 250, text: "x", lines: maxReplyLines},
		{in: strings.Repeat("250-x\r\n", maxReplyLines) + "250 x\r\n", err: "more than 100 lines"},
		{in: strings.Repeat("250-"+strings.Repeat("y", 1000)+"\r\n", 66) + "250 x\r\n", err: "reply over 65536 bytes"},
	} {
		r, err := readReply(newReplyReader(strings.NewReader(tc.in)))
		name := truncate(tc.in, 40)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", name, err, tc.err)
			}
			continue
		}
		if err != nil || r.code != tc.code || r.enhanced != tc.enh || r.text != tc.text || len(r.lines) != tc.lines {
			t.Errorf("%q: got %d %q %q (%d lines), %v; want %d %q %q (%d lines)",
				name, r.code, r.enhanced, r.text, len(r.lines), err, tc.code, tc.enh, tc.text, tc.lines)
		}
	}
}

// FuzzReply: whatever a peer sends, the reply parser does not panic,
// consumes at most one reply's bound (plus the line that broke it), and
// returns a reply that respects the bounds.
func FuzzReply(f *testing.F) {
	for _, s := range []string{
		"220 mx.test ESMTP\r\n",
		"250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 STARTTLS\r\n",
		"550 5.1.1 <bob@remote.test>: user unknown\r\n",
		"354 go ahead\r\n",
		"250-a\r\n251 b\r\n",
		"220 " + strings.Repeat("x", 5000),
		"250\n",
		"421 4.7.0 \x00\xff\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		src := bytes.NewReader(in)
		r, err := readReply(newReplyReader(src))
		if consumed := len(in) - src.Len(); consumed > maxReplySize+2*(maxReplyLine+2) {
			t.Fatalf("consumed %d bytes of one reply", consumed)
		}
		if err != nil {
			return
		}
		if r.code < 200 || r.code > 599 || len(r.lines) == 0 || len(r.lines) > maxReplyLines || len(r.text) > maxReplyLine {
			t.Fatalf("reply out of bounds: code %d, %d lines, text %d bytes", r.code, len(r.lines), len(r.text))
		}
		for _, c := range []byte(r.text + r.enhanced) {
			if c < 0x20 || c > 0x7e {
				t.Fatalf("unprintable byte %#x in %q", c, r.text)
			}
		}
	})
}
