package address

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseValid(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		smtputf8 bool
		want     Addr
		tricks   []string
		str      string // canonical String(); "" means the same as want.Local@want.Domain
	}{
		{name: "plain", in: "user@example.org", want: Addr{"user", "example.org"}},
		{name: "raw brackets", in: "<user@example.org>", want: Addr{"user", "example.org"}},
		{name: "dots and atext", in: "first.last+tag=x/y{z}~'#&*^_`|$?@example.org", want: Addr{"first.last+tag=x/y{z}~'#&*^_`|$?", "example.org"}},
		{name: "single label domain", in: "root@localhost", want: Addr{"root", "localhost"}},
		{name: "hyphen and digits in labels", in: "u@mx-1.a1-b.example", want: Addr{"u", "mx-1.a1-b.example"}},
		{name: "mixed case domain lowered, local kept", in: "User@EXAMPLE.ORG", want: Addr{"User", "example.org"}},
		{name: "ipv4 literal", in: "user@[192.0.2.1]", want: Addr{"user", "[192.0.2.1]"}},
		{name: "ipv6 literal canonical", in: "user@[ipv6:2001:DB8:0::1]", want: Addr{"user", "[IPv6:2001:db8::1]"}},
		{name: "ipv6 v4-mapped literal", in: "user@[IPv6:::ffff:127.0.0.1]", want: Addr{"user", "[IPv6:::ffff:127.0.0.1]"}},
		{name: "source route ignored", in: "<@example.org:user@evil.com>", want: Addr{"user", "evil.com"}},
		{name: "source route two hops", in: "<@a.example,@b.example:user@c.example>", want: Addr{"user", "c.example"}},
		{name: "quoted raw without need", in: `"user"@example.org`, want: Addr{"user", "example.org"}, str: "user@example.org"},
		{name: "quoted raw with space", in: `"john smith"@example.org`, want: Addr{"john smith", "example.org"}, tricks: []string{"quoted"}, str: `"john smith"@example.org`},
		{name: "quoted pre-processed with space", in: "john smith@example.org", want: Addr{"john smith", "example.org"}, tricks: []string{"quoted"}, str: `"john smith"@example.org`},
		{name: "quoted pairs", in: `"a\"b\\c"@example.org`, want: Addr{`a"b\c`, "example.org"}, tricks: []string{"quoted"}, str: `"a\"b\\c"@example.org`},
		{name: "leading dot needs quoting", in: ".user@example.org", want: Addr{".user", "example.org"}, tricks: []string{"quoted"}, str: `".user"@example.org`},
		{name: "double dot needs quoting", in: "a..b@example.org", want: Addr{"a..b", "example.org"}, tricks: []string{"quoted"}, str: `"a..b"@example.org`},
		{name: "broken quote taken as given", in: `"a"b@example.org`, want: Addr{`"a"b`, "example.org"}, tricks: []string{"quoted"}, str: `"\"a\"b"@example.org`},
		{name: "percent hack", in: "user%evil.com@example.org", want: Addr{"user%evil.com", "example.org"}, tricks: []string{"percent"}},
		{name: "bang path", in: "evil.com!user@example.org", want: Addr{"evil.com!user", "example.org"}, tricks: []string{"bang"}},
		{name: "quoted @ raw", in: `"user@evil.com"@example.org`, want: Addr{"user@evil.com", "example.org"}, tricks: []string{"at", "quoted"}, str: `"user@evil.com"@example.org`},
		{name: "quoted @ pre-processed", in: "user@evil.com@example.org", want: Addr{"user@evil.com", "example.org"}, tricks: []string{"at", "quoted"}, str: `"user@evil.com"@example.org`},
		{name: "multiple @ split at last", in: "a@b@c@example.org", want: Addr{"a@b@c", "example.org"}, tricks: []string{"at", "quoted"}, str: `"a@b@c"@example.org`},
		{name: "all tricks", in: `"a%b!c@d"@example.org`, want: Addr{"a%b!c@d", "example.org"}, tricks: []string{"percent", "bang", "at", "quoted"}, str: `"a%b!c@d"@example.org`},
		{name: "smtputf8 local", in: "jörg@example.org", smtputf8: true, want: Addr{"jörg", "example.org"}},
		{name: "smtputf8 u-label lowered", in: "user@BÜCHER.Example", smtputf8: true, want: Addr{"user", "bücher.example"}},
		{name: "kelvin sign is not folded into k", in: "user@\u212Aanmon.example", smtputf8: true, want: Addr{"user", "\u212Aanmon.example"}},
		{name: "local 64 octets", in: strings.Repeat("a", 64) + "@example.org", want: Addr{strings.Repeat("a", 64), "example.org"}},
		{name: "label 63 octets", in: "u@" + strings.Repeat("a", 63) + ".example", want: Addr{"u", strings.Repeat("a", 63) + ".example"}},
		{name: "path 254 octets", in: long(254), want: mustSplit(long(254))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := Parse(tc.in, tc.smtputf8)
			if err != nil {
				t.Fatalf("Parse(%q) error: %v", tc.in, err)
			}
			if a != tc.want {
				t.Fatalf("Parse(%q) = %#v, want %#v", tc.in, a, tc.want)
			}
			if got := a.Tricks(); !reflect.DeepEqual(got, tc.tricks) {
				t.Errorf("Tricks() = %q, want %q", got, tc.tricks)
			}
			str := tc.str
			if str == "" {
				str = tc.want.Local + "@" + tc.want.Domain
			}
			if got := a.String(); got != str {
				t.Errorf("String() = %q, want %q", got, str)
			}
			b, err := Parse(a.String(), tc.smtputf8)
			if err != nil || b != a {
				t.Errorf("round trip: Parse(%q) = %#v, %v; want %#v", a.String(), b, err, a)
			}
			if a.IsNull() {
				t.Error("IsNull() = true")
			}
			if got, want := a.IsIPLiteral(), strings.HasPrefix(tc.want.Domain, "["); got != want {
				t.Errorf("IsIPLiteral() = %v, want %v", got, want)
			}
		})
	}
}

