package audit

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"time"
)

// The HTML report is for people who would rather look than read: one
// self-contained page (inline CSS, no scripts, no external resources, so
// it can be mailed or archived as is), findings grouped by port and then
// severity, each with its fix and its evidence folded under <details>.
//
// SECURITY: everything the audited server said (banner, replies,
// certificate names, DNS answers) reaches the page only through
// html/template, which escapes it for the context it lands in; the page
// declares a Content-Security-Policy that forbids scripts in case a
// viewer is ever given something that was not escaped.

// htmlGroup is the findings of one port, or of the host and domain.
type htmlGroup struct {
	Title    string
	Summary  string
	Severity []htmlSeverity
}

// htmlSeverity is one group's findings of one severity.
type htmlSeverity struct {
	Name     string
	Findings []Finding
}

// htmlPage is what the template renders.
type htmlPage struct {
	R       *Report
	Started string
	Took    string
	Counts  string
	Result  string
	Pass    bool
	Groups  []htmlGroup
}

// WriteHTML writes the report as one self-contained HTML page.
func (r *Report) WriteHTML(w io.Writer) error {
	p := htmlPage{
		R:       r,
		Started: r.Started.UTC().Format(time.RFC3339),
		Took:    r.Duration.Round(time.Millisecond).String(),
		Counts:  "no findings",
		Pass:    !r.HasHigh(),
	}
	var counts []string
	for s := Critical; s >= Info; s-- {
		if n := r.Count(s); n > 0 {
			counts = append(counts, fmt.Sprintf("%d %s", n, s))
		}
	}
	if len(counts) > 0 {
		p.Counts = fmt.Sprintf("%d findings: %s", len(r.Findings), strings.Join(counts, ", "))
	}
	p.Result = "PASS: no findings of severity high or above"
	if !p.Pass {
		p.Result = "FAIL: findings of severity high or above"
	}
	p.Groups = htmlGroups(r)
	var b bytes.Buffer
	if err := htmlReport.Execute(&b, p); err != nil {
		return fmt.Errorf("audit: rendering HTML report: %w", err)
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("audit: writing HTML report: %w", err)
	}
	return nil
}

// htmlGroups groups the findings by port (in probing order, then any
// port only findings name), then by severity, highest first; findings
// about the host and domain (no port) come last.
func htmlGroups(r *Report) []htmlGroup {
	var groups []htmlGroup
	seen := map[string]bool{}
	for _, p := range r.Ports {
		key := strconv.Itoa(p.Port) + "/" + string(p.Role)
		seen[key] = true
		groups = append(groups, htmlGroup{Title: "Port " + key, Summary: portSummary(p), Severity: bySeverity(r, key)})
	}
	for _, f := range r.Findings {
		if f.Port != "" && !seen[f.Port] {
			seen[f.Port] = true
			groups = append(groups, htmlGroup{Title: "Port " + f.Port, Severity: bySeverity(r, f.Port)})
		}
	}
	return append(groups, htmlGroup{Title: "Host and domain (DNS)", Severity: bySeverity(r, "")})
}

// bySeverity returns the findings made on port, grouped by severity.
func bySeverity(r *Report, port string) []htmlSeverity {
	var out []htmlSeverity
	for s := Critical; s >= Info; s-- {
		var fs []Finding
		for _, f := range r.Findings {
			if f.Port == port && f.Severity == s {
				fs = append(fs, f)
			}
		}
		if len(fs) > 0 {
			out = append(out, htmlSeverity{Name: s.String(), Findings: fs})
		}
	}
	return out
}

// portSummary is the one-line view of a port, as in the text report.
func portSummary(p *PortReport) string {
	var b strings.Builder
	writePorts(&b, []*PortReport{p})
	s := strings.TrimPrefix(b.String(), "\nports:\n")
	return strings.TrimSpace(s)
}

// htmlReport is XHTML-compatible (void elements closed) so that a strict
// XML parser can check it; CSS avoids "<" and "&".
var htmlReport = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'"/>
<title>kanmon audit of {{.R.Target}}</title>
<style>
body { font-family: sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; margin-top: 2em; }
.sum { white-space: pre-wrap; font-family: monospace; font-size: 0.9em; color: #444; }
.finding { border-left: 6px solid #999; padding: 0.3em 0.8em; margin: 0.8em 0; background: #fafafa; }
.critical { border-color: #7b0000; } .high { border-color: #d00; } .medium { border-color: #e80; }
.low { border-color: #cb0; } .info { border-color: #69c; }
.sev { font-weight: bold; text-transform: uppercase; }
.id { font-family: monospace; }
pre { white-space: pre-wrap; word-break: break-all; background: #f0f0f0; padding: 0.5em; }
.pass { color: #070; font-weight: bold; } .fail { color: #b00; font-weight: bold; }
</style>
</head>
<body>
<h1>kanmon audit of {{.R.Target}}</h1>
<p>Address {{.R.Address}}, domain {{.R.Domain}}, started {{.Started}}, took {{.Took}}.</p>
<p>{{.Counts}}. <span class="{{if .Pass}}pass{{else}}fail{{end}}">{{.Result}}</span></p>
{{range .Groups}}<h2>{{.Title}}</h2>
{{if .Summary}}<p class="sum">{{.Summary}}</p>
{{end}}{{if not .Severity}}<p>No findings.</p>
{{end}}{{range .Severity}}<h3>{{.Name}}</h3>
{{range .Findings}}<div class="finding {{.Severity}}">
<p><span class="sev">{{.Severity}}</span> <span class="id">{{.ID}}</span>: {{.Title}}</p>
<p><strong>Fix:</strong> {{.Fix}}</p>
{{if .Evidence}}<details><summary>Evidence ({{len .Evidence}} lines)</summary>
<pre>{{range .Evidence}}{{.}}
{{end}}</pre>
</details>
{{end}}</div>
{{end}}{{end}}{{end}}{{if .R.Notes}}<h2>Notes</h2>
<ul>
{{range .R.Notes}}<li>{{.}}</li>
{{end}}</ul>
{{end}}</body>
</html>
`))
