package msgauth

import (
	"errors"
	"net"
	"testing"

	"github.com/emersion/go-msgauth/dmarc"
)

func TestAligned(t *testing.T) {
	for _, tc := range []struct {
		id, from string
		mode     dmarc.AlignmentMode
		want     bool
	}{
		{"example.com", "example.com", dmarc.AlignmentStrict, true},
		{"EXAMPLE.com.", "example.COM", dmarc.AlignmentStrict, true},
		{"mail.example.com", "example.com", dmarc.AlignmentStrict, false},
		{"mail.example.com", "example.com", dmarc.AlignmentRelaxed, true},
		{"example.com", "news.example.com", dmarc.AlignmentRelaxed, true},
		{"a.example.com", "b.example.com", dmarc.AlignmentRelaxed, true},
		{"a.example.com", "b.example.com", dmarc.AlignmentStrict, false},
		{"example.net", "example.com", dmarc.AlignmentRelaxed, false},
		{"evil-example.com", "example.com", dmarc.AlignmentRelaxed, false},
		// The organizational domain is the public suffix plus one label.
		{"a.example.co.uk", "b.example.co.uk", dmarc.AlignmentRelaxed, true},
		{"example.co.uk", "other.co.uk", dmarc.AlignmentRelaxed, false},
		{"co.uk", "example.co.uk", dmarc.AlignmentRelaxed, false},
		{"x.s3.amazonaws.com", "y.s3.amazonaws.com", dmarc.AlignmentRelaxed, false},
		{"", "example.com", dmarc.AlignmentRelaxed, false},
		{"example.com", "", dmarc.AlignmentRelaxed, false},
	} {
		if got := Aligned(tc.id, tc.from, tc.mode); got != tc.want {
			t.Errorf("Aligned(%q, %q, %s) = %v, want %v", tc.id, tc.from, tc.mode, got, tc.want)
		}
	}
}

func TestOrgDomain(t *testing.T) {
	for in, want := range map[string]string{
		"mail.example.com": "example.com", "example.com": "example.com", "a.b.example.co.uk": "example.co.uk",
		"co.uk": "co.uk", "mx.sender.test": "sender.test", "Example.COM.": "example.com",
	} {
		if got := OrgDomain(in); got != want {
			t.Errorf("OrgDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

func rec(txt string) *dmarc.Record {
	r, err := dmarc.Parse(txt)
	if err != nil {
		panic(err)
	}
	return r
}

// TestEvaluate is the DMARC decision matrix.
func TestEvaluate(t *testing.T) {
	pass := func(d string) []DKIMResult { return []DKIMResult{{Result: "pass", Domain: d, Selector: "s"}} }
	fail := func(d string) []DKIMResult { return []DKIMResult{{Result: "fail", Domain: d, Selector: "s"}} }
	temp := &net.DNSError{Err: "timeout", IsTemporary: true}
	for _, tc := range []struct {
		name   string
		in     Inputs
		result string
		policy dmarc.Policy
	}{
		{"no record", Inputs{From: "example.com", LookupErr: dmarc.ErrNoPolicy}, "none", ""},
		{"lookup temperror", Inputs{From: "example.com", LookupErr: lookupTemp(temp)}, "temperror", ""},
		{"broken record", Inputs{From: "example.com", LookupErr: errors.New("dmarc: malformed params")}, "permerror", ""},
		{"dkim aligned pass", Inputs{From: "example.com", Record: rec("v=DMARC1; p=reject"), DKIM: pass("example.com")}, "pass", "reject"},
		{"dkim relaxed subdomain", Inputs{From: "example.com", Record: rec("v=DMARC1; p=reject"), DKIM: pass("mail.example.com")}, "pass", "reject"},
		{"dkim strict subdomain", Inputs{From: "example.com", Record: rec("v=DMARC1; p=reject; adkim=s"), DKIM: pass("mail.example.com")}, "fail", "reject"},
		{"dkim unaligned pass", Inputs{From: "example.com", Record: rec("v=DMARC1; p=reject"), DKIM: pass("example.net")}, "fail", "reject"},
		{"dkim fail", Inputs{From: "example.com", Record: rec("v=DMARC1; p=reject"), DKIM: fail("example.com")}, "fail", "reject"},
		{"spf aligned pass", Inputs{From: "example.com", Record: rec("v=DMARC1; p=reject"), SPF: "pass", SPFDomain: "bounce.example.com"}, "pass", "reject"},
		{"spf strict", Inputs{From: "example.com", Record: rec("v=DMARC1; p=reject; aspf=s"), SPF: "pass", SPFDomain: "bounce.example.com"}, "fail", "reject"},
		{"spf unaligned", Inputs{From: "example.com", Record: rec("v=DMARC1; p=quarantine"), SPF: "pass", SPFDomain: "example.net"}, "fail", "quarantine"},
		{"spf softfail", Inputs{From: "example.com", Record: rec("v=DMARC1; p=reject"), SPF: "softfail", SPFDomain: "example.com"}, "fail", "reject"},
		{"aligned dkim temperror", Inputs{From: "example.com", Record: rec("v=DMARC1; p=reject"),
			DKIM: []DKIMResult{{Result: "temperror", Domain: "example.com"}}}, "temperror", "reject"},
		{"aligned spf temperror", Inputs{From: "example.com", Record: rec("v=DMARC1; p=reject"), SPF: "temperror", SPFDomain: "example.com"}, "temperror", "reject"},
		{"p=none", Inputs{From: "example.com", Record: rec("v=DMARC1; p=none")}, "fail", "none"},
		{"org record sp", Inputs{From: "a.example.com", Record: rec("v=DMARC1; p=reject; sp=quarantine"), OrgRecord: true}, "fail", "quarantine"},
		{"org record without sp", Inputs{From: "a.example.com", Record: rec("v=DMARC1; p=reject"), OrgRecord: true}, "fail", "reject"},
		{"sp ignored at From itself", Inputs{From: "example.com", Record: rec("v=DMARC1; p=reject; sp=none")}, "fail", "reject"},
		{"pct lowers reject", Inputs{From: "example.com", Record: rec("v=DMARC1; p=reject; pct=50")}, "fail", "quarantine"},
		{"pct lowers quarantine", Inputs{From: "example.com", Record: rec("v=DMARC1; p=quarantine; pct=0")}, "fail", "none"},
		{"pct 100", Inputs{From: "example.com", Record: rec("v=DMARC1; p=reject; pct=100")}, "fail", "reject"},
	} {
		o := Evaluate(tc.in)
		if o.Result != tc.result || o.Policy != tc.policy {
			t.Errorf("%s: got %s/%q (%s), want %s/%q", tc.name, o.Result, o.Policy, o.Reason, tc.result, tc.policy)
		}
	}
}

// lookupTemp makes the error dmarc.LookupWithOptions returns for a
// temporary DNS failure.
func lookupTemp(dnsErr error) error {
	_, err := dmarc.LookupWithOptions("example.com", &dmarc.LookupOptions{
		LookupTXT: func(string) ([]string, error) { return nil, dnsErr },
	})
	return err
}
