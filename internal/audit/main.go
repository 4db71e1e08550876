package audit

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"kanmon/internal/cliflag"
	"kanmon/internal/dnsresolve"
)

// Exit statuses of Main.
const (
	ExitClean = 0 // no finding of severity high or above
	ExitHigh  = 1 // at least one high or critical finding
	ExitError = 2 // usage error, or the audit could not run
)

// usage is printed for -h and usage errors.
const usage = `usage: kanmon audit HOST[:PORT] --domain DOMAIN [options]

Connects to HOST as an outside client and reports open relay tricks,
account disclosure (VRFY, EXPN, accept-then-bounce), plaintext logins and
AUTH, missing or weak TLS, banner disclosure, early-talker tolerance, the
DNS hygiene of DOMAIN and the server's own DNS identity (reverse DNS,
MTA-STS, TLS-RPT, DKIM key). Without PORT or --ports it probes 25/smtp,
587/submission, 465/smtps, 110/pop3, 995/pop3s, 143/imap and 993/imaps.
Exit status: 0 no high findings, 1 high or critical findings, 2 usage or
connection error.

Run it from a host the server does not trust (outside its own networks).

options:
`

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// Main runs "kanmon audit" with args (the arguments after the program
// name; a leading "audit" is skipped) and returns the exit status. Flags
// may come before or after HOST.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "audit" {
		args = args[1:]
	}
	fs := flag.NewFlagSet("kanmon audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	var (
		opts      Options
		jsonOut   bool
		dnsServer string
		dnsbls    stringList
		noDNS     bool
		insecure  bool
		timeout   time.Duration
		total     time.Duration
		ports     string
		htmlFile  string
	)
	fs.StringVar(&opts.Domain, "domain", "", "the server's local mail `domain` (required)")
	fs.BoolVar(&jsonOut, "json", false, "write the report as JSON")
	fs.StringVar(&htmlFile, "html", "", "also write the report as one self-contained HTML page to `FILE`")
	fs.StringVar(&ports, "ports", "", "audit these `PORT/ROLE` items, comma-separated (roles smtp, submission, smtps, pop3, pop3s, imap, imaps; a bare standard PORT takes its role)")
	fs.StringVar(&opts.KnownUser, "known-user", DefaultKnownUser, "a local `user` that exists, compared with a made-up one")
	fs.StringVar(&opts.ConfirmTo, "confirm-to", "", "send one real test message per accepted relay variant to this `address` (one you read)")
	fs.StringVar(&opts.HeloName, "helo", DefaultHeloName, "`name` to give in EHLO")
	fs.StringVar(&opts.From, "from", DefaultFrom, "outside sender `address` for MAIL FROM")
	fs.StringVar(&opts.ForeignDomain, "foreign-domain", DefaultForeignDomain, "foreign `domain` of the relay tests' recipient (no mail is sent to it)")
	fs.StringVar(&dnsServer, "dns-server", "", "send every DNS question to this `host:port` instead of the system resolver")
	fs.Var(&dnsbls, "dnsbl", "DNSBL `zone` to look the server's address up in (repeatable, or comma-separated)")
	fs.BoolVar(&noDNS, "no-dns", false, "skip the DNS checks (MX, SPF, DMARC, DNSBL, reverse DNS, MTA-STS, TLS-RPT, DKIM)")
	fs.StringVar(&opts.DKIMSelector, "dkim-selector", "", "check the DKIM key record of this `selector` (SELECTOR._domainkey.DOMAIN)")
	fs.StringVar(&opts.TLSServerName, "tls-name", "", "`name` the certificate must match (default HOST)")
	fs.BoolVar(&insecure, "insecure-tls-ok", false, "do not report a certificate from an untrusted CA (self-signed)")
	fs.DurationVar(&timeout, "timeout", DefaultTimeout, "limit for each network operation")
	fs.DurationVar(&total, "max-time", 10*time.Minute, "limit for the whole audit")

	positional, err := cliflag.Parse(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitClean
		}
		return ExitError
	}
	if len(positional) != 1 {
		fmt.Fprintln(stderr, "kanmon audit: exactly one HOST[:PORT] is needed")
		fs.Usage()
		return ExitError
	}
	if opts.Domain == "" {
		fmt.Fprintln(stderr, "kanmon audit: --domain is required")
		fs.Usage()
		return ExitError
	}
	opts.Target = positional[0]
	if ports != "" {
		if opts.Ports, err = ParsePorts(ports); err != nil {
			fmt.Fprintf(stderr, "kanmon %v\n", err)
			return ExitError
		}
	}
	opts.Timeout = timeout
	opts.DNSBLs = dnsbls
	opts.SkipDNS = noDNS
	opts.InsecureTLSOK = insecure
	opts.Resolver = dnsresolve.New(dnsServer)

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	ctx, cancelTotal := context.WithTimeout(ctx, total)
	defer cancelTotal()

	rep, err := Run(ctx, opts)
	if rep == nil {
		fmt.Fprintf(stderr, "kanmon audit: %v\n", err)
		return ExitError
	}
	if err2 := writeReport(rep, stdout, jsonOut, htmlFile); err2 != nil {
		fmt.Fprintf(stderr, "kanmon audit: %v\n", err2)
		return ExitError
	}
	if err != nil {
		fmt.Fprintf(stderr, "kanmon audit: %v (the report is partial)\n", err)
		if !rep.HasHigh() {
			return ExitError
		}
	}
	if rep.HasHigh() {
		return ExitHigh
	}
	return ExitClean
}

// writeReport writes rep to stdout (text, or JSON with jsonOut) and, when
// htmlFile is set, as an HTML page to that file.
func writeReport(rep *Report, stdout io.Writer, jsonOut bool, htmlFile string) error {
	if htmlFile != "" {
		var b bytes.Buffer
		if err := rep.WriteHTML(&b); err != nil {
			return err
		}
		if err := os.WriteFile(htmlFile, b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("audit: writing HTML report %s: %w", htmlFile, err)
		}
	}
	if jsonOut {
		return rep.WriteJSON(stdout)
	}
	return rep.WriteText(stdout)
}