// long returns a valid address of exactly n octets (70 <= n <= 300).
func long(n int) string {
	s := strings.Repeat("a", 60) + "@"
	for n-len(s) > 63 {
		s += strings.Repeat("b", 50) + "."
	}
	return s + strings.Repeat("c", n-len(s))
}

func mustSplit(s string) Addr {
	i := strings.LastIndexByte(s, '@')
	return Addr{s[:i], s[i+1:]}
}

func TestLongHelper(t *testing.T) {
	for _, n := range []int{254, 255} {
		s := long(n)
		if len(s) != n {
			t.Fatalf("long(%d) has %d octets", n, len(s))
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		smtputf8 bool
		code     int
		enh      string
	}{
		{name: "unqualified", in: "user", code: 501, enh: "5.1.3"},
		{name: "empty", in: "", code: 501, enh: "5.1.3"},
		{name: "null path not a recipient", in: "<>", code: 501, enh: "5.1.3"},
		{name: "empty local", in: "@example.org", code: 501, enh: "5.1.3"},
		{name: "empty quoted local", in: `""@example.org`, code: 501, enh: "5.1.3"},
		{name: "empty domain", in: "user@", code: 501, enh: "5.1.3"},
		{name: "trailing dot", in: "user@example.org.", code: 501, enh: "5.1.3"},
		{name: "leading dot in domain", in: "user@.example.org", code: 501, enh: "5.1.3"},
		{name: "empty label", in: "user@example..org", code: 501, enh: "5.1.3"},
		{name: "leading hyphen", in: "user@-example.org", code: 501, enh: "5.1.3"},
		{name: "trailing hyphen", in: "user@example-.org", code: 501, enh: "5.1.3"},
		{name: "underscore in domain", in: "user@ex_ample.org", code: 501, enh: "5.1.3"},
		{name: "space in domain", in: "user@exa mple.org", code: 501, enh: "5.1.3"},
		{name: "bracket left over", in: "user@example.org>", code: 501, enh: "5.1.3"},
		{name: "all-numeric tld", in: "user@192.0.2.1", code: 501, enh: "5.1.3"},
		{name: "nul byte", in: "us\x00er@example.org", code: 501, enh: "5.1.3"},
		{name: "nul in domain", in: "user@example.org\x00.evil.com", code: 501, enh: "5.1.3"},
		{name: "cr", in: "user@example.org\r", code: 501, enh: "5.1.3"},
		{name: "lf", in: "user\n@example.org", code: 501, enh: "5.1.3"},
		{name: "tab", in: "a\tb@example.org", code: 501, enh: "5.1.3"},
		{name: "del", in: "a\x7fb@example.org", code: 501, enh: "5.1.3"},
		{name: "invalid utf-8", in: "us\xffer@example.org", smtputf8: true, code: 501, enh: "5.1.3"},
		{name: "invalid utf-8 without smtputf8", in: "us\xc3er@example.org", code: 501, enh: "5.1.3"},
		{name: "c1 control", in: "us\u0085er@example.org", smtputf8: true, code: 501, enh: "5.1.3"},
		{name: "bidi override", in: "user\u202e@example.org", smtputf8: true, code: 501, enh: "5.1.3"},
		{name: "ideographic full stop in domain", in: "user@example\u3002org", smtputf8: true, code: 501, enh: "5.1.3"},
		{name: "symbol in u-label", in: "user@ex\u2605ample.org", smtputf8: true, code: 501, enh: "5.1.3"},
		{name: "non-ascii local without smtputf8", in: "jörg@example.org", code: 553, enh: "5.6.7"},
		{name: "non-ascii domain without smtputf8", in: "user@bücher.example", code: 553, enh: "5.6.7"},
		{name: "bad ipv4 literal", in: "user@[192.0.2.256]", code: 501, enh: "5.1.3"},
		{name: "ipv4 literal leading zero", in: "user@[192.0.2.01]", code: 501, enh: "5.1.3"},
		{name: "ipv6 without tag", in: "user@[2001:db8::1]", code: 501, enh: "5.1.3"},
		{name: "ipv6 tag with ipv4", in: "user@[IPv6:192.0.2.1]", code: 501, enh: "5.1.3"},
		{name: "ipv6 zone", in: "user@[IPv6:fe80::1%eth0]", code: 501, enh: "5.1.3"},
		{name: "general literal", in: "user@[x400:foo]", code: 501, enh: "5.1.3"},
		{name: "unclosed literal", in: "user@[192.0.2.1", code: 501, enh: "5.1.3"},
		{name: "empty literal", in: "user@[]", code: 501, enh: "5.1.3"},
		{name: "route without colon", in: "<@example.org>", code: 501, enh: "5.1.3"},
		{name: "route bad hop", in: "<@exa mple.org:user@example.org>", code: 501, enh: "5.1.3"},
		{name: "route empty hop", in: "<@a.example,:user@example.org>", code: 501, enh: "5.1.3"},
		{name: "route literal hop", in: "<@[192.0.2.1]:user@example.org>", code: 501, enh: "5.1.3"},
		{name: "route without mailbox", in: "<@example.org:>", code: 501, enh: "5.1.3"},
		{name: "local 65 octets", in: strings.Repeat("a", 65) + "@example.org", code: 553, enh: "5.1.3"},
		{name: "quoted local 65 octets on the wire", in: strings.Repeat("a", 62) + " @example.org", code: 553, enh: "5.1.3"},
		{name: "label 64 octets", in: "u@" + strings.Repeat("a", 64) + ".example", code: 553, enh: "5.1.3"},
		{name: "path 255 octets", in: long(255), code: 501, enh: "5.1.3"},
		{name: "overlong input", in: strings.Repeat("a", 10000) + "@example.org", code: 501, enh: "5.1.3"},
		{name: "overlong domain", in: "u@" + strings.Repeat("a.", 200) + "org", code: 501, enh: "5.1.3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := Parse(tc.in, tc.smtputf8)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse(%q) = %#v, %v; want *Error", tc.in, a, err)
			}
			if e.Code != tc.code || e.Enhanced != tc.enh {
				t.Errorf("Parse(%q) error = %v; want %d %s", tc.in, e, tc.code, tc.enh)
			}
			if e.Reason == "" || strings.ContainsAny(e.Reason, "\r\n") {
				t.Errorf("Reason %q must be a non-empty single line", e.Reason)
			}
			if a != (Addr{}) {
				t.Errorf("Parse returned %#v with an error", a)
			}
		})
	}
}

