package audit

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Severity ranks a finding. Run's caller (and the CLI's exit status) treat
// High and Critical as failures.
type Severity int

// Severities, lowest first.
const (
	Info Severity = iota
	Low
	Medium
	High
	Critical
)

var severityNames = [...]string{"info", "low", "medium", "high", "critical"}

// String returns the lower-case name ("high").
func (s Severity) String() string {
	if s < Info || s > Critical {
		return fmt.Sprintf("severity(%d)", int(s))
	}
	return severityNames[s]
}

// MarshalText encodes the severity as its name.
func (s Severity) MarshalText() ([]byte, error) {
	if s < Info || s > Critical {
		return nil, fmt.Errorf("audit: invalid severity %d", int(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText decodes a severity name.
func (s *Severity) UnmarshalText(b []byte) error {
	for i, n := range severityNames {
		if strings.EqualFold(n, string(b)) {
			*s = Severity(i)
			return nil
		}
	}
	return fmt.Errorf("audit: unknown severity %q", b)
}

// Finding is one weakness found, with the proof and the remedy.
type Finding struct {
	// ID names the check and variant, e.g. "relay.percent-hack"; stable
	// across versions so CI can allow-list or grep for it.
	ID string `json:"id"`
	// Title is one line for a person.
	Title string `json:"title"`
	// Severity ranks the finding.
	Severity Severity `json:"severity"`
	// Port is the "PORT/ROLE" the finding was made on; empty for findings
	// about the host or domain (DNS).
	Port string `json:"port,omitempty"`
	// Evidence is the exact dialogue: "C: " lines the audit sent, "S: "
	// lines the server answered, "-- " lines for events (TLS, connection
	// closed) and "DNS: " lines for DNS answers. Control characters are
	// escaped as \xNN.
	Evidence []string `json:"evidence"`
	// Fix says what to change on the server.
	Fix string `json:"fix"`
}

// Report is the outcome of Run.
type Report struct {
	// Target is the audited HOST:PORT as given (port defaulted).
	Target string `json:"target"`
	// Address is the IP:port connected to (the IP alone when several
	// ports were probed).
	Address string `json:"address"`
	// Domain is the server's local mail domain.
	Domain string `json:"domain"`
	// Started is when the audit began.
	Started time.Time `json:"started"`
	// Duration is how long it took.
	Duration time.Duration `json:"duration_ns"`
	// Findings are sorted by severity (highest first), then port, then ID.
	Findings []Finding `json:"findings"`
	// Ports summarise every port probed, open or not, in probing order.
	Ports []*PortReport `json:"ports"`
	// Notes are checks that could not run or were inconclusive (a
	// temporary reply, a DNS timeout); they are not findings.
	Notes []string `json:"notes"`
}

// HasHigh reports whether a finding of severity High or above exists.
func (r *Report) HasHigh() bool {
	for _, f := range r.Findings {
		if f.Severity >= High {
			return true
		}
	}
	return false
}

// FindAt returns the finding with the given ID made on port ("PORT/ROLE"),
// or nil.
func (r *Report) FindAt(id, port string) *Finding {
	for i := range r.Findings {
		if r.Findings[i].ID == id && r.Findings[i].Port == port {
			return &r.Findings[i]
		}
	}
	return nil
}

// Find returns the first finding with the given ID, on any port, or nil.
func (r *Report) Find(id string) *Finding {
	for i := range r.Findings {
		if r.Findings[i].ID == id {
			return &r.Findings[i]
		}
	}
	return nil
}

// Count returns how many findings have severity s.
func (r *Report) Count(s Severity) int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity == s {
			n++
		}
	}
	return n
}

func (r *Report) sort() {
	slices.SortStableFunc(r.Findings, func(a, b Finding) int {
		if c := cmp.Compare(b.Severity, a.Severity); c != 0 {
			return c
		}
		if c := strings.Compare(a.Port, b.Port); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// WriteJSON writes the report as one indented JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("audit: writing JSON report: %w", err)
	}
	return nil
}

// WriteText writes the report for a person: a summary line, then every
// finding with its evidence and fix, then the notes.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "kanmon audit of %s (%s), domain %s, %s, took %s\n",
		r.Target, r.Address, r.Domain, r.Started.UTC().Format(time.RFC3339), r.Duration.Round(time.Millisecond))
	var counts []string
	for s := Critical; s >= Info; s-- {
		if n := r.Count(s); n > 0 {
			counts = append(counts, fmt.Sprintf("%d %s", n, s))
		}
	}
	if len(counts) == 0 {
		b.WriteString("no findings\n")
	} else {
		fmt.Fprintf(&b, "%d findings: %s\n", len(r.Findings), strings.Join(counts, ", "))
	}
	writePorts(&b, r.Ports)
	for _, f := range r.Findings {
		port := ""
		if f.Port != "" {
			port = " on " + f.Port
		}
		fmt.Fprintf(&b, "\n[%s] %s%s: %s\n", strings.ToUpper(f.Severity.String()), f.ID, port, f.Title)
		if len(f.Evidence) > 0 {
			b.WriteString("  evidence:\n")
			for _, e := range f.Evidence {
				fmt.Fprintf(&b, "    %s\n", e)
			}
		}
		if f.Fix != "" {
			fmt.Fprintf(&b, "  fix: %s\n", f.Fix)
		}
	}
	if len(r.Notes) > 0 {
		b.WriteString("\nnotes:\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "  - %s\n", n)
		}
	}
	if r.HasHigh() {
		b.WriteString("\nresult: FAIL (findings of severity high or above)\n")
	} else {
		b.WriteString("\nresult: PASS (no findings of severity high or above)\n")
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("audit: writing report: %w", err)
	}
	return nil
}

// writePorts writes one summary line per port probed.
func writePorts(b *strings.Builder, ports []*PortReport) {
	if len(ports) == 0 {
		return
	}
	b.WriteString("\nports:\n")
	for _, p := range ports {
		fmt.Fprintf(b, "  %d/%s: ", p.Port, p.Role)
		if !p.Open {
			b.WriteString("not audited (closed or no greeting)\n")
			continue
		}
		fmt.Fprintf(b, "greeting %q; TLS %s", p.Greeting, p.TLS)
		if len(p.TLSVersions) > 0 {
			fmt.Fprintf(b, " (%s)", strings.Join(p.TLSVersions, ", "))
		}
		if len(p.AuthBeforeTLS) > 0 {
			fmt.Fprintf(b, "; before TLS: %s", strings.Join(p.AuthBeforeTLS, " "))
		}
		if p.LoginBeforeTLS {
			b.WriteString("; LOGIN POSSIBLE BEFORE TLS")
		}
		if p.MailWithoutAuth != "" {
			fmt.Fprintf(b, "; mail without AUTH: %s", p.MailWithoutAuth)
		}
		b.WriteString("\n")
		if p.Certificate != "" {
			fmt.Fprintf(b, "      certificate: %s\n", p.Certificate)
		}
	}
}
