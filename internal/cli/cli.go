// Package cli implements kanmon's command line: serve, init, user, alias,
// queue, check-config, dkim, dns-records, audit, trace and sendmail. cmd/kanmon only calls Main.
//
// SECURITY: passwords are read from stdin (--password-stdin) or generated
// and printed once; they never appear in arguments (visible to other
// users in ps) or in logs.
package cli

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/template"

	"kanmon/internal/admin"
	"kanmon/internal/auth"
	"kanmon/internal/cliflag"
	"kanmon/internal/config"
	"kanmon/internal/directory"
	"kanmon/internal/logging"
	"kanmon/internal/privdrop"
	"kanmon/internal/server"
	"kanmon/internal/tlsutil"
)

// Env is what a command may touch, so tests can run commands in-process.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

const usage = `kanmon: a mail server that cannot be turned against anyone

usage:
  kanmon serve [--config FILE]            run the server (no config: demo defaults)
  kanmon init --dir DIR --domain D --hostname H [--mx-addr A] [--submission-addr A]
              [--smtps-addr A] [--pop3-addr A] [--pop3s-addr A] [--admin-addr A]
              [--cert FILE --key FILE] [--user USER] [--data-dir DIR] [--force]
  kanmon checkpassword [--config FILE] REPLY-PROGRAM  (Dovecot passdb; credentials on fd 3)
  kanmon check-config --config FILE
  kanmon user add ADDRESS --config FILE [--password-stdin]
  kanmon user passwd ADDRESS --config FILE [--password-stdin]
  kanmon user del ADDRESS --config FILE
  kanmon user list --config FILE
  kanmon user suspend ADDRESS [REASON] --config FILE   (may log in, may not send)
  kanmon user unsuspend ADDRESS --config FILE
  kanmon alias add ALIAS TARGET --config FILE
  kanmon alias del ALIAS --config FILE
  kanmon alias list --config FILE
  kanmon queue list [--json] [filter] --config FILE     (filter: --sender S|'<>' --domain D
  kanmon queue show ID --config FILE                     --client IP --older DUR --lane normal|bounce)
  kanmon queue flush [ID] --config FILE
  kanmon queue hold|release|delete ID|--filter [filter] --config FILE
  kanmon dkim keygen DOMAIN [--selector S --algo ed25519|rsa] --config FILE
  kanmon dkim activate DOMAIN SELECTOR --config FILE
  kanmon dkim list DOMAIN --config FILE
  kanmon batv rotate|list --config FILE
  kanmon dns-records DOMAIN --config FILE [--check] [--report-to ADDR] [--mta-sts-mode testing|enforce]
  kanmon audit HOST[:PORT] --domain D [--json] ...
  kanmon trace ID [--log FILE] | kanmon trace --received FILE
  kanmon report forgery [--since 24h] [--json|--csv] [--log FILE ...] [--config FILE]
  kanmon sendmail [-t] [-i] [-f ADDR] [-F NAME] [-C FILE] [RCPT...] < message
              (also as /usr/sbin/sendmail by symlink; needs [sendmail] enabled)
`

// Main runs the command line and returns the exit status.
func Main(args []string, env Env) int {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = cmdServe(args[1:], env)
	case "init":
		err = cmdInit(args[1:], env)
	case "check-config":
		err = cmdCheckConfig(args[1:], env)
	case "user":
		err = cmdUser(args[1:], env)
	case "alias":
		err = cmdAlias(args[1:], env)
	case "queue":
		err = cmdQueue(args[1:], env)
	case "audit":
		return runAudit(args[1:], env)
	case "trace":
		return runTrace(args[1:], env)
	case "report":
		return runReport(args[1:], env)
	case "sendmail":
		return cmdSendmail(args[1:], env)
	case "checkpassword":
		return cmdCheckpassword(args[1:], env)
	case "dkim":
		err = cmdDKIM(args[1:], env)
	case "dns-records":
		err = cmdDNSRecords(args[1:], env)
	case "batv":
		err = cmdBATV(args[1:], env)
	case "help", "-h", "--help":
		fmt.Fprint(env.Stdout, usage)
		return 0
	default:
		fmt.Fprintf(env.Stderr, "kanmon: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(env.Stderr, "kanmon %s: %s\n", args[0], err)
			return 2
		}
		fmt.Fprintf(env.Stderr, "kanmon %s: %s\n", args[0], err)
		return 1
	}
	return 0
}

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

