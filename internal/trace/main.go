package trace

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"kanmon/internal/cliflag"
)

// Exit statuses of Main.
const (
	ExitOK       = 0 // story or chain printed
	ExitNotFound = 1 // no log line mentions the id
	ExitError    = 2 // usage or input error
)

const usage = `usage:
  kanmon trace ID [--log FILE]
      the story of a connection id, queue id or Message-ID from kanmon's JSON
      log (FILE, or standard input when FILE is "-" or not given)
  kanmon trace --received FILE [--ours HOST,...]
      walk the Received: chain of a message (FILE, or "-" for standard
      input): marks the hops our servers added, the likely true origin and
      inconsistencies that suggest forged headers. HOST entries are our
      server names (a domain covers its subdomains), addresses or prefixes.

options:
`

// Main runs "kanmon trace" with args (the arguments after the program
// name; a leading "trace" is skipped) and returns the exit status.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "trace" {
		args = args[1:]
	}
	fs := flag.NewFlagSet("kanmon trace", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	var (
		logFile  string
		received string
		ours     string
	)
	fs.StringVar(&logFile, "log", "-", "kanmon's JSON log `file` (\"-\" for standard input)")
	fs.StringVar(&received, "received", "", "walk the Received: chain of the message in `file` (\"-\" for standard input)")
	fs.StringVar(&ours, "ours", "", "comma-separated `hosts` that are our servers (names, addresses, prefixes)")

	positional, err := cliflag.Parse(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitError
	}

	open := func(name string) (io.Reader, func(), error) {
		if name == "-" || name == "" {
			return stdin, func() {}, nil
		}
		f, err := os.Open(name)
		if err != nil {
			return nil, nil, err
		}
		return f, func() { f.Close() }, nil
	}

	if received != "" {
		if len(positional) != 0 {
			fmt.Fprintln(stderr, "kanmon trace: --received takes no ID")
			fs.Usage()
			return ExitError
		}
		r, done, err := open(received)
		if err != nil {
			fmt.Fprintf(stderr, "kanmon trace: %v\n", err)
			return ExitError
		}
		defer done()
		var hosts []string
		for _, h := range strings.Split(ours, ",") {
			if h = strings.TrimSpace(h); h != "" {
				hosts = append(hosts, h)
			}
		}
		if len(hosts) == 0 {
			fmt.Fprintln(stderr, "kanmon trace: no --ours given: no hop can be recognised as ours")
		}
		chain, err := Received(r, Ours(hosts...))
		if err != nil {
			fmt.Fprintf(stderr, "kanmon trace: %v\n", err)
			return ExitError
		}
		if err := chain.WriteText(stdout); err != nil {
			fmt.Fprintf(stderr, "kanmon trace: %v\n", err)
			return ExitError
		}
		return ExitOK
	}

	if len(positional) != 1 {
		fmt.Fprintln(stderr, "kanmon trace: exactly one ID (or --received FILE) is needed")
		fs.Usage()
		return ExitError
	}
	r, done, err := open(logFile)
	if err != nil {
		fmt.Fprintf(stderr, "kanmon trace: %v\n", err)
		return ExitError
	}
	defer done()
	st, err := Story(r, positional[0])
	if errors.Is(err, ErrNotFound) {
		fmt.Fprintf(stderr, "kanmon trace: %v\n", err)
		return ExitNotFound
	}
	if err != nil {
		fmt.Fprintf(stderr, "kanmon trace: %v\n", err)
		return ExitError
	}
	if err := st.WriteText(stdout); err != nil {
		fmt.Fprintf(stderr, "kanmon trace: %v\n", err)
		return ExitError
	}
	return ExitOK
}