func TestParseReversePath(t *testing.T) {
	for _, in := range []string{"", "<>"} {
		a, err := ParseReversePath(in, false)
		if err != nil || !a.IsNull() || a.String() != "" || a.Tricks() != nil {
			t.Errorf("ParseReversePath(%q) = %#v, %v; want the null path", in, a, err)
		}
	}
	a, err := ParseReversePath("<Sender@Example.ORG>", false)
	if err != nil || a != (Addr{"Sender", "example.org"}) {
		t.Errorf("ParseReversePath = %#v, %v", a, err)
	}
	// Sender syntax errors carry 5.1.7 (bad sender's mailbox address syntax).
	for _, tc := range []struct {
		in       string
		smtputf8 bool
		code     int
		enh      string
	}{
		{"user", false, 501, "5.1.7"},
		{"user@example.org.", false, 501, "5.1.7"},
		{strings.Repeat("a", 65) + "@example.org", false, 553, "5.1.7"},
		{"jörg@example.org", false, 553, "5.6.7"},
		{"<<>>", false, 501, "5.1.7"},
	} {
		_, err := ParseReversePath(tc.in, tc.smtputf8)
		var e *Error
		if !errors.As(err, &e) || e.Code != tc.code || e.Enhanced != tc.enh {
			t.Errorf("ParseReversePath(%q) error = %v; want %d %s", tc.in, err, tc.code, tc.enh)
		}
	}
}

