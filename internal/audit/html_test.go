package audit

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// hostileBanner tries to inject markup and script into the page.
const hostileBanner = `220 mx.local.test ESMTP Postfix 3.7.1 <script>alert(1)</script> <img src=x onerror=alert(2)> "' &amp;`

// pageFinding is one finding as the page shows it.
type pageFinding struct {
	group, id, severity string
	evidence            int // lines under <details>
}

// parsePage checks that page is well-formed (strict XML: every element
// closed, every entity valid), contains no active or external content,
// and returns its findings and its text.
func parsePage(t *testing.T, page []byte) ([]pageFinding, string) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(page))
	d.Strict = true
	var (
		found           []pageFinding
		text            strings.Builder
		stack           []string
		group           string
		cur             *pageFinding
		inH2, inID, pre bool
	)
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("page is not well-formed: %v\n%s", err, page)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			name := strings.ToLower(e.Name.Local)
			stack = append(stack, name)
			switch name {
			case "script", "img", "iframe", "object", "embed", "link", "base", "form", "svg", "a":
				t.Errorf("page has a <%s> element", name)
			}
			class := ""
			for _, a := range e.Attr {
				an := strings.ToLower(a.Name.Local)
				if strings.HasPrefix(an, "on") || an == "src" || an == "href" || an == "style" {
					t.Errorf("page has attribute %s=%q on <%s>", an, a.Value, name)
				}
				if an == "class" {
					class = a.Value
				}
			}
			switch {
			case name == "h2":
				inH2, group = true, ""
			case name == "div" && strings.HasPrefix(class, "finding "):
				found = append(found, pageFinding{group: group, severity: strings.TrimPrefix(class, "finding ")})
				cur = &found[len(found)-1]
			case name == "span" && class == "id":
				inID = true
			case name == "pre" && slices.Contains(stack, "details"):
				pre = true
			}
		case xml.EndElement:
			stack = stack[:len(stack)-1]
			switch strings.ToLower(e.Name.Local) {
			case "h2":
				inH2 = false
			case "span":
				inID = false
			case "pre":
				pre = false
			case "div":
				cur = nil
			}
		case xml.CharData:
			s := string(e)
			text.WriteString(s)
			switch {
			case inH2:
				group += s
			case inID && cur != nil:
				cur.id += s
			case pre && cur != nil:
				cur.evidence += strings.Count(s, "\n")
			}
		}
	}
	if len(stack) != 0 {
		t.Errorf("unclosed elements %v", stack)
	}
	return found, text.String()
}

// TestHTMLReport: the page parses, shows every finding under its port
// and severity with its evidence folded under <details>, and a hostile
// banner appears as text, never as markup.
func TestHTMLReport(t *testing.T) {
	f := &fakeSMTP{Banner: hostileBanner, Rcpt: func(string) string { return "250 Ok" }, Ext: []string{"AUTH PLAIN"}}
	rep := run(t, f.start(t), func(o *Options) { o.Resolver = goodDNS(); o.DNSBLs = nil })
	rep.Notes = append(rep.Notes, "a note with <b>markup</b>")
	rep.Findings = append(rep.Findings, Finding{ID: "dns.test", Title: "host-level <i>finding</i>", Severity: Low, Evidence: []string{"DNS: x"}, Fix: "none"})
	var b bytes.Buffer
	if err := rep.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	page := b.Bytes()
	low := strings.ToLower(string(page))
	for _, bad := range []string{"<script", "<img", "<b>", "<i>", "http://", "https://", "url("} {
		if strings.Contains(low, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	found, text := parsePage(t, page)
	for _, want := range []string{"<script>alert(1)</script>", "<img src=x onerror=alert(2)>", `"' &amp;`, "a note with <b>markup</b>", "host-level <i>finding</i>"} {
		if !strings.Contains(text, want) {
			t.Errorf("page text lacks %q (escaped as text)", want)
		}
	}
	if len(found) != len(rep.Findings) {
		t.Fatalf("page shows %d findings, report has %d", len(found), len(rep.Findings))
	}
	var lastGroup string
	var lastSev Severity
	for i, pf := range found {
		var want *Finding
		for j := range rep.Findings {
			if rep.Findings[j].ID == pf.id && ("Port "+rep.Findings[j].Port == pf.group || rep.Findings[j].Port == "" && pf.group == "Host and domain (DNS)") {
				want = &rep.Findings[j]
			}
		}
		if want == nil {
			t.Errorf("page finding %+v matches no report finding", pf)
			continue
		}
		if pf.severity != want.Severity.String() || pf.evidence != len(want.Evidence) {
			t.Errorf("%s: page severity %s, %d evidence lines; report %s, %d", pf.id, pf.severity, pf.evidence, want.Severity, len(want.Evidence))
		}
		if i > 0 && pf.group == lastGroup && want.Severity > lastSev {
			t.Errorf("%s: not grouped by severity within %s", pf.id, pf.group)
		}
		lastGroup, lastSev = pf.group, want.Severity
	}
	if !strings.Contains(text, "FAIL: findings of severity high or above") {
		t.Error("page lacks the result")
	}
}

// TestMainHTML: --html writes the page and changes neither stdout (text
// or --json) nor the exit status.
func TestMainHTML(t *testing.T) {
	open := (&fakeSMTP{Banner: hostileBanner, Rcpt: func(string) string { return "250 Ok" }}).start(t)
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	var stdout, stderr bytes.Buffer
	if got := Main([]string{open, "--domain", "local.test", "--no-dns", "--json", "--html", page}, &stdout, &stderr); got != ExitHigh {
		t.Fatalf("exit %d, want %d\n%s", got, ExitHigh, stderr.String())
	}
	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("--json output with --html is not JSON: %v", err)
	}
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	found, _ := parsePage(t, b)
	if len(found) != len(rep.Findings) || len(found) == 0 {
		t.Errorf("page shows %d findings, JSON %d", len(found), len(rep.Findings))
	}
	stdout.Reset()
	if got := Main([]string{open, "--domain", "local.test", "--no-dns", "--html", page}, &stdout, &stderr); got != ExitHigh || !strings.Contains(stdout.String(), "result: FAIL") {
		t.Errorf("text with --html: exit %d\n%s", got, stdout.String())
	}
	if got := Main([]string{open, "--domain", "local.test", "--no-dns", "--html", filepath.Join(dir, "no", "such", "dir.html")}, io.Discard, &stderr); got != ExitError {
		t.Errorf("unwritable --html: exit %d, want %d", got, ExitError)
	}
}
