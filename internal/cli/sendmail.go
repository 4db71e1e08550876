package cli

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"kanmon/internal/config"
)

// Exit statuses of sendmail (sysexits.h), which programs calling
// /usr/sbin/sendmail know.
const (
	exUsage       = 64
	exDataErr     = 65
	exNoPerm      = 77
	exUnavailable = 69
	exTempFail    = 75
)

// defaultConfig is where `kanmon sendmail` looks for the server's config
// when neither -C/--config nor KANMON_CONFIG names one.
const defaultConfig = "/etc/kanmon/kanmon.toml"

const sendmailUsage = `usage: kanmon sendmail [-t] [-i|-oi] [-f ADDR] [-F NAME] [-C CONFIG] [RECIPIENT...] < message
  -t        take recipients from the To, Cc and Bcc headers (Bcc is removed)
  -i, -oi   a line with a single "." does not end the message
  -f ADDR   envelope sender (default: your configured address; others are refused)
  -F NAME   full name for a From header added when the message has none
  -C FILE   kanmon config (default: $KANMON_CONFIG, else ` + defaultConfig + `)
Other -o and -b options are accepted and ignored, as classic sendmail does.
`

type sendmailOpts struct {
	extract   bool
	ignoreDot bool
	from      string // envelope sender from -f, without angle brackets
	nullFrom  bool   // -f '<>': the null sender
	fullName  string
	config    string
	rcpts     []string
}

// parseSendmailArgs reads the classic sendmail command line.
func parseSendmailArgs(args []string) (sendmailOpts, error) {
	var o sendmailOpts
	value := func(i *int, a, flag string) (string, error) {
		if len(a) > len(flag) {
			return a[len(flag):], nil
		}
		if *i+1 >= len(args) {
			return "", fmt.Errorf("%s needs a value", flag)
		}
		*i++
		return args[*i], nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			o.rcpts = append(o.rcpts, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			o.rcpts = append(o.rcpts, a)
			continue
		}
		var err error
		switch {
		case a == "-t":
			o.extract = true
		case a == "-i" || a == "-oi":
			o.ignoreDot = true
		case a == "--config" || strings.HasPrefix(a, "--config="):
			if v, ok := strings.CutPrefix(a, "--config="); ok {
				o.config = v
			} else {
				o.config, err = value(&i, a, "--config")
			}
		case strings.HasPrefix(a, "-f"), strings.HasPrefix(a, "-r"):
			var v string
			if v, err = value(&i, a, a[:2]); err == nil {
				o.from, o.nullFrom, err = senderArg(v)
			}
		case strings.HasPrefix(a, "-F"):
			o.fullName, err = value(&i, a, "-F")
		case strings.HasPrefix(a, "-C"):
			o.config, err = value(&i, a, "-C")
		case strings.HasPrefix(a, "-o"), strings.HasPrefix(a, "-b"), strings.HasPrefix(a, "-B"),
			strings.HasPrefix(a, "-N"), strings.HasPrefix(a, "-R"), strings.HasPrefix(a, "-V"),
			a == "-v", a == "-m", a == "-n", a == "-U", a == "-G":
			// Delivery mode, error mode, DSN and other options that make
			// no difference here; -N, -R, -V and -B take a value.
			if (a == "-N" || a == "-R" || a == "-V" || a == "-B") && i+1 < len(args) {
				i++
			}
		default:
			return o, fmt.Errorf("unknown option %s", a)
		}
		if err != nil {
			return o, err
		}
	}
	return o, nil
}

// senderArg reads the -f value in any of the forms programs pass it:
// "<>" (or "") is the null sender, "<addr>" and "addr" are addr. go-smtp's
// client adds the angle brackets itself, so they must not be passed on
// ("MAIL FROM:<<>>").
func senderArg(v string) (addr string, null bool, err error) {
	v = strings.TrimSpace(v)
	if strings.HasPrefix(v, "<") && strings.HasSuffix(v, ">") {
		v = strings.TrimSpace(v[1 : len(v)-1])
	}
	if v == "" {
		return "", true, nil
	}
	for _, r := range v {
		if r == '<' || r == '>' || r <= ' ' || r == 0x7f {
			return "", false, fmt.Errorf("-f %q is not an address: give ADDR, <ADDR> or <>", v)
		}
	}
	return v, false, nil
}

