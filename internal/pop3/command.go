package pop3

import (
	"bytes"
	"errors"
	"strings"
)

// command is one parsed client command line.
type command struct {
	// verb is the keyword, upper-cased: letters only, 1 to maxVerbLen.
	verb string
	// args are the space-separated arguments (none empty, none with a
	// control character or space).
	args []string
	// rest is everything after the keyword and one space, unsplit: PASS
	// takes it whole, since a password may contain spaces.
	rest string
}

// maxVerbLen admits every POP3 keyword (4 letters) and also the HTTP
// verbs, so "CONNECT" is recognised and answered by closing.
const maxVerbLen = 16

// maxArgs bounds the arguments of one command (POP3 needs at most 2).
const maxArgs = 8

var (
	errEmptyLine = errors.New("empty command line")
	errSyntax    = errors.New("malformed command line")
)

// parseCommand parses one line as read from the client, with or without
// its CRLF (a bare LF is tolerated). It never panics and never returns a
// command with an empty verb.
func parseCommand(line []byte) (command, error) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) == 0 {
		return command{}, errEmptyLine
	}
	for _, c := range line {
		// Control characters (NUL, CR, LF, TAB, DEL, ...) are never part
		// of a POP3 command; bytes >= 0x80 may be (a UTF-8 password).
		if c < 0x20 || c == 0x7f {
			return command{}, errSyntax
		}
	}
	verb, rest, hasRest := bytes.Cut(line, []byte(" "))
	if len(verb) == 0 || len(verb) > maxVerbLen {
		return command{}, errSyntax
	}
	for _, c := range verb {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return command{}, errSyntax
		}
	}
	cmd := command{verb: strings.ToUpper(string(verb))}
	if !hasRest {
		return cmd, nil
	}
	cmd.rest = string(rest)
	for _, f := range strings.Split(cmd.rest, " ") {
		if f == "" {
			continue // tolerate doubled or trailing spaces
		}
		if len(cmd.args) == maxArgs {
			return command{}, errSyntax
		}
		cmd.args = append(cmd.args, f)
	}
	return cmd, nil
}

// logLine is the form of a client line written to the log: PASS and AUTH
// payloads replaced by "[redacted]", whether or not the line parsed, and
// long lines cut.
func logLine(line []byte) string {
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	trimmed := bytes.TrimLeft(line, " ")
	// Decide on the first four bytes, so "PASS\tsecret" or "pass  x"
	// (which do not parse) are redacted too.
	prefix := ""
	if len(trimmed) >= 4 {
		prefix = strings.ToUpper(string(trimmed[:4]))
	}
	switch prefix {
	case "PASS":
		return "PASS [redacted]"
	case "APOP":
		// APOP is refused, but its digest is still a credential.
		return "APOP [redacted]"
	case "AUTH":
		if len(trimmed) == 4 {
			return "AUTH"
		}
		if trimmed[4] != ' ' {
			return "AUTH [redacted]"
		}
		mech, payload, _ := bytes.Cut(bytes.TrimLeft(trimmed[5:], " "), []byte(" "))
		if len(mech) > 20 || !printable(mech) {
			return "AUTH [redacted]"
		}
		if len(bytes.TrimSpace(payload)) > 0 {
			return "AUTH " + string(mech) + " [redacted]"
		}
		return "AUTH " + string(mech)
	}
	return truncate(string(line), 200)
}

func printable(b []byte) bool {
	for _, c := range b {
		if c <= 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// parseNumber reads a message number or line count: 1 to 9 decimal
// digits, nothing else (no sign, no space).
func parseNumber(s string) (int, bool) {
	if len(s) == 0 || len(s) > 9 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}
