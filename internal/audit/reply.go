package audit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Limits on what the audit reads from the server it audits: the server is
// untrusted and may be hostile.
const (
	// maxReplyLine is the longest reply line accepted, CRLF included
	// (RFC 5321 allows 512; real servers send a little more).
	maxReplyLine = 2048
	// maxReplyLines is the most lines one multi-line reply may have.
	maxReplyLines = 100
)

// Reply is one SMTP reply, possibly of several lines.
type Reply struct {
	// Code is the three-digit reply code.
	Code int
	// Lines are the reply lines exactly as received, without CRLF.
	Lines []string
}

// Enhanced returns the enhanced status code (RFC 3463) at the start of the
// first line's text, or "".
func (r *Reply) Enhanced() string {
	if r == nil || len(r.Lines) == 0 || len(r.Lines[0]) < 5 {
		return ""
	}
	f := strings.Fields(r.Lines[0][4:])
	if len(f) == 0 {
		return ""
	}
	parts := strings.Split(f[0], ".")
	if len(parts) != 3 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return ""
	}
	for _, p := range parts[1:] {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 999 || len(p) > 3 {
			return ""
		}
	}
	return f[0]
}

// Text returns the text of every line (after the code and separator).
func (r *Reply) Text() []string {
	out := make([]string, len(r.Lines))
	for i, l := range r.Lines {
		if len(l) > 4 {
			out[i] = l[4:]
		}
	}
	return out
}

// Positive reports a 2xx reply.
func (r *Reply) Positive() bool { return r != nil && r.Code >= 200 && r.Code < 300 }

// Intermediate reports a 3xx reply (354, 334).
func (r *Reply) Intermediate() bool { return r != nil && r.Code >= 300 && r.Code < 400 }

// Temporary reports a 4xx reply.
func (r *Reply) Temporary() bool { return r != nil && r.Code >= 400 && r.Code < 500 }

// Permanent reports a 5xx reply.
func (r *Reply) Permanent() bool { return r != nil && r.Code >= 500 && r.Code < 600 }

// String returns the reply as it was received, lines joined with CRLF.
func (r *Reply) String() string { return strings.Join(r.Lines, "\r\n") }

// errMalformed marks a reply that does not follow RFC 5321 section 4.2.
var errMalformed = errors.New("malformed SMTP reply")

// readReply reads one complete reply: lines "NNN-text" followed by a final
// "NNN text" (or a bare "NNN"), all with the same code in 100..599. Lines
// may end in CRLF or a bare LF. It never reads more than maxReplyLines
// lines of maxReplyLine bytes.
func readReply(r *bufio.Reader) (*Reply, error) {
	rep := &Reply{}
	for {
		line, err := readLine(r, maxReplyLine)
		if err != nil {
			if len(rep.Lines) > 0 && errors.Is(err, errEOFLine) {
				return rep, fmt.Errorf("%w: connection closed inside a multi-line reply", errMalformed)
			}
			return rep, err
		}
		if len(line) < 3 {
			return rep, fmt.Errorf("%w: line %q too short", errMalformed, line)
		}
		code, ok := parseCode(line[:3])
		if !ok {
			return rep, fmt.Errorf("%w: line %q does not start with a reply code", errMalformed, line)
		}
		if len(rep.Lines) > 0 && code != rep.Code {
			return rep, fmt.Errorf("%w: code %d inside a reply with code %d", errMalformed, code, rep.Code)
		}
		rep.Code = code
		rep.Lines = append(rep.Lines, line)
		switch {
		case len(line) == 3 || line[3] == ' ':
			return rep, nil
		case line[3] == '-':
			if len(rep.Lines) >= maxReplyLines {
				return rep, fmt.Errorf("%w: more than %d lines", errMalformed, maxReplyLines)
			}
		default:
			return rep, fmt.Errorf("%w: line %q: code not followed by space or hyphen", errMalformed, line)
		}
	}
}

func parseCode(s string) (int, bool) {
	if len(s) != 3 || s[0] < '1' || s[0] > '5' || s[1] < '0' || s[1] > '9' || s[2] < '0' || s[2] > '9' {
		return 0, false
	}
	return int(s[0]-'0')*100 + int(s[1]-'0')*10 + int(s[2]-'0'), true
}

// errEOFLine is returned by readLine at end of input.
var errEOFLine = errors.New("connection closed")

// readLine reads one line of at most max bytes including the line ending
// and returns it without CR LF. Longer lines are an error, and no more than
// the bufio.Reader's buffer is held in memory meanwhile.
func readLine(r *bufio.Reader, max int) (string, error) {
	var buf []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(buf)+len(frag) > max {
			return "", fmt.Errorf("%w: line longer than %d bytes", errMalformed, max)
		}
		buf = append(buf, frag...)
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) {
			return "", fmt.Errorf("%w (%d bytes of an unfinished line)", errEOFLine, len(buf))
		}
		return "", err
	}
	buf = buf[:len(buf)-1]
	if n := len(buf); n > 0 && buf[n-1] == '\r' {
		buf = buf[:n-1]
	}
	return string(buf), nil
}