// cmdSendmail hands a message to the running server over the local socket
// (config.SocketPath). It exits 0 only after the server's 250, which
// comes after the message is on disk; any failure before that leaves
// nothing queued.
func cmdSendmail(args []string, env Env) int {
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(env.Stderr, "sendmail: "+format+"\n", a...)
		return code
	}
	o, err := parseSendmailArgs(args)
	if err != nil {
		fmt.Fprintf(env.Stderr, "sendmail: %s\n%s", err, sendmailUsage)
		return exUsage
	}
	cfgPath := o.config
	if cfgPath == "" {
		cfgPath = os.Getenv("KANMON_CONFIG")
	}
	if cfgPath == "" {
		cfgPath = defaultConfig
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return fail(exTempFail, "%s (the message was not sent)", err)
	}
	sock := cfg.SocketPath()
	if !cfg.Sendmail.Enabled {
		return fail(exUnavailable, "local submission is off in %s ([sendmail] enabled = false); the message was not sent", cfgPath)
	}
	// The sender we ask for; the server decides by the socket's peer
	// credentials whether we may use it.
	me := ""
	if u, err := user.Current(); err == nil {
		me = cfg.SendmailAddress(u.Username)
	}
	from := o.from
	if from == "" && !o.nullFrom {
		from = me
	}
	if from == "" && !o.nullFrom {
		return fail(exNoPerm, "your Unix user has no sending address in %s ([sendmail] users or default_domain); the message was not sent", cfgPath)
	}

	limit := int64(cfg.Limits.MaxMessageSize)
	msg, err := readSendmailInput(env.Stdin, o.ignoreDot, limit)
	if err != nil {
		return fail(exDataErr, "%s; the message was not sent", err)
	}
	hdr, body := splitHeader(msg)
	rcpts := o.rcpts
	if o.extract {
		var extracted []string
		hdr, extracted, err = extractRecipients(hdr)
		if err != nil {
			return fail(exDataErr, "%s; the message was not sent", err)
		}
		rcpts = append(rcpts, extracted...)
	}
	var list []string
	for _, r := range rcpts {
		addrs, err := parseRecipients(r)
		if err != nil {
			return fail(exDataErr, "recipient %q: %s; the message was not sent", r, err)
		}
		list = append(list, addrs...)
	}
	if len(list) == 0 {
		return fail(exUsage, "no recipients (give them as arguments, or use -t); the message was not sent")
	}
	hdr = addMissingHeaders(hdr, me, o.fullName, cfg.Hostname)
	full := append(hdr, body...)

	nc, err := net.DialTimeout("unix", sock, 10*time.Second)
	if err != nil {
		return fail(exTempFail, "cannot reach the kanmon server on its socket %s: %s (is kanmon serve running with [sendmail] enabled = true?); the message was not sent", sock, sockErr(err))
	}
	nc.SetDeadline(time.Now().Add(cfg.Limits.DataTimeout.Duration + cfg.Limits.CommandTimeout.Duration))
	c := smtp.NewClient(nc)
	defer c.Close()
	step := func(what string, err error) int {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			code := exTempFail
			if se.Code >= 500 {
				code = exUnavailable
				switch {
				case se.EnhancedCode[0] == 5 && se.EnhancedCode[1] == 7:
					code = exNoPerm
				case se.EnhancedCode[0] == 5 && se.EnhancedCode[1] == 6:
					code = exDataErr // the message's content (e.g. a NUL octet)
				}
			}
			return fail(code, "%s refused by the server: %d %d.%d.%d %s; the message was not sent", what, se.Code,
				se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)
		}
		return fail(exTempFail, "%s: talking to the server on %s: %s; the message was not sent", what, sock, err)
	}
	if err := c.Hello("localhost"); err != nil {
		return step("greeting", err)
	}
	if err := c.Mail(from, nil); err != nil {
		return step("sender <"+from+">", err)
	}
	for _, r := range list {
		if err := c.Rcpt(r, nil); err != nil {
			return step("recipient <"+r+">", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return step("DATA", err)
	}
	if _, err := w.Write(full); err != nil {
		return step("message", err)
	}
	if err := w.Close(); err != nil {
		return step("message", err)
	}
	c.Quit()
	return 0
}

func sockErr(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return err.Error()
}

// readSendmailInput reads the message from stdin with CRLF line ends. It
// stops at EOF, or (without -i) at a line holding a single ".".
func readSendmailInput(r io.Reader, ignoreDot bool, limit int64) ([]byte, error) {
	br := bufio.NewReader(r)
	var out bytes.Buffer
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			line = bytes.TrimRight(line, "\r\n")
			if !ignoreDot && len(line) == 1 && line[0] == '.' {
				break
			}
			// A lone CR inside a line is not allowed in SMTP: make it a
			// line end as well, like a bare LF.
			line = bytes.ReplaceAll(line, []byte("\r"), []byte("\r\n"))
			out.Write(line)
			out.WriteString("\r\n")
			if int64(out.Len()) > limit {
				return nil, fmt.Errorf("message too big: the limit is %d octets", limit)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the message: %w", err)
		}
	}
	return out.Bytes(), nil
}

