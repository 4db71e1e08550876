package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"kanmon/internal/config"
	"kanmon/internal/dkim"
	"kanmon/internal/dnsrecords"
	"kanmon/internal/dnsresolve"
)

// cmdDKIM runs `kanmon dkim keygen|activate|list`.
func cmdDKIM(args []string, env Env) error {
	if len(args) == 0 {
		return usageError{"dkim keygen|activate|list"}
	}
	sub := args[0]
	fs := flag.NewFlagSet("dkim", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "config file")
	selector := fs.String("selector", "", "keygen: the new key's selector (default: ALGO and year-month)")
	algo := fs.String("algo", "", "keygen: ed25519 or rsa (default: both)")
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	st := dkim.NewStore(cfg.DKIMDir())
	switch {
	case sub == "keygen" && len(pos) == 1:
		return dkimKeygen(st, strings.ToLower(pos[0]), *selector, *algo, env)
	case sub == "activate" && len(pos) == 2:
		keys, err := st.Activate(strings.ToLower(pos[0]), pos[1])
		for _, k := range keys {
			fmt.Fprintf(env.Stdout, "%s: %s key %s now signs (the key it replaces is kept as .retired)\n", k.Domain, k.Algo, k.Selector)
		}
		return err
	case sub == "list" && len(pos) == 1:
		keys, err := st.Keys(strings.ToLower(pos[0]))
		for _, k := range keys {
			fmt.Fprintf(env.Stdout, "%s\t%s\t%s\t%s\n", k.Selector, k.Algo, k.State, k.Path)
		}
		return err
	}
	return usageError{"dkim keygen DOMAIN [--selector S] [--algo ed25519|rsa] | dkim activate DOMAIN SELECTOR | dkim list DOMAIN (each with --config FILE)"}
}

func dkimKeygen(st *dkim.Store, domain, selector, algo string, env Env) error {
	algos := []string{dkim.Ed25519, dkim.RSA}
	switch algo {
	case "":
		if selector != "" {
			// One selector is one DNS record, so one key.
			return usageError{"--selector names one key: give --algo ed25519 or --algo rsa with it"}
		}
	case dkim.Ed25519, dkim.RSA:
		algos = []string{algo}
	default:
		return usageError{fmt.Sprintf("--algo %q: ed25519 or rsa", algo)}
	}
	for _, a := range algos {
		sel := selector
		if sel == "" {
			sel = dkim.DefaultSelector(a, time.Now())
		}
		k, err := st.Generate(domain, sel, a)
		if err != nil {
			return err
		}
		rec, err := k.Record()
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "%s: new %s key %s (%s), %s\n", domain, a, sel, k.Path, k.State)
		if k.State == dkim.StatePending {
			fmt.Fprintf(env.Stdout, "  publish it, then: kanmon dkim activate %s %s\n", domain, sel)
		}
		fmt.Fprintf(env.Stdout, "%s\n", dnsrecords.Record{Name: k.Name(), Type: "TXT", Value: rec}.ZoneLine())
	}
	return nil
}

// cmdDNSRecords runs `kanmon dns-records DOMAIN --config FILE [--check]`.
func cmdDNSRecords(args []string, env Env) error {
	fs := flag.NewFlagSet("dns-records", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "config file")
	check := fs.Bool("check", false, "look the live records up and compare")
	reportTo := fs.String("report-to", "", "address for DMARC and TLS-RPT reports (default postmaster@DOMAIN)")
	mode := fs.String("mta-sts-mode", "testing", "MTA-STS policy mode: testing or enforce (enforce needs a certificate other servers trust)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"dns-records DOMAIN --config FILE [--check] [--report-to ADDR] [--mta-sts-mode testing|enforce]"}
	}
	if *mode != "testing" && *mode != "enforce" {
		return usageError{fmt.Sprintf("--mta-sts-mode %q: testing or enforce", *mode)}
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	domain := strings.ToLower(pos[0])
	if !isLocalDomain(cfg, domain) {
		return fmt.Errorf("%s is not in domains of %s", domain, cfg.Path)
	}
	keys, err := dkim.NewStore(cfg.DKIMDir()).Keys(domain)
	if err != nil {
		return err
	}
	recs, err := dnsrecords.Expected(domain, keys, dnsrecords.Options{Hostname: cfg.Hostname, ReportTo: *reportTo, MTASTSMode: *mode})
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		fmt.Fprintf(env.Stderr, "kanmon dns-records: %s has no DKIM key yet: kanmon dkim keygen %s --config %s\n", domain, domain, cfg.Path)
	}
	if !*check {
		fmt.Fprint(env.Stdout, dnsrecords.Zone(recs))
		return nil
	}
	r := dnsresolve.WithTimeout(dnsresolve.New(cfg.DNS.Server), cfg.DNS.Timeout.Duration)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(len(recs)+1)*cfg.DNS.Timeout.Duration)
	defer cancel()
	sts := dnsrecords.Check(ctx, r, recs)
	fmt.Fprint(env.Stdout, dnsrecords.Report(sts))
	bad := 0
	for _, s := range sts {
		if s.Result != dnsrecords.Present {
			bad++
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d records are not as expected", bad, len(sts))
	}
	return nil
}

func isLocalDomain(cfg *config.Config, d string) bool {
	for _, l := range cfg.Domains {
		if strings.EqualFold(l, d) {
			return true
		}
	}
	return false
}

// initDKIMKeys makes the first keys of each domain kanmon init configures.
func initDKIMKeys(cfg *config.Config, env Env) error {
	if !cfg.DKIM.Sign {
		return nil
	}
	st := dkim.NewStore(cfg.DKIMDir())
	for _, d := range cfg.Domains {
		if !dkim.ValidDomain(d) || !strings.Contains(d, ".") {
			continue
		}
		made, err := st.Ensure(d, cfg.DKIM.NewKeyAlgorithms(), time.Now())
		if err != nil {
			return err
		}
		for _, k := range made {
			fmt.Fprintf(env.Stdout, "DKIM %s key for %s: selector %s\n", k.Algo, d, k.Selector)
		}
	}
	return nil
}
