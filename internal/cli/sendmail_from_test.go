package cli

import "testing"

// -f takes "<>", "<addr>" and "addr"; the angle brackets never reach the
// MAIL command a second time ("MAIL FROM:<<>>").
func TestSendmailFromForms(t *testing.T) {
	for _, c := range []struct {
		args []string
		from string
		null bool
	}{
		{[]string{"-f", "<>", "x@example.org"}, "", true},
		{[]string{"-f<>", "x@example.org"}, "", true},
		{[]string{"-f", "", "x@example.org"}, "", true},
		{[]string{"-f", "<alice@example.org>", "x@example.org"}, "alice@example.org", false},
		{[]string{"-f", "alice@example.org", "x@example.org"}, "alice@example.org", false},
		{[]string{"-falice@example.org", "x@example.org"}, "alice@example.org", false},
		{[]string{"-r", " <alice@example.org> ", "x@example.org"}, "alice@example.org", false},
		{[]string{"x@example.org"}, "", false},
	} {
		o, err := parseSendmailArgs(c.args)
		if err != nil {
			t.Errorf("%q: %v", c.args, err)
			continue
		}
		if o.from != c.from || o.nullFrom != c.null {
			t.Errorf("%q: from %q null %v, want %q %v", c.args, o.from, o.nullFrom, c.from, c.null)
		}
	}
	for _, bad := range []string{"<<>>", "<a@b> <c@d>", "a@b>", "a b@c", "a\r\nRCPT TO:<x@y>"} {
		if _, err := parseSendmailArgs([]string{"-f", bad, "x@example.org"}); err == nil {
			t.Errorf("-f %q accepted", bad)
		}
	}
}

// FuzzSendmailFrom: whatever -f says, the sender passed on has no angle
// brackets, spaces or controls, so it cannot break out of MAIL FROM:<...>.
func FuzzSendmailFrom(f *testing.F) {
	for _, s := range []string{"<>", "<a@b>", "a@b", "<<>>", "a\r\nb", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		addr, null, err := senderArg(v)
		if err != nil {
			return
		}
		if null != (addr == "") {
			t.Fatalf("senderArg(%q) = %q, null %v", v, addr, null)
		}
		for _, r := range addr {
			if r == '<' || r == '>' || r <= ' ' || r == 0x7f {
				t.Fatalf("senderArg(%q) = %q", v, addr)
			}
		}
	})
}
