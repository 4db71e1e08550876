package forgery

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"kanmon/internal/cliflag"
)

// Exit statuses of Main.
const (
	ExitOK    = 0 // report written (with or without evidence)
	ExitError = 2 // usage or input error
)

const usage = `usage:
  kanmon report forgery [--since 24h] [--json|--csv] [--log FILE ...] [--config FILE]
                        [--domain D ...] [--top N] [--samples N]
      summarise the evidence in kanmon's JSON log that others forge our
      domains: bounces refused for want of a BATV tag, mail from outside
      claiming our domains, DMARC failures for our domains; per client
      address, per network (/24, /64) and per hour, with sample lines.
      Without --log, the log_file of --config; "-" reads standard input.

options:
`

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// Input is what the command line adds from the config file: its log file
// and its local domains (the cli package reads the config).
type Input struct {
	LogFile string
	Domains []string
}

// Main runs "kanmon report forgery" with args (after "forgery") and
// returns the exit status; in gives what --config named (nil without).
func Main(args []string, in *Input, stdin io.Reader, stdout, stderr io.Writer, now time.Time) int {
	fs := flag.NewFlagSet("kanmon report forgery", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	var logs, domains listFlag
	since := fs.Duration("since", 24*time.Hour, "count the lines of this last `period` (0: the whole log)")
	asJSON := fs.Bool("json", false, "write the report as JSON")
	asCSV := fs.Bool("csv", false, "write one CSV row per hour, client address and kind")
	top := fs.Int("top", 20, "list at most `N` client addresses and networks")
	samples := fs.Int("samples", 3, "keep `N` sample lines per kind")
	fs.Var(&logs, "log", "kanmon's JSON log `file` (repeatable, older first; \"-\" for standard input)")
	fs.Var(&domains, "domain", "a local `domain` (repeatable; besides the config's domains) for the DMARC count")
	fs.String("config", "", "kanmon.toml `file`: its log_file and domains")
	pos, err := cliflag.Parse(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitError
	}
	if len(pos) != 0 || *asJSON && *asCSV || *since < 0 {
		fmt.Fprintln(stderr, "kanmon report forgery: no arguments besides the options; --json or --csv, not both; --since not negative")
		fs.Usage()
		return ExitError
	}
	local := map[string]bool{}
	if in != nil {
		if len(logs) == 0 && in.LogFile != "" {
			logs = append(logs, in.LogFile)
		}
		for _, d := range in.Domains {
			local[strings.ToLower(d)] = true
		}
	}
	for _, d := range domains {
		local[strings.ToLower(strings.TrimSuffix(d, "."))] = true
	}
	if len(logs) == 0 {
		fmt.Fprintln(stderr, "kanmon report forgery: no log: pass --log FILE (or --config FILE with log_file set)")
		return ExitError
	}
	if len(local) == 0 {
		fmt.Fprintln(stderr, "kanmon report forgery: no local domains (--config or --domain): DMARC failures are not counted")
	}
	var readers []io.Reader
	for _, name := range logs {
		if name == "-" {
			readers = append(readers, stdin)
			continue
		}
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintf(stderr, "kanmon report forgery: %v\n", err)
			return ExitError
		}
		defer f.Close()
		readers = append(readers, f)
	}
	opt := Options{Local: func(d string) bool { return local[d] }, Top: *top, Samples: *samples}
	if *since > 0 {
		opt.Since = now.Add(-*since)
	}
	rep, err := Build(readers, opt)
	if err == nil {
		switch {
		case *asJSON:
			err = rep.WriteJSON(stdout)
		case *asCSV:
			err = rep.WriteCSV(stdout)
		default:
			err = rep.WriteText(stdout)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "kanmon report forgery: %v\n", err)
		return ExitError
	}
	return ExitOK
}
