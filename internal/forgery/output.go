package forgery

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"
)

// kindText says what each kind counts, for the table.
var kindText = map[string]string{
	KindBounce:      "bounces refused: no valid BATV tag, or more than one recipient (rcpt.batv, rcpt.bounce_recipients)",
	KindLocalSender: "mail from outside claiming one of our domains as sender (sender.forged_local)",
	KindDMARC:       "DMARC failures for our domains (data.dmarc)",
}

// WriteJSON writes the report as one JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("forgery: writing JSON: %w", err)
	}
	return nil
}

// WriteCSV writes one row per hour, client address and kind: hour,
// source, network, kind, count (a table spreadsheets can pivot).
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"hour", "source", "network", "kind", "count"})
	facts := make([]fact, 0, len(r.facts))
	for f := range r.facts {
		facts = append(facts, f)
	}
	sort.Slice(facts, func(i, j int) bool {
		a, b := facts[i], facts[j]
		if !a.hour.Equal(b.hour) {
			return a.hour.Before(b.hour)
		}
		if a.source != b.source {
			return a.source < b.source
		}
		return a.kind < b.kind
	})
	for _, f := range facts {
		cw.Write([]string{f.hour.Format(time.RFC3339), f.source, f.netwk, f.kind, strconv.Itoa(r.facts[f])})
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("forgery: writing CSV: %w", err)
	}
	return nil
}

// WriteText writes the report as tables for a terminal.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	period := "the whole log"
	if !r.Since.IsZero() {
		period = "since " + r.Since.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(tw, "Forgery of our domains, %s (%d log lines read, %d skipped)\n\n", period, r.Lines, r.Skipped)
	fmt.Fprintln(tw, "kind\tcount\twhat")
	for _, k := range Kinds {
		fmt.Fprintf(tw, "%s\t%d\t%s\n", k, r.Totals[k], kindText[k])
	}
	if r.Totals.Total() == 0 {
		fmt.Fprintln(tw, "\nNo evidence of forgery in this period.")
		return flush(tw)
	}
	table := func(title string, list []Source) {
		fmt.Fprintf(tw, "\n%s\n", title)
		fmt.Fprintln(tw, "source\tbounce\tlocal_sender\tdmarc\ttotal\tfirst\tlast")
		for _, s := range list {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\n", cleanText(s.Source), s.Counts[KindBounce], s.Counts[KindLocalSender],
				s.Counts[KindDMARC], s.Total, s.First.UTC().Format("01-02 15:04:05"), s.Last.UTC().Format("01-02 15:04:05"))
		}
	}
	table("By client address", r.Sources)
	table("By network (/24, /64)", r.Networks)
	if r.Truncated {
		fmt.Fprintln(tw, "(only the busiest are listed; --json or --csv have them all per hour)")
	}
	fmt.Fprintln(tw, "\nBy hour (UTC)")
	fmt.Fprintln(tw, "hour\tbounce\tlocal_sender\tdmarc")
	for _, h := range r.Hours {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", h.Hour.UTC().Format("2006-01-02 15:00"), h.Counts[KindBounce], h.Counts[KindLocalSender], h.Counts[KindDMARC])
	}
	if err := flush(tw); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nSample lines")
	for _, s := range r.Samples {
		fmt.Fprintf(w, "[%s] %s\n", s.Kind, cleanText(s.Line))
	}
	return nil
}

func flush(tw *tabwriter.Writer) error {
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("forgery: writing the report: %w", err)
	}
	return nil
}
