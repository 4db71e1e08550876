package forgery

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	"kanmon/internal/trace"
)

// Options shape a report.
type Options struct {
	// Since and Until bound the lines counted by their time; zero is open.
	Since, Until time.Time
	// Local reports whether a domain is ours (DMARC lines count only then).
	Local func(domain string) bool
	// Samples is how many lines are kept per kind (default 3).
	Samples int
	// Top bounds the sources and networks listed (default 20; the totals
	// count them all).
	Top int
}

// Counts is a number per kind.
type Counts map[string]int

// Total is the sum over the kinds.
func (c Counts) Total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

// Source is the evidence from one client address or network.
type Source struct {
	Source string    `json:"source"` // an address, a network, or "local"/"unknown"
	Counts Counts    `json:"counts"`
	Total  int       `json:"total"`
	First  time.Time `json:"first"`
	Last   time.Time `json:"last"`
}

// Hour is the evidence of one hour (UTC).
type Hour struct {
	Hour   time.Time `json:"hour"`
	Counts Counts    `json:"counts"`
}

// Sample is one log line kept as an example.
type Sample struct {
	Kind string `json:"kind"`
	Line string `json:"line"`
}

// Report is the summary of the forgery evidence in kanmon's logs.
type Report struct {
	Since     time.Time `json:"since,omitzero"`
	Until     time.Time `json:"until,omitzero"`
	Lines     int       `json:"lines"`   // JSON log lines read
	Skipped   int       `json:"skipped"` // lines that were not JSON objects
	Totals    Counts    `json:"totals"`
	Sources   []Source  `json:"sources"`  // per client address, most first
	Networks  []Source  `json:"networks"` // per /24 (IPv4) or /64 (IPv6)
	Hours     []Hour    `json:"hours"`    // in time order
	Samples   []Sample  `json:"samples"`
	Truncated bool      `json:"truncated"` // more sources or networks than listed
	// facts is every counted line, for the CSV form.
	facts map[fact]int
}

// fact is one row of the CSV form.
type fact struct {
	hour          time.Time
	source, netwk string
	kind          string
}

// connMemory bounds the connection ids remembered with their address.
const connMemory = 200000

// builder accumulates one report.
type builder struct {
	opt      Options
	rep      *Report
	connIP   map[string]string
	connFIFO []string
	sources  map[string]*Source
	networks map[string]*Source
	hours    map[time.Time]Counts
	samples  map[string]int
}