// parse parses flags that may appear before or after positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	pos, err := cliflag.Parse(fs, args)
	if err != nil {
		return nil, usageError{err.Error()}
	}
	return pos, nil
}

func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return nil, usageError{"--config FILE is required"}
	}
	return config.Load(path)
}

func cmdCheckConfig(args []string, env Env) error {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "config file")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	for _, w := range cfg.WarningLines() {
		fmt.Fprintf(env.Stderr, "warning: %s\n", w)
	}
	fmt.Fprintf(env.Stdout, "%s: OK (hostname %s, domains %s, data_dir %s)\n", *cfgPath, cfg.Hostname,
		strings.Join(cfg.Domains, ","), cfg.DataDir)
	return nil
}

func newLogger(cfg *config.Config, env Env) (*slog.Logger, func(), error) {
	var w io.Writer = env.Stderr
	var f *os.File
	if cfg.LogFile != "" {
		var err error
		f, err = os.OpenFile(cfg.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return nil, nil, fmt.Errorf("log file: %w", err)
		}
		w = f
	}
	bw := logging.NewBufferedWriter(w)
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	return logging.New(bw, cfg.LogFormat, level), func() {
		bw.Close()
		if f != nil {
			f.Close()
		}
	}, nil
}

func cmdServe(args []string, env Env) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "config file (absent: built-in demo defaults)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	var cfg *config.Config
	demo := *cfgPath == ""
	if demo {
		cfg = config.Default()
		var asRoot *privdrop.User
		if os.Geteuid() == 0 {
			// Decided before the demo writes anything as root.
			u, err := demoAsRoot(cfg)
			if err != nil {
				return err
			}
			asRoot = &u
			fmt.Fprintf(env.Stdout, "kanmon demo: started as root: serving as %s, state in %s\n", demoUser, cfg.DataDir)
		}
		cfg.TLS.Cert = filepath.Join(cfg.DataDir, "cert.pem")
		cfg.TLS.Key = filepath.Join(cfg.DataDir, "key.pem")
		cfg.Domains = []string{"localhost"}
		// The demo asks nothing outside the machine: no DNS checks of
		// incoming mail, and no greet delay for the person trying it.
		cfg.Inbound.DNSChecksOff()
		if err := cfg.Finish(); err != nil {
			return err
		}
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return err
		}
		if _, err := tlsutil.WriteSelfSigned(cfg.TLS.Cert, cfg.TLS.Key, []string{cfg.Hostname, "127.0.0.1", "::1"}); err != nil {
			return err
		}
		if asRoot != nil {
			if err := handOver(cfg, *asRoot); err != nil {
				return err
			}
		}
	} else {
		var err error
		if cfg, err = config.Load(*cfgPath); err != nil {
			return err
		}
	}
	log, closeLog, err := newLogger(cfg, env)
	if err != nil {
		return err
	}
	defer closeLog()
	srv, err := server.Open(cfg, log)
	if err != nil {
		return err
	}
	if demo {
		if err := demoAccount(srv.Dir(), env); err != nil {
			return err
		}
	}
	return srv.Run(context.Background())
}

// demoAccount creates demo@localhost on the first demo run and prints its
// password once.
func demoAccount(dir *directory.DB, env Env) error {
	const demo = "demo@localhost"
	if _, ok := dir.PasswordHash(demo); ok {
		fmt.Fprintf(env.Stdout, "kanmon demo: account %s exists (password printed on first run; change it with kanmon user passwd)\n", demo)
		return nil
	}
	pw := randomPassword()
	h, err := auth.HashPassword(pw)
	if err != nil {
		return err
	}
	if err := dir.AddUser(context.Background(), demo, h); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "kanmon demo: created account %s with password %s (shown once)\n", demo, pw)
	fmt.Fprintf(env.Stdout, "kanmon demo: MX 127.0.0.1:2525, submission 127.0.0.1:2587 (STARTTLS), smtps 127.0.0.1:2465, pop3 127.0.0.1:2110, pop3s 127.0.0.1:2995, admin http://127.0.0.1:8025/metrics\n")
	return nil
}