// splitHeader splits a CRLF message after the blank line ending the
// header (the header keeps its final CRLF; body starts with the blank line).
func splitHeader(msg []byte) (hdr, body []byte) {
	if bytes.HasPrefix(msg, []byte("\r\n")) {
		return nil, msg
	}
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		return msg[:i+2], msg[i+2:]
	}
	return msg, nil
}

// headerFields splits a header block into fields (with their folded lines).
func headerFields(hdr []byte) [][]byte {
	var fields [][]byte
	for _, line := range bytes.SplitAfter(hdr, []byte("\r\n")) {
		if len(line) == 0 {
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1] = append(fields[len(fields)-1], line...)
			continue
		}
		fields = append(fields, append([]byte(nil), line...))
	}
	return fields
}

func fieldName(f []byte) string {
	name, _, _ := bytes.Cut(f, []byte(":"))
	return strings.ToLower(strings.TrimSpace(string(name)))
}

// extractRecipients (-t) reads To, Cc and Bcc and removes Bcc.
func extractRecipients(hdr []byte) ([]byte, []string, error) {
	var out []byte
	var rcpts []string
	for _, f := range headerFields(hdr) {
		switch fieldName(f) {
		case "to", "cc", "bcc":
			_, v, _ := bytes.Cut(f, []byte(":"))
			if s := strings.TrimSpace(string(v)); s != "" {
				rcpts = append(rcpts, s)
			}
		}
		if fieldName(f) != "bcc" {
			out = append(out, f...)
		}
	}
	return out, rcpts, nil
}

// parseRecipients parses an address list ("a@b, Name <c@d>").
func parseRecipients(s string) ([]string, error) {
	s = strings.Join(strings.Fields(s), " ")
	list, err := mail.ParseAddressList(s)
	if err != nil {
		// A bare local address without a domain, or other forms classic
		// sendmail takes: pass through for the server to judge.
		if !strings.ContainsAny(s, ",<>\" ") {
			return []string{s}, nil
		}
		return nil, err
	}
	out := make([]string, len(list))
	for i, a := range list {
		out[i] = a.Address
	}
	return out, nil
}

// addMissingHeaders adds From, Date and Message-ID when the program did
// not write them.
func addMissingHeaders(hdr []byte, from, fullName, hostname string) []byte {
	has := map[string]bool{}
	for _, f := range headerFields(hdr) {
		has[fieldName(f)] = true
	}
	var add bytes.Buffer
	if !has["from"] && from != "" {
		a := mail.Address{Name: fullName, Address: from}
		add.WriteString("From: " + a.String() + "\r\n")
	}
	if !has["date"] {
		add.WriteString("Date: " + time.Now().Format(time.RFC1123Z) + "\r\n")
	}
	if !has["message-id"] {
		b := make([]byte, 12)
		rand.Read(b)
		add.WriteString("Message-ID: <" + time.Now().UTC().Format("20060102150405") + "." + hex.EncodeToString(b) + "@" + hostname + ">\r\n")
	}
	return append(add.Bytes(), hdr...)
}

// IsSendmailName reports whether a program name (argv[0]) asks for the
// sendmail command line, as when kanmon is installed as
// /usr/sbin/sendmail by symlink.
func IsSendmailName(argv0 string) bool {
	return filepath.Base(argv0) == "sendmail"
}
