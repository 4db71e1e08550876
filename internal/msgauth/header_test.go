package msgauth

import (
	"bytes"
	"strings"
	"testing"
)

func TestAuthservID(t *testing.T) {
	for in, want := range map[string]string{
		"mx.example.org; spf=pass":                 "mx.example.org",
		"  MX.Example.ORG 1; none":                 "mx.example.org",
		"(comment (nested)) mx.example.org; none":  "mx.example.org",
		`"mx.example.org"; dkim=pass`:              "mx.example.org",
		"mx.example.org(c);dkim=pass":              "mx.example.org",
		"mx.example.org.evil; none":                "mx.example.org.evil",
		"":                                         "",
		"; none":                                   "",
		"(unclosed comment mx.example.org; none":   "",
		"other.example; dkim=pass header.d=x.test": "other.example",
	} {
		if got := AuthservID(in); got != want {
			t.Errorf("AuthservID(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestFilterHeader: an Authentication-Results claiming our authserv-id
// is removed (whatever its case, folding or comments) and so is any
// X-Kanmon-Quarantine; one for another authserv-id stays.
func TestFilterHeader(t *testing.T) {
	h := "Received: from a\r\n\tby b\r\n" +
		"Authentication-Results: mx.example.org; dkim=pass\r\n" +
		"authentication-results :\r\n (forged) MX.EXAMPLE.ORG;\r\n\tspf=pass\r\n" +
		"Authentication-Results: other.example; dkim=pass header.d=x.test\r\n" +
		"X-Kanmon-Quarantine: none\r\n" +
		"From: a@x.test\r\n"
	got, n := FilterHeader([]byte(h), "mx.example.org")
	want := "Received: from a\r\n\tby b\r\n" +
		"Authentication-Results: other.example; dkim=pass header.d=x.test\r\n" +
		"From: a@x.test\r\n"
	if string(got) != want || n != 3 {
		t.Errorf("FilterHeader removed %d:\n%q\nwant\n%q", n, got, want)
	}
}

func TestFromDomain(t *testing.T) {
	for _, tc := range []struct{ hdr, addr, domain string }{
		{"From: Bob <bob@Sender.Test>\r\n", "bob@Sender.Test", "sender.test"},
		{"from: =?iso-2022-jp?B?GyRCJUYlOSVIGyhC?= <bob@sender.test>\r\n", "bob@sender.test", "sender.test"},
		{"From: bob@sender.test\r\nSubject: x\r\n", "bob@sender.test", "sender.test"},
		{"From: \"a, b\" <bob@sender.test>\r\n", "bob@sender.test", "sender.test"},
		{"From: bob@sender.test, eve@evil.test\r\n", "", ""},
		{"From: bob@sender.test\r\nFrom: eve@evil.test\r\n", "", ""},
		{"Subject: no from\r\n", "", ""},
		{"From: undisclosed:;\r\n", "", ""},
		{"From: not an address\r\n", "", ""},
		{"From: <>\r\n", "", ""},
	} {
		addr, dom, problem := FromDomain(splitFields([]byte(tc.hdr)))
		if addr != tc.addr || dom != tc.domain || (tc.addr == "") != (problem != "") {
			t.Errorf("FromDomain(%q) = %q, %q, %q", tc.hdr, addr, dom, problem)
		}
	}
}

func TestFormatAuthResults(t *testing.T) {
	got := string(FormatAuthResults("mx.example.org", "pass", "sender.test", "helo.test",
		[]DKIMResult{{Result: "pass", Domain: "sender.test", Selector: "sel"},
			{Result: "fail", Domain: "x.test", Selector: "s2", Identifier: "@x.test", Reason: "body hash\r\nInjected: yes"}},
		"pass", "sender.test"))
	want := "Authentication-Results: mx.example.org;\r\n" +
		"\tspf=pass smtp.mailfrom=sender.test;\r\n" +
		"\tdkim=pass header.d=sender.test header.s=sel;\r\n" +
		"\tdkim=fail reason=\"body hashInjected: yes\" header.d=x.test header.i=@x.test header.s=s2;\r\n" +
		"\tdmarc=pass header.from=sender.test\r\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if got := string(FormatAuthResults("mx.example.org", "", "", "", nil, "", "")); got != "Authentication-Results: mx.example.org;\r\n\tnone\r\n" {
		t.Errorf("nothing checked: %q", got)
	}
	null := string(FormatAuthResults("mx.example.org", "none", "", "helo.test", nil, "", ""))
	if !strings.Contains(null, "spf=none smtp.helo=helo.test") {
		t.Errorf("null sender: %q", null)
	}
}

// FuzzFilterHeader: the filter never adds bytes, keeps every field it
// does not remove in order, never panics, and leaves no field claiming
// our authserv-id.
func FuzzFilterHeader(f *testing.F) {
	f.Add([]byte("Authentication-Results: mx.example.org; dkim=pass\r\nFrom: a@b.test\r\n"))
	f.Fuzz(func(t *testing.T, h []byte) {
		out, n := FilterHeader(h, "mx.example.org")
		if len(out) > len(h) || n < 0 {
			t.Fatalf("grew: %d > %d", len(out), len(h))
		}
		if n == 0 && !bytes.Equal(out, h) {
			t.Fatalf("changed without removing: %q -> %q", h, out)
		}
		for _, fl := range splitFields(out) {
			if is(fl, fieldAuthResults) && AuthservID(fieldValue(fl)) == "mx.example.org" {
				t.Fatalf("kept %q", fl)
			}
		}
		again, m := FilterHeader(out, "mx.example.org")
		if m != 0 || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q -> %q", out, again)
		}
	})
}