func randomPassword() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func readPassword(env Env, fromStdin bool) (string, bool, error) {
	if !fromStdin {
		return randomPassword(), true, nil
	}
	line, err := bufio.NewReader(env.Stdin).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", false, fmt.Errorf("reading password from stdin: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if len(pw) < 8 {
		return "", false, errors.New("password must be at least 8 characters")
	}
	return pw, false, nil
}

func openDir(cfgPath string) (*config.Config, *directory.DB, error) {
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, nil, err
	}
	d, err := directory.Open(cfg.DBPath())
	return cfg, d, err
}

func cmdUser(args []string, env Env) error {
	if len(args) == 0 {
		return usageError{"user add|passwd|del|list|quota|suspend|unsuspend"}
	}
	sub := args[0]
	fs := flag.NewFlagSet("user", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "config file")
	pwStdin := fs.Bool("password-stdin", false, "read the password from stdin")
	quota := fs.String("quota", "", "user add: the account's own mailbox quota (e.g. 500MiB, 0 = none)")
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	cfg, d, err := openDir(*cfgPath)
	if err != nil {
		return err
	}
	defer d.Close()
	ctx := context.Background()
	switch sub {
	case "add", "passwd":
		if len(pos) != 1 {
			return usageError{"user " + sub + " ADDRESS --config FILE [--password-stdin] [--quota SIZE]"}
		}
		if *quota != "" && sub != "add" {
			return usageError{"--quota goes with user add; use user quota ADDRESS SIZE"}
		}
		addr, err := directory.Normalize(pos[0])
		if err != nil {
			return err
		}
		if sub == "add" && !domainKnown(cfg, d, addr) {
			return fmt.Errorf("%s: domain is not in this server's domains (add it to domains in %s)", addr, cfg.Path)
		}
		pw, generated, err := readPassword(env, *pwStdin)
		if err != nil {
			return err
		}
		h, err := auth.HashPassword(pw)
		if err != nil {
			return err
		}
		if sub == "add" {
			err = d.AddUser(ctx, addr, h)
			if err == nil && *quota != "" {
				err = setQuota(ctx, d, addr, *quota)
			}
		} else {
			err = d.SetPassword(ctx, addr, h)
		}
		if err != nil {
			return err
		}
		if generated {
			fmt.Fprintf(env.Stdout, "%s: password %s (shown once)\n", addr, pw)
		} else {
			fmt.Fprintf(env.Stdout, "%s: ok\n", addr)
		}
	case "del":
		if len(pos) != 1 {
			return usageError{"user del ADDRESS --config FILE"}
		}
		if err := d.DeleteUser(ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "%s: deleted (its Maildir is kept)\n", strings.ToLower(pos[0]))
	case "list":
		for _, u := range d.Users() {
			fmt.Fprintln(env.Stdout, u)
		}
	case "quota":
		return cmdUserQuota(ctx, cfg, d, pos, env)
	case "suspend", "unsuspend":
		return cmdUserSuspend(ctx, d, sub, pos, env)
	default:
		return usageError{"user add|passwd|del|list|quota|suspend|unsuspend"}
	}
	return nil
}

func domainKnown(cfg *config.Config, d *directory.DB, addr string) bool {
	_, dom, _ := strings.Cut(addr, "@")
	for _, x := range cfg.Domains {
		if strings.EqualFold(x, dom) {
			return true
		}
	}
	for _, x := range d.Domains() {
		if x == dom {
			return true
		}
	}
	return false
}

func cmdAlias(args []string, env Env) error {
	if len(args) == 0 {
		return usageError{"alias add|del|list"}
	}
	sub := args[0]
	fs := flag.NewFlagSet("alias", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "config file")
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	cfg, d, err := openDir(*cfgPath)
	if err != nil {
		return err
	}
	defer d.Close()
	ctx := context.Background()
	switch sub {
	case "add":
		if len(pos) != 2 {
			return usageError{"alias add ALIAS TARGET --config FILE"}
		}
		a, err := directory.Normalize(pos[0])
		if err != nil {
			return err
		}
		if !domainKnown(cfg, d, a) {
			return fmt.Errorf("%s: domain is not in this server's domains", a)
		}
		if err := d.AddAlias(ctx, pos[0], pos[1]); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "%s -> %s\n", strings.ToLower(pos[0]), strings.ToLower(pos[1]))
	case "del":
		if len(pos) != 1 {
			return usageError{"alias del ALIAS --config FILE"}
		}
		if err := d.DeleteAlias(ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "%s: deleted\n", strings.ToLower(pos[0]))
	case "list":
		for _, a := range d.Aliases() {
			fmt.Fprintf(env.Stdout, "%s -> %s\n", a[0], a[1])
		}
	default:
		return usageError{"alias add|del|list"}
	}
	return nil
}

