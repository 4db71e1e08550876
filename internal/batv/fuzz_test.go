package batv

import (
	"testing"
)

// FuzzParse: Parse never panics, and whatever it accepts it reads back
// consistently (a one-digit key, a day below 1000, a non-empty user).
func FuzzParse(f *testing.F) {
	f.Add("prvs=1234abcdef=alice")
	f.Add("alice")
	f.Add("PRVS=9999FFFFFF=A")
	f.Fuzz(func(t *testing.T, s string) {
		tag, ok := Parse(s)
		if !ok {
			return
		}
		if tag.Key < 0 || tag.Key > 9 || tag.Day < 0 || tag.Day > 999 || tag.Local == "" {
			t.Fatalf("Parse(%q) = %+v", s, tag)
		}
		if !HasTag(s) || len(s) != len(prefix)+tagLen+1+len(tag.Local) {
			t.Fatalf("Parse(%q) accepted a length that does not add up: %+v", s, tag)
		}
		// Checking never panics either, with or without a key.
		Check(tag, nil, "example.org", day0)
		Check(tag, secretA, "example.org", day0)
	})
}
