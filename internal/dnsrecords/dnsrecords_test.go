package dnsrecords

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"kanmon/internal/dkim"
	"kanmon/internal/dnsresolve"
)

func TestCheckEachResult(t *testing.T) {
	st := dkim.NewStore(t.TempDir())
	keys, err := st.Ensure("example.org", []string{dkim.Ed25519, dkim.RSA}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	recs, err := Expected("example.org", keys, Options{Hostname: "mx.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	byKind := map[string]Record{}
	for _, r := range recs {
		byKind[r.Kind+r.Name] = r
	}
	ed, _ := keys[0].Record()
	m := &dnsresolve.Mock{
		MX: map[string][]*net.MX{"example.org": {{Host: "MX.example.org.", Pref: 5}}},
		TXT: map[string][]string{
			"example.org": {"v=spf1 a -all", "other"},
			// Spacing differs from ours: still the same record.
			keys[0].Name():         {strings.ReplaceAll(ed, "; ", ";")},
			"_dmarc.example.org":   {"v=DMARC1; p=reject; rua=mailto:postmaster@example.org"},
			"_mta-sts.example.org": {"v=STSv1; id=old"},
		},
		Fail: map[string]error{"_smtp._tls.example.org": dnsresolve.TemporaryError("_smtp._tls.example.org")},
	}
	got := map[string]string{}
	for _, s := range Check(context.Background(), m, recs) {
		got[s.Kind+" "+s.Name] = s.Result
	}
	want := map[string]string{
		"MX example.org":                 Present,
		"SPF example.org":                Different,
		"DKIM " + keys[0].Name():         Present,
		"DKIM " + keys[1].Name():         Missing,
		"DMARC _dmarc.example.org":       Present,
		"MTA-STS _mta-sts.example.org":   Different,
		"TLS-RPT _smtp._tls.example.org": Failed,
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %s, want %s", k, got[k], w)
		}
	}
}

func TestZoneLineSplitsLongTXT(t *testing.T) {
	r := Record{Name: "s._domainkey.example.org", Type: "TXT", Value: strings.Repeat("a", 300)}
	line := r.ZoneLine()
	if !strings.Contains(line, `"`+strings.Repeat("a", 255)+`" "`+strings.Repeat("a", 45)+`"`) {
		t.Fatalf("TXT not split at 255: %s", line)
	}
}