func cmdInit(args []string, env Env) error {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory to create the configuration in")
	domain := fs.String("domain", "", "mail domain (repeatable with commas)")
	hostname := fs.String("hostname", "", "this server's host name")
	mx := fs.String("mx-addr", ":25", "MX listener")
	sub := fs.String("submission-addr", ":587", "submission listener")
	smtps := fs.String("smtps-addr", ":465", "SMTPS listener")
	pop3 := fs.String("pop3-addr", "", "POP3 listener (off unless given)")
	pop3s := fs.String("pop3s-addr", "", "POP3S listener (off unless given)")
	adminAddr := fs.String("admin-addr", "127.0.0.1:8025", "admin listener")
	cert := fs.String("cert", "", "certificate file (default: generate a self-signed one)")
	key := fs.String("key", "", "key file")
	force := fs.Bool("force", false, "overwrite an existing kanmon.toml")
	runAs := fs.String("user", "", "the unprivileged user kanmon serves as (run_as); it gets the data directory")
	dataDir := fs.String("data-dir", "data", "data directory (relative: to --dir)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" || *domain == "" || *hostname == "" {
		return usageError{"--dir, --domain and --hostname are required"}
	}
	if (*cert == "") != (*key == "") {
		return usageError{"--cert and --key go together"}
	}
	owner, err := initOwner(*runAs)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o750); err != nil {
		return err
	}
	path := filepath.Join(*dir, "kanmon.toml")
	if _, err := os.Stat(path); err == nil && !*force {
		return fmt.Errorf("%s exists (use --force to overwrite)", path)
	}
	var doms []string
	for _, d := range strings.Split(*domain, ",") {
		if d = strings.TrimSpace(strings.ToLower(d)); d != "" {
			doms = append(doms, fmt.Sprintf("%q", d))
		}
	}
	certPath, keyPath := "cert.pem", "key.pem"
	if *cert != "" {
		certPath, keyPath = absPath(*cert), absPath(*key)
	} else if _, err := tlsutil.WriteSelfSigned(filepath.Join(*dir, certPath), filepath.Join(*dir, keyPath), []string{*hostname}); err != nil {
		return err
	}
	var b strings.Builder
	t := template.Must(template.New("cfg").Parse(configTemplate))
	if err := t.Execute(&b, map[string]string{
		"Path": path, "Hostname": *hostname, "Domains": strings.Join(doms, ", "),
		"MX": *mx, "Submission": *sub, "SMTPS": *smtps, "POP3": *pop3, "POP3S": *pop3s, "Admin": *adminAddr,
		"Cert": certPath, "Key": keyPath, "RunAs": *runAs, "DataDir": *dataDir,
	}); err != nil {
		return err
	}
	// Validate before writing, so init never leaves a broken config.
	cfg, err := config.Parse([]byte(b.String()), path)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o640); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	if _, err := admin.EnsureToken(cfg.AdminTokenPath()); err != nil {
		return err
	}
	d, err := directory.Open(cfg.DBPath())
	if err != nil {
		return err
	}
	defer d.Close()
	for _, dom := range cfg.Domains {
		if err := d.AddDomain(context.Background(), dom); err != nil {
			return err
		}
	}
	if err := d.Close(); err != nil {
		return err
	}
	if err := initDKIMKeys(cfg, env); err != nil {
		return err
	}
	if err := initBATV(cfg); err != nil {
		return err
	}
	if err := owner.give(cfg, *dir, *cert == ""); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "wrote %s\nnext: kanmon user add postmaster@%s --config %s\n      kanmon dns-records %s --config %s (publish them)\n      kanmon serve --config %s\n",
		path, cfg.Domains[0], path, cfg.Domains[0], path, path)
	return nil
}

func absPath(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}
