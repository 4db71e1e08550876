package forgery

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func local(d string) bool { return d == "example.org" }

func TestKindOf(t *testing.T) {
	attrs := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	tests := []struct {
		rule string
		attr func(string) string
		want string
	}{
		{"rcpt.batv", attrs(), KindBounce},
		{"rcpt.bounce_recipients", attrs(), KindBounce},
		{"sender.forged_local", attrs(), KindLocalSender},
		{"data.dmarc", attrs("from_domain", "Example.ORG."), KindDMARC},
		{"data.dmarc", attrs("domain", "example.org"), KindDMARC},
		{"data.dmarc", attrs("header_from", "<ceo@example.org>"), KindDMARC},
		{"data.dmarc", attrs("from_domain", "bank.example"), ""},
		{"data.dmarc", attrs(), ""},
		{"rcpt.unknown", attrs(), ""},
		{"relay.denied", attrs(), ""},
	}
	for _, tt := range tests {
		if got := KindOf(tt.rule, tt.attr, local); got != tt.want {
			t.Errorf("KindOf(%s) = %q, want %q", tt.rule, got, tt.want)
		}
	}
	if got := KindOfAttrs("data.dmarc", []any{"code", 550, "from_domain", "example.org"}, local); got != KindDMARC {
		t.Errorf("KindOfAttrs(data.dmarc, our domain) = %q", got)
	}
	if got := KindOfAttrs("sender.forged_local", nil, local); got != KindLocalSender {
		t.Errorf("KindOfAttrs(sender.forged_local) = %q", got)
	}
}

func buildFixture(t *testing.T, opt Options) *Report {
	t.Helper()
	f, err := os.Open("testdata/forgery.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if opt.Local == nil {
		opt.Local = local
	}
	r, err := Build([]io.Reader{f}, opt)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestBuildFixture: every rule of the fixture log is counted in its kind,
// per address (from the line, or from the connection's connect line),
// per network and per hour; other rules, other domains' DMARC failures
// and lines before --since are not.
func TestBuildFixture(t *testing.T) {
	r := buildFixture(t, Options{Since: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)})
	want := Counts{KindBounce: 4, KindLocalSender: 2, KindDMARC: 1}
	for k, n := range want {
		if r.Totals[k] != n {
			t.Errorf("totals[%s] = %d, want %d (all %v)", k, r.Totals[k], n, r.Totals)
		}
	}
	if r.Skipped != 1 {
		t.Errorf("skipped = %d, want 1 (the line that is not JSON but names a rule)", r.Skipped)
	}
	src := map[string]Source{}
	for _, s := range r.Sources {
		src[s.Source] = s
	}
	if s := src["192.0.2.10"]; s.Counts[KindBounce] != 3 || s.Total != 3 {
		t.Errorf("192.0.2.10: %+v, want 3 bounces", s)
	}
	if s := src["2001:db8:1:2::5"]; s.Counts[KindLocalSender] != 1 {
		t.Errorf("IPv6 source from its connect line: %+v", s)
	}
	if s := src["unknown"]; s.Counts[KindLocalSender] != 1 {
		t.Errorf("a line without a known connection: %+v", s)
	}
	if r.Sources[0].Source != "192.0.2.10" {
		t.Errorf("busiest source first: got %q", r.Sources[0].Source)
	}
	nets := map[string]int{}
	for _, n := range r.Networks {
		nets[n.Source] = n.Total
	}
	if nets["192.0.2.0/24"] != 4 || nets["2001:db8:1:2::/64"] != 1 || nets["198.51.100.0/24"] != 1 {
		t.Errorf("networks = %v", nets)
	}
	hours := map[string]Counts{}
	for _, h := range r.Hours {
		hours[h.Hour.Format("15")] = h.Counts
	}
	if hours["09"][KindBounce] != 1 || hours["10"][KindBounce] != 3 || hours["10"][KindLocalSender] != 1 || hours["11"][KindDMARC] != 1 {
		t.Errorf("hours = %v", hours)
	}
	kinds := map[string]int{}
	for _, s := range r.Samples {
		kinds[s.Kind]++
		if !strings.Contains(s.Line, `"rule":`) {
			t.Errorf("sample is not a log line: %q", s.Line)
		}
	}
	if kinds[KindBounce] != 3 || kinds[KindLocalSender] != 2 || kinds[KindDMARC] != 1 {
		t.Errorf("samples per kind = %v, want 3, 2, 1", kinds)
	}
}

func TestBuildWholeLogAndTop(t *testing.T) {
	r := buildFixture(t, Options{Top: 1, Samples: 1})
	if r.Totals[KindBounce] != 5 {
		t.Errorf("whole log: %d bounces, want 5", r.Totals[KindBounce])
	}
	if len(r.Sources) != 1 || !r.Truncated || len(r.Samples) != 3 {
		t.Errorf("top 1: %d sources (truncated %v), %d samples", len(r.Sources), r.Truncated, len(r.Samples))
	}
}

func TestOutputs(t *testing.T) {
	r := buildFixture(t, Options{Since: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)})
	var j bytes.Buffer
	if err := r.WriteJSON(&j); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Totals  map[string]int `json:"totals"`
		Sources []Source       `json:"sources"`
		Hours   []Hour         `json:"hours"`
	}
	if err := json.Unmarshal(j.Bytes(), &back); err != nil || back.Totals["bounce"] != 4 || len(back.Hours) != 3 {
		t.Errorf("JSON: %v %+v\n%s", err, back, j.String())
	}
	var c bytes.Buffer
	if err := r.WriteCSV(&c); err != nil {
		t.Fatal(err)
	}
	csv := c.String()
	for _, want := range []string{"hour,source,network,kind,count\n", "2026-03-01T10:00:00Z,192.0.2.10,192.0.2.0/24,bounce,2\n", "2026-03-01T11:00:00Z,198.51.100.9,198.51.100.0/24,dmarc,1\n"} {
		if !strings.Contains(csv, want) {
			t.Errorf("CSV lacks %q:\n%s", want, csv)
		}
	}
	var tx bytes.Buffer
	if err := r.WriteText(&tx); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bounce", "192.0.2.10", "192.0.2.0/24", "2026-03-01 10:00", "Sample lines", "[dmarc]"} {
		if !strings.Contains(tx.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, tx.String())
		}
	}
}

func TestMainCommand(t *testing.T) {
	var out, errb bytes.Buffer
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	code := Main([]string{"--log", "testdata/forgery.log", "--domain", "example.org", "--json", "--since", "24h"}, nil, nil, &out, &errb, now)
	if code != ExitOK || !strings.Contains(out.String(), `"bounce": 4`) {
		t.Errorf("exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	if code := Main([]string{"--json", "--csv", "--log", "x"}, nil, nil, &out, &errb, now); code != ExitError {
		t.Errorf("--json --csv: exit %d", code)
	}
	if code := Main(nil, nil, nil, &out, &errb, now); code != ExitError {
		t.Errorf("no log: exit %d", code)
	}
}
