package address

import (
	"errors"
	"strings"
	"testing"
)

func TestParseOriginatorValid(t *testing.T) {
	tests := []struct {
		name, in string
		want     Addr
	}{
		{"bare", "alice@example.org", Addr{"alice", "example.org"}},
		{"angle", "<alice@example.org>", Addr{"alice", "example.org"}},
		{"display name", "Alice Liddell <alice@example.org>", Addr{"alice", "example.org"}},
		{"quoted display name", `"Liddell, Alice" <alice@example.org>`, Addr{"alice", "example.org"}},
		{"encoded display name", "=?utf-8?q?J=C3=B6rg?= <alice@example.org>", Addr{"alice", "example.org"}},
		{"iso-2022-jp display name", "=?iso-2022-jp?b?GyRCJCIkJCQmGyhC?= <alice@example.org>", Addr{"alice", "example.org"}},
		{"comment", "alice@example.org (Alice)", Addr{"alice", "example.org"}},
		{"display name is own address", `"alice@example.org" <alice@example.org>`, Addr{"alice", "example.org"}},
		{"display name own address other case", `"ALICE@Example.ORG" <alice@example.org>`, Addr{"alice", "example.org"}},
		{"domain case folded", "Alice@EXAMPLE.Org", Addr{"Alice", "example.org"}},
		{"quoted local part without need", `"alice"@example.org`, Addr{"alice", "example.org"}},
		{"idna u-label", "Alice <alice@exämple.org>", Addr{"alice", "xn--exmple-cua.org"}},
		{"idna a-label", "alice@XN--EXMPLE-CUA.org", Addr{"alice", "xn--exmple-cua.org"}},
		{"folding whitespace", "Alice\t <alice@example.org> ", Addr{"alice", "example.org"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := ParseOriginator("From", tt.in)
			if err != nil {
				t.Fatalf("ParseOriginator(%q): %v", tt.in, err)
			}
			if o.Addr != tt.want {
				t.Fatalf("ParseOriginator(%q) = %#v, want %#v", tt.in, o.Addr, tt.want)
			}
		})
	}
}

func TestParseOriginatorRefused(t *testing.T) {
	tests := []struct {
		name, in, want string // want: a word of the reason
	}{
		{"empty", "  ", "empty"},
		{"two addresses", "alice@example.org, mallory@example.org", "2 addresses"},
		{"display name other address", `"ceo@example.org" <alice@example.org>`, "ceo@example.org"},
		{"display name unquoted other address", `ceo@example.org <alice@example.org>`, "cannot be read"},
		{"comment other address", "alice@example.org (ceo@example.org)", "ceo@example.org"},
		{"comment after angle", "Alice <alice@example.org> (ceo@example.org)", "ceo@example.org"},
		{"encoded-word display name address", "=?utf-8?b?Y2VvQGV4YW1wbGUub3Jn?= <alice@example.org>", "ceo@example.org"},
		{"encoded-word q display name address", "=?utf-8?q?ceo=40example=2Eorg?= <alice@example.org>", "ceo@example.org"},
		{"encoded-word in local part", "=?utf-8?b?YWxpY2U=?=@example.org", "encoded-word"},
		{"encoded-word in angle", "Alice <=?utf-8?b?YWxpY2U=?=@example.org>", "encoded-word"},
		{"group", "friends: alice@example.org;", "group"},
		{"empty group", "undisclosed-recipients:;", "group"},
		{"source route", "<@relay.example:alice@example.org>", "source route"},
		{"quoted local part with at", `"ceo@example.org"@example.net`, "'@'"},
		{"quoted local part with space", `"alice smith"@example.org`, "quoting"},
		{"address literal", "alice@[127.0.0.1]", "literal"},
		{"ipv6 literal", "alice@[IPv6:::1]", "group"},
		{"no domain", "alice", "cannot be read"},
		{"trailing dot", "alice@example.org.", "cannot be read"},
		{"bad idna", "alice@xn--zz.org", "domain"},
		{"control character", "alice@example.org\x00", "control"},
		{"bidi override", "\u202egro.elpmaxe@ecila\u202c <alice@example.org>", "control"},
		{"invalid utf-8", "\xff <alice@example.org>", "UTF-8"},
		{"unknown charset", "=?x-nonesuch?q?Alice?= <alice@example.org>", "cannot be read"},
		{"too long", strings.Repeat("a", MaxOriginatorLen) + " <alice@example.org>", "longer"},
		{"second angle", "Alice <alice@example.org> <mallory@example.org>", "cannot be read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := ParseOriginator("From", tt.in)
			if err == nil {
				t.Fatalf("ParseOriginator(%q) = %#v, want an error", tt.in, o)
			}
			var he *HeaderError
			if !errors.As(err, &he) || he.Field != "From" {
				t.Fatalf("error %T %v is not a From *HeaderError", err, err)
			}
			if !strings.Contains(he.Reason, tt.want) {
				t.Fatalf("ParseOriginator(%q): reason %q does not mention %q", tt.in, he.Reason, tt.want)
			}
		})
	}
}

// FuzzParseOriginator: whatever the field, the parser returns one
// canonical mailbox or a *HeaderError, and a mailbox it returns never
// comes with another address mentioned in the field.
func FuzzParseOriginator(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		o, err := ParseOriginator("From", s)
		if err != nil {
			var he *HeaderError
			if !errors.As(err, &he) || he.Reason == "" {
				t.Fatalf("ParseOriginator(%q): error %T %v", s, err, err)
			}
			return
		}
		a := o.Addr
		if a.Local == "" || a.Domain == "" || strings.Contains(a.Local, "@") || strings.Contains(a.Local+a.Domain, "=?") {
			t.Fatalf("ParseOriginator(%q) = %#v: not a plain mailbox", s, a)
		}
		if d, err := CanonicalDomain(a.Domain); err != nil || d != a.Domain {
			t.Fatalf("ParseOriginator(%q): domain %q not canonical (%q, %v)", s, a.Domain, d, err)
		}
		if other := otherAddress(s, a); other != "" {
			t.Fatalf("ParseOriginator(%q) accepted with another address %q", s, other)
		}
	})
}

func BenchmarkParseOriginator(b *testing.B) {
	for b.Loop() {
		if _, err := ParseOriginator("From", "=?utf-8?q?J=C3=B6rg_Alice?= <alice@example.org>"); err != nil {
			b.Fatal(err)
		}
	}
}
