package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"kanmon/internal/authsock"
	"kanmon/internal/config"
)

// Exit statuses of the checkpassword interface, as Dovecot reads them.
const (
	cpInvalid  = 1   // wrong user or password
	cpMisuse   = 2   // called wrongly (Dovecot logs an internal error)
	cpTempFail = 111 // temporary problem: the client may retry
)

// cpMaxInput bounds what is read from file descriptor 3: Dovecot sends at
// most 512 bytes (user, password, timestamp, each ending in NUL).
const cpMaxInput = 512

const checkpasswordUsage = `usage: kanmon checkpassword [--config FILE] REPLY-PROGRAM [ARG...]
Dovecot's checkpassword interface: reads "user NUL password NUL" on file
descriptor 3, asks the running kanmon server (its [checkpassword] socket)
and, when the password is right, runs REPLY-PROGRAM with USER set to the
account. Exit status 1: refused; 111: try later; 2: called wrongly.
The config is --config FILE, else $KANMON_CONFIG, else ` + defaultConfig + `.
`

// cmdCheckpassword implements `kanmon checkpassword`. The password check
// itself happens in the server, so the login throttle is the one SMTP and
// POP3 use; this program only carries the question and runs the reply
// program on success.
func cmdCheckpassword(args []string, env Env) int {
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(env.Stderr, "kanmon checkpassword: "+format+"\n", a...)
		return code
	}
	cfgPath, reply, err := parseCheckpasswordArgs(args)
	if err != nil {
		fmt.Fprintf(env.Stderr, "kanmon checkpassword: %s\n%s", err, checkpasswordUsage)
		return cpMisuse
	}
	if os.Getenv("AUTHORIZED") == "1" || os.Getenv("CREDENTIALS_LOOKUP") == "1" {
		return fail(cpTempFail, "lookups without a password are not offered: use kanmon checkpassword as a passdb with a static userdb (docs/imap-with-dovecot.md)")
	}
	fd3 := os.NewFile(3, "fd3")
	if fd3 == nil {
		return fail(cpMisuse, "file descriptor 3 is not open: the credentials come there")
	}
	user, pass, err := readCheckpasswordInput(fd3)
	fd3.Close()
	if err != nil {
		return fail(cpMisuse, "%s", err)
	}
	if cfgPath == "" {
		cfgPath = os.Getenv("KANMON_CONFIG")
	}
	if cfgPath == "" {
		cfgPath = defaultConfig
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return fail(cpTempFail, "%s", err)
	}
	if !cfg.Checkpassword.Enabled {
		return fail(cpTempFail, "password checks are off in %s ([checkpassword] enabled = false)", cfgPath)
	}
	res, account, err := authsock.Ask(cfg.AuthSocketPath(), authsock.Request{
		Service: os.Getenv("SERVICE"), Remote: os.Getenv("TCPREMOTEIP"), User: user, Password: pass,
	}, 40*time.Second)
	switch {
	case err != nil:
		return fail(cpTempFail, "%s (is kanmon serve running?)", err)
	case res == authsock.No:
		return cpInvalid
	case res == authsock.Temp:
		return fail(cpTempFail, "the server says try later: %s", account)
	}
	path, err := exec.LookPath(reply[0])
	if err != nil {
		return fail(cpTempFail, "reply program: %s", err)
	}
	// The reply program tells Dovecot the account's canonical name, so
	// an alias or a different case logs into the same Maildir.
	envv := append(withoutEnv(os.Environ(), "USER"), "USER="+account)
	err = syscall.Exec(path, reply, envv)
	return fail(cpTempFail, "running %s: %s", path, err)
}

// parseCheckpasswordArgs takes --config FILE (or --config=FILE, -config)
// before the reply program and its arguments.
func parseCheckpasswordArgs(args []string) (cfgPath string, reply []string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--config" || a == "-config":
			if i+1 >= len(args) {
				return "", nil, fmt.Errorf("%s needs a file", a)
			}
			cfgPath = args[i+1]
			i++
		case strings.HasPrefix(a, "--config="):
			cfgPath = strings.TrimPrefix(a, "--config=")
		case a == "--":
			reply = args[i+1:]
			i = len(args)
		case strings.HasPrefix(a, "-"):
			return "", nil, fmt.Errorf("unknown option %s", a)
		default:
			reply = args[i:]
			i = len(args)
		}
	}
	if len(reply) == 0 {
		return "", nil, fmt.Errorf("the reply program is missing")
	}
	return cfgPath, reply, nil
}

// readCheckpasswordInput reads "user NUL password NUL [timestamp NUL]".
func readCheckpasswordInput(r io.Reader) (string, string, error) {
	raw, err := io.ReadAll(io.LimitReader(r, cpMaxInput+1))
	if err != nil {
		return "", "", fmt.Errorf("reading file descriptor 3: %w", err)
	}
	if len(raw) > cpMaxInput {
		return "", "", fmt.Errorf("more than %d bytes on file descriptor 3", cpMaxInput)
	}
	f := bytes.SplitN(raw, []byte{0}, 3)
	if len(f) < 3 {
		return "", "", fmt.Errorf("file descriptor 3 does not hold user NUL password NUL")
	}
	return string(f[0]), string(f[1]), nil
}

// withoutEnv drops the variable name from an environment list.
func withoutEnv(envv []string, name string) []string {
	out := envv[:0:0]
	for _, kv := range envv {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}
