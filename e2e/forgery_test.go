package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestForgeryReport provokes sender.forged_local on the real server's MX
// with swaks, adds a log of synthetic bounce (rcpt.batv,
// rcpt.bounce_recipients) and DMARC lines as those checks write them, and
// runs `kanmon report forgery --json` over both: every kind is counted per
// source address, and /metrics has the forged sender in
// kanmon_forgery_total.
func TestForgeryReport(t *testing.T) {
	t.Parallel()
	needTool(t, "swaks")
	needTool(t, "curl")
	s := startServer(t, options{})
	for i := 0; i < 2; i++ {
		out, _ := swaks(t, "--server", s.MX, "--from", "ceo@example.org", "--to", alice)
		if !hasReply(swaksReplies(out), 550, "5.7.1") {
			t.Fatalf("forged local sender not refused:\n%s", out)
		}
	}
	s.WaitLog(t, "forged local sender decision", func(l logLine) bool { return l.str("rule") == "sender.forged_local" })

	now := time.Now().UTC()
	ts := func(d time.Duration) string { return now.Add(-d).Format(time.RFC3339Nano) }
	synthetic := strings.Join([]string{
		`{"time":"` + ts(3*time.Minute) + `","level":"INFO","msg":"connect","conn":"cb1","listener":"mx","remote":"192.0.2.10:4000"}`,
		`{"time":"` + ts(3*time.Minute) + `","level":"INFO","msg":"decision","conn":"cb1","listener":"mx","rule":"rcpt.batv","code":550,"enhanced":"5.7.1","reason":"bounce without a valid BATV tag","addr":"alice@example.org","from":""}`,
		`{"time":"` + ts(2*time.Minute) + `","level":"INFO","msg":"decision","conn":"cb1","listener":"mx","rule":"rcpt.bounce_recipients","code":452,"enhanced":"4.5.3","reason":"one recipient","addr":"bob@example.org","from":""}`,
		`{"time":"` + ts(time.Minute) + `","level":"INFO","msg":"decision","conn":"cd1","listener":"mx","rule":"data.dmarc","code":550,"enhanced":"5.7.1","reason":"DMARC","from_domain":"example.org","client_ip":"198.51.100.7"}`,
		`{"time":"` + ts(48*time.Hour) + `","level":"INFO","msg":"decision","conn":"cb0","listener":"mx","rule":"rcpt.batv","code":550,"enhanced":"5.7.1","reason":"old","client_ip":"192.0.2.10"}`,
	}, "\n") + "\n"
	synthLog := filepath.Join(t.TempDir(), "other.log")
	if err := os.WriteFile(synthLog, []byte(synthetic), 0o600); err != nil {
		t.Fatal(err)
	}

	out := mustKanmon(t, s.Dir, "", "report", "forgery", "--json", "--since", "24h", "--config", s.Config, "--log", synthLog, "--log", s.LogPath)
	var rep struct {
		Totals  map[string]int `json:"totals"`
		Sources []struct {
			Source string         `json:"source"`
			Counts map[string]int `json:"counts"`
		} `json:"sources"`
		Networks []struct {
			Source string `json:"source"`
			Total  int    `json:"total"`
		} `json:"networks"`
		Samples []struct{ Kind, Line string } `json:"samples"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out)
	}
	if rep.Totals["local_sender"] != 2 || rep.Totals["bounce"] != 2 || rep.Totals["dmarc"] != 1 {
		t.Errorf("totals = %v, want local_sender 2, bounce 2, dmarc 1\n%s", rep.Totals, out)
	}
	bySource := map[string]map[string]int{}
	for _, src := range rep.Sources {
		bySource[src.Source] = src.Counts
	}
	if bySource["127.0.0.1"]["local_sender"] != 2 || bySource["192.0.2.10"]["bounce"] != 2 || bySource["198.51.100.7"]["dmarc"] != 1 {
		t.Errorf("per source = %v", bySource)
	}
	if len(rep.Samples) != 5 {
		t.Errorf("%d samples, want 5 (two local_sender, two bounce, one dmarc)", len(rep.Samples))
	}

	table := mustKanmon(t, s.Dir, "", "report", "forgery", "--log", s.LogPath, "--domain", domain)
	if !strings.Contains(table, "127.0.0.0/24") || !strings.Contains(table, "sender.forged_local") {
		t.Errorf("table report lacks the network or the rule:\n%s", table)
	}

	metrics, code := curl(t, "http://"+s.Admin+"/metrics")
	if code != 0 {
		t.Fatalf("curl /metrics: exit %d\n%s", code, metrics)
	}
	for _, re := range []string{`kanmon_forgery_total\{kind="local_sender"\} 2\b`, `kanmon_forgery_total\{kind="bounce"\} 0\b`} {
		if !regexp.MustCompile(re).MatchString(metrics) {
			t.Errorf("/metrics lacks %s:\n%s", re, grepLines(metrics, "kanmon_forgery"))
		}
	}
}

// grepLines returns the lines of s containing sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