func TestParseDomain(t *testing.T) {
	for in, want := range map[string]string{
		"Example.ORG":            "example.org",
		"[127.0.0.1]":            "[127.0.0.1]",
		"[ipv6:0:0:0:0:0:0:0:1]": "[IPv6:::1]",
	} {
		got, err := ParseDomain(in, false)
		if err != nil || got != want {
			t.Errorf("ParseDomain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "example.org.", "a..b", "[1.2.3]", "-a.example", "exa mple"} {
		if got, err := ParseDomain(in, false); err == nil {
			t.Errorf("ParseDomain(%q) = %q, want an error", in, got)
		}
	}
}

func TestErrorString(t *testing.T) {
	e := &Error{Code: 501, Enhanced: "5.1.3", Reason: "empty domain after '@'"}
	if got, want := e.Error(), "501 5.1.3 empty domain after '@'"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// FuzzParse checks that Parse never panics, that every error is an *Error
// fit for a reply, and that a successful parse is canonical and stable:
// Parse(a.String()) gives a back.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		for _, smtputf8 := range []bool{false, true} {
			a, err := Parse(s, smtputf8)
			if err != nil {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("Parse(%q, %v): error %T is not *Error", s, smtputf8, err)
				}
				if (e.Code != 501 && e.Code != 553) || e.Enhanced == "" || e.Reason == "" {
					t.Fatalf("Parse(%q, %v): bad error %v", s, smtputf8, e)
				}
				continue
			}
			str := a.String()
			if a.Local == "" || a.Domain == "" || len(str) > MaxPathLen {
				t.Fatalf("Parse(%q, %v) = %#v (%q): not a valid mailbox", s, smtputf8, a, str)
			}
			if !utf8.ValidString(str) || (!smtputf8 && strings.IndexFunc(str, func(r rune) bool { return r >= utf8.RuneSelf }) >= 0) {
				t.Fatalf("Parse(%q, %v) = %q: bad encoding", s, smtputf8, str)
			}
			if strings.ContainsAny(str, "\x00\r\n") {
				t.Fatalf("Parse(%q, %v) = %q: control character", s, smtputf8, str)
			}
			if !a.IsIPLiteral() && strings.ToLower(a.Domain) != a.Domain && strings.ContainsAny(a.Domain, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
				t.Fatalf("Parse(%q, %v): domain %q not lower-cased", s, smtputf8, a.Domain)
			}
			b, err := Parse(str, smtputf8)
			if err != nil {
				t.Fatalf("round trip: Parse(%q) = %#v, Parse(%q) error %v", s, a, str, err)
			}
			if b != a {
				t.Fatalf("round trip: Parse(%q) = %#v, Parse(%q) = %#v", s, a, str, b)
			}
			if got := b.String(); got != str {
				t.Fatalf("String not stable: %q then %q", str, got)
			}
			r, err := ParseReversePath(str, smtputf8)
			if err != nil || r != a {
				t.Fatalf("ParseReversePath(%q) = %#v, %v; want %#v", str, r, err, a)
			}
		}
	})
}

// TestLowerDomainStable checks, over every rune, that lower-casing a domain
// is idempotent (so Parse(a.String()) == a) and never turns a non-ASCII
// character into an ASCII one (so no look-alike becomes a local domain).
func TestLowerDomainStable(t *testing.T) {
	for r := rune(utf8.RuneSelf); r <= utf8.MaxRune; r++ {
		if !utf8.ValidRune(r) {
			continue
		}
		s := string(r)
		l := lowerDomain(s)
		if lowerDomain(l) != l {
			t.Errorf("lowerDomain not idempotent for %U: %q then %q", r, l, lowerDomain(l))
		}
		if l[0] < utf8.RuneSelf {
			t.Errorf("lowerDomain(%U) = %q, an ASCII character", r, l)
		}
	}
}

func TestLowerASCII(t *testing.T) {
	for in, want := range map[string]string{
		"ALICE@Example.ORG": "alice@example.org",
		"al\u0130ce":        "al\u0130ce",
		"\u212A":            "\u212A",
		"already":           "already",
		"":                  "",
	} {
		if got := LowerASCII(in); got != want {
			t.Errorf("LowerASCII(%q) = %q, want %q", in, got, want)
		}
	}
}