// Build reads kanmon's JSON logs in order (older files first) and
// summarises the forgery evidence in them.
func Build(logs []io.Reader, opt Options) (*Report, error) {
	if opt.Samples <= 0 {
		opt.Samples = 3
	}
	if opt.Top <= 0 {
		opt.Top = 20
	}
	b := &builder{
		opt: opt, rep: &Report{Since: opt.Since, Until: opt.Until, Totals: Counts{}, facts: map[fact]int{}},
		connIP: map[string]string{}, sources: map[string]*Source{}, networks: map[string]*Source{},
		hours: map[time.Time]Counts{}, samples: map[string]int{},
	}
	for _, k := range Kinds {
		b.rep.Totals[k] = 0
	}
	for i, r := range logs {
		lines, skipped, err := trace.ScanLogFiltered(r, wanted, b.line)
		b.rep.Lines += lines
		b.rep.Skipped += skipped
		if err != nil {
			return nil, fmt.Errorf("forgery: log %d: %w", i+1, err)
		}
	}
	b.finish()
	return b.rep, nil
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

// wanted picks, by their text, the lines worth decoding: connect lines
// and the lines naming one of the rules (a decoded line is checked again).
func wanted(raw []byte) bool {
	if bytes.Contains(raw, []byte(`"connect"`)) {
		return true
	}
	for _, r := range ruleNames {
		if bytes.Contains(raw, r) {
			return true
		}
	}
	return false
}

// ruleNames are the forgery rules as they appear in a JSON line.
var ruleNames = func() [][]byte {
	var out [][]byte
	for r := range ruleKinds {
		out = append(out, []byte(`"`+r+`"`))
	}
	return out
}()

// line takes one log line: a connect line teaches a connection's address,
// a decision line of a forgery rule is counted.
func (b *builder) line(m map[string]any, raw []byte) {
	conn := str(m, "conn")
	if str(m, "msg") == "connect" && conn != "" {
		b.remember(conn, hostOf(str(m, "remote")))
		return
	}
	if str(m, "msg") != "decision" {
		return
	}
	kind := KindOf(str(m, "rule"), func(k string) string { return str(m, k) }, b.opt.Local)
	if kind == "" {
		return
	}
	t, err := time.Parse(time.RFC3339Nano, str(m, "time"))
	if err != nil || !b.opt.Since.IsZero() && t.Before(b.opt.Since) || !b.opt.Until.IsZero() && !t.Before(b.opt.Until) {
		return
	}
	ip := ""
	for _, k := range []string{"client_ip", "ip", "client", "remote"} {
		if ip = hostOf(str(m, k)); ip != "" {
			break
		}
	}
	if ip == "" {
		ip = b.connIP[conn]
	}
	if ip == "" {
		ip = "unknown"
	}
	network := networkOf(ip)
	b.rep.Totals[kind]++
	count(b.sources, ip, kind, t)
	count(b.networks, network, kind, t)
	h := t.UTC().Truncate(time.Hour)
	if b.hours[h] == nil {
		b.hours[h] = Counts{}
	}
	b.hours[h][kind]++
	b.rep.facts[fact{h, ip, network, kind}]++
	if b.samples[kind] < b.opt.Samples {
		b.samples[kind]++
		b.rep.Samples = append(b.rep.Samples, Sample{Kind: kind, Line: string(raw)})
	}
}

// remember records a connection's address, forgetting the oldest beyond
// connMemory (a decision follows its connect line closely).
func (b *builder) remember(conn, ip string) {
	if ip == "" {
		return
	}
	if _, ok := b.connIP[conn]; !ok {
		b.connFIFO = append(b.connFIFO, conn)
		if len(b.connFIFO) > connMemory {
			delete(b.connIP, b.connFIFO[0])
			b.connFIFO = b.connFIFO[1:]
		}
	}
	b.connIP[conn] = ip
}

func count(m map[string]*Source, key, kind string, t time.Time) {
	s := m[key]
	if s == nil {
		s = &Source{Source: key, Counts: Counts{}, First: t}
		m[key] = s
	}
	s.Counts[kind]++
	s.Total++
	if t.Before(s.First) {
		s.First = t
	}
	if t.After(s.Last) {
		s.Last = t
	}
}

// hostOf returns the address of "ip:port", "[v6]:port" or a bare address,
// or "" when s holds none ("local" for the sendmail socket stays).
func hostOf(s string) string {
	if s == "" {
		return ""
	}
	if s == "local" {
		return s
	}
	if h, _, err := net.SplitHostPort(s); err == nil {
		s = h
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().String()
	}
	return ""
}

// networkOf is the /24 of an IPv4 address, the /64 of an IPv6 one: the
// unit one sender usually holds.
func networkOf(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	bits := 64
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p.String()
}

// finish sorts what was gathered into the report.
func (b *builder) finish() {
	top := func(m map[string]*Source) []Source {
		out := make([]Source, 0, len(m))
		for _, s := range m {
			out = append(out, *s)
		}
		sort.Slice(out, func(i, j int) bool {
			if out[i].Total != out[j].Total {
				return out[i].Total > out[j].Total
			}
			return out[i].Source < out[j].Source
		})
		if len(out) > b.opt.Top {
			out = out[:b.opt.Top]
			b.rep.Truncated = true
		}
		return out
	}
	b.rep.Sources = top(b.sources)
	b.rep.Networks = top(b.networks)
	for h, c := range b.hours {
		b.rep.Hours = append(b.rep.Hours, Hour{Hour: h, Counts: c})
	}
	sort.Slice(b.rep.Hours, func(i, j int) bool { return b.rep.Hours[i].Hour.Before(b.rep.Hours[j].Hour) })
	for i := range b.rep.Sources {
		b.rep.Sources[i].Counts = full(b.rep.Sources[i].Counts)
	}
	for i := range b.rep.Networks {
		b.rep.Networks[i].Counts = full(b.rep.Networks[i].Counts)
	}
	for i := range b.rep.Hours {
		b.rep.Hours[i].Counts = full(b.rep.Hours[i].Counts)
	}
}

// full gives every kind a count, zero included, so JSON readers find all.
func full(c Counts) Counts {
	for _, k := range Kinds {
		c[k] += 0
	}
	return c
}

// cleanText strips control characters from log text for the table.
func cleanText(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return -1
		}
		return r
	}, s)
}
