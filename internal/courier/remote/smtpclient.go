package remote

// The SMTP client remote delivery speaks, from the greeting to QUIT.
//
// It is kanmon's own rather than go-smtp's client for two reasons.
// go-smtp's client waits for each reply before sending the next command,
// so it cannot pipeline MAIL, RCPT and DATA (RFC 2920), which costs a
// round trip per recipient. And it reads replies through net/textproto,
// which bounds neither the length of a reply line, nor the number of
// lines of a multi-line reply, nor the time the whole reply may take: a
// receiving server that answers "220 " and then streams bytes without a
// newline grows our memory until the process dies (law 5).
//
// SECURITY: everything the peer sends is read through readReply, over a
// fixed-size buffer, with the bounds below and one deadline per reply
// that the peer cannot extend by dripping bytes. Reply text kept for logs
// and DSNs is reduced to printable ASCII. The client never logs commands;
// AUTH credentials exist only in the one write that carries them.

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
)

const (
	// maxReplyLine bounds one reply line, CRLF not counted. RFC 5321
	// 4.5.3.1.5 allows 512 octets; 4 KiB leaves room for servers that
	// exceed it a little while still being a small fixed buffer.
	maxReplyLine = 4096
	// maxReplyLines bounds the lines of one reply. An EHLO reply has one
	// line per extension, a few dozen at most in the wild.
	maxReplyLines = 100
	// maxReplySize bounds the bytes of one reply, all lines together.
	maxReplySize = 64 << 10
	// quitTimeout bounds the wait for the reply to QUIT, which changes
	// nothing about the outcome.
	quitTimeout = 10 * time.Second
)

// Enhanced status codes (RFC 3463) of failures on our side of a
// conversation with a remote server. All are temporary: another attempt,
// or another host, may succeed.
const (
	// enhConnection: no connection, or it broke (X.4.1 no answer from host).
	enhConnection = "4.4.1"
	// enhBadConnection: the peer broke a bound or a deadline (X.4.2 bad
	// connection).
	enhBadConnection = "4.4.2"
	// enhProtocol: the peer's reply is not SMTP (X.5.0 protocol error).
	enhProtocol = "4.5.0"
)

// errTLSFailed marks a STARTTLS or implicit TLS failure, after which an
// MX (never the smarthost) is tried again in plain text.
var errTLSFailed = errors.New("TLS handshake failed")

// peerError is a failure of the conversation with one host that leaves
// the recipients' fate unknown: every recipient concerned is deferred
// with its enhanced status code.
type peerError struct {
	enhanced string
	msg      string
	err      error // wrapped cause, part of the text; may be nil
	mark     error // wrapped but not printed (errTLSFailed); may be nil
}

func (e *peerError) Error() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}

func (e *peerError) Unwrap() []error {
	var out []error
	for _, err := range []error{e.err, e.mark} {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// enhancedOf returns the enhanced status code for a session error.
func enhancedOf(err error) string {
	var pe *peerError
	if errors.As(err, &pe) && pe.enhanced != "" {
		return pe.enhanced
	}
	return enhConnection
}

// reply is one SMTP reply (RFC 5321 4.2).
type reply struct {
	code int
	// enhanced is the RFC 3463 code at the start of the last line, when
	// its class matches the reply code; text is the rest of that line.
	enhanced, text string
	// lines holds the text of every line (EHLO keywords).
	lines []string
}

// positive reports a 2xx reply.
func (r reply) positive() bool { return r.code/100 == 2 }

// String renders the reply as one line for error texts.
func (r reply) String() string {
	s := strconv.Itoa(r.code)
	if r.enhanced != "" {
		s += " " + r.enhanced
	}
	if r.text != "" {
		s += " " + r.text
	}
	return s
}

// readReply reads one reply from br, which must have been created with
// newReplyReader so that a line longer than maxReplyLine fills its buffer.
// It never holds more than maxReplySize bytes of the reply.
func readReply(br *bufio.Reader) (reply, error) {
	var r reply
	size := 0
	for n := 0; ; n++ {
		if n == maxReplyLines {
			return reply{}, &peerError{enhanced: enhBadConnection,
				msg: fmt.Sprintf("remote server sent a reply of more than %d lines", maxReplyLines)}
		}
		raw, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return reply{}, &peerError{enhanced: enhBadConnection,
				msg: fmt.Sprintf("remote server sent a reply line over %d bytes", maxReplyLine)}
		}
		if err != nil {
			return reply{}, readError(err)
		}
		if size += len(raw); size > maxReplySize {
			return reply{}, &peerError{enhanced: enhBadConnection,
				msg: fmt.Sprintf("remote server sent a reply over %d bytes", maxReplySize)}
		}
		line := strings.TrimSuffix(strings.TrimSuffix(string(raw), "\n"), "\r")
		code, more, text, ok := parseReplyLine(line)
		if !ok || (n > 0 && code != r.code) {
			return reply{}, &peerError{enhanced: enhProtocol,
				msg: fmt.Sprintf("remote server sent a malformed reply line %q", printable(truncate(line, 64)))}
		}
		r.code = code
		r.lines = append(r.lines, text)
		if !more {
			r.enhanced, r.text = splitEnhanced(code, printable(text))
			return r, nil
		}
	}
}

// readError describes a failed read: a deadline, a closed connection.
func readError(err error) error {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return &peerError{enhanced: enhBadConnection, msg: "remote server did not complete its reply in time", err: err}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &peerError{enhanced: enhConnection, msg: "remote server closed the connection", err: err}
	}
	return &peerError{enhanced: enhConnection, msg: "reading the reply", err: err}
}

// parseReplyLine splits "250-text" or "250 text" (or a bare "250").
func parseReplyLine(line string) (code int, more bool, text string, ok bool) {
	if len(line) < 3 || line[0] < '2' || line[0] > '5' {
		return 0, false, "", false
	}
	for i := 0; i < 3; i++ {
		if line[i] < '0' || line[i] > '9' {
			return 0, false, "", false
		}
	}
	code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
	if len(line) == 3 {
		return code, false, "", true
	}
	switch line[3] {
	case ' ':
		return code, false, line[4:], true
	case '-':
		return code, true, line[4:], true
	}
	return 0, false, "", false
}

// splitEnhanced separates an RFC 3463 enhanced status code whose class
// matches the reply code from the rest of the text.
func splitEnhanced(code int, text string) (string, string) {
	word, rest, _ := strings.Cut(text, " ")
	parts := strings.Split(word, ".")
	if len(parts) != 3 || word[0] != byte('0'+code/100) {
		return "", text
	}
	for _, p := range parts {
		if len(p) == 0 || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return "", text
		}
	}
	return word, strings.TrimSpace(rest)
}

// printable replaces anything but printable ASCII, so a peer's text is
// safe in a log line, the queue state and a DSN header field.
func printable(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '\t' {
			b[i] = ' '
		} else if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// newReplyReader returns the reader every reply is read through: its
// buffer holds exactly one line of maxReplyLine bytes and its CRLF.
func newReplyReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, maxReplyLine+2) }

// smtpClient is one SMTP connection to a remote server.
type smtpClient struct {
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	// cmdTimeout bounds each reply; deadline the whole transaction.
	cmdTimeout time.Duration
	deadline   time.Time
	// ext holds the EHLO keywords (upper case) and their parameters.
	ext map[string]string
	// tls is the TLS version name once TLS is on ("" in plain text).
	tls string
}

func newSMTPClient(conn net.Conn, cmdTimeout time.Duration, deadline time.Time) *smtpClient {
	return &smtpClient{conn: conn, br: newReplyReader(conn), bw: bufio.NewWriterSize(conn, 16<<10),
		cmdTimeout: cmdTimeout, deadline: deadline}
}

// until returns the earlier of now+d and the transaction deadline.
func (c *smtpClient) until(d time.Duration) time.Time {
	t := time.Now().Add(d)
	if !c.deadline.IsZero() && c.deadline.Before(t) {
		return c.deadline
	}
	return t
}

// read reads the reply to what. The whole reply must arrive within
// timeout (and the transaction deadline): the read deadline is set once,
// so a peer dripping a byte at a time cannot extend it.
func (c *smtpClient) read(what string, timeout time.Duration) (reply, error) {
	dl := c.until(timeout)
	c.conn.SetReadDeadline(dl)
	r, err := readReply(c.br)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		why := "within " + timeout.String()
		if dl.Equal(c.deadline) {
			why = "before the session deadline"
		}
		err = &peerError{enhanced: enhBadConnection, msg: "remote server did not complete its reply " + why}
	}
	if err != nil {
		return reply{}, fmt.Errorf("%s: %w", what, err)
	}
	return r, nil
}

// send writes command lines in one write (a pipelined group when more
// than one).
func (c *smtpClient) send(lines ...string) error {
	c.conn.SetWriteDeadline(c.until(c.cmdTimeout))
	for _, l := range lines {
		c.bw.WriteString(l)
		c.bw.WriteString("\r\n")
	}
	if err := c.bw.Flush(); err != nil {
		return &peerError{enhanced: enhConnection, msg: "sending " + verbOf(lines[0]), err: err}
	}
	return nil
}

// verbOf names a command in errors without its arguments (AUTH data).
func verbOf(line string) string {
	v, _, _ := strings.Cut(line, " ")
	return v
}

// cmd sends one command and reads its reply.
func (c *smtpClient) cmd(line string) (reply, error) {
	if err := c.send(line); err != nil {
		return reply{}, err
	}
	return c.read(verbOf(line), c.cmdTimeout)
}

// greeting reads the 220 greeting; anything else ends the session.
func (c *smtpClient) greeting() error {
	r, err := c.read("greeting", c.cmdTimeout)
	if err != nil {
		return err
	}
	if r.code != 220 {
		return &peerError{enhanced: enhConnection, msg: "greeting: " + r.String()}
	}
	return nil
}

// hello says EHLO, and HELO when the peer refuses EHLO (5xx), and
// records the extensions offered.
func (c *smtpClient) hello(name string) error {
	r, err := c.cmd("EHLO " + name)
	if err != nil {
		return err
	}
	c.ext = map[string]string{}
	if r.code/100 == 5 {
		if r, err = c.cmd("HELO " + name); err != nil {
			return err
		}
		if !r.positive() {
			return &peerError{enhanced: enhConnection, msg: "HELO: " + r.String()}
		}
		return nil
	}
	if !r.positive() {
		return &peerError{enhanced: enhConnection, msg: "EHLO: " + r.String()}
	}
	for _, l := range r.lines[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(l), " ")
		c.ext[strings.ToUpper(k)] = v
	}
	return nil
}

// has reports whether the peer offered an EHLO keyword.
func (c *smtpClient) has(ext string) bool {
	_, ok := c.ext[ext]
	return ok
}

// handshake runs the TLS client handshake on the connection, within the
// command timeout, and continues the session over TLS.
func (c *smtpClient) handshake(ctx context.Context, cfg *tls.Config) error {
	tc := tls.Client(c.conn, cfg)
	hctx, cancel := context.WithDeadline(ctx, c.until(c.cmdTimeout))
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return &peerError{enhanced: enhConnection, msg: errTLSFailed.Error(), err: err, mark: errTLSFailed}
	}
	c.conn = tc
	c.br, c.bw = newReplyReader(tc), bufio.NewWriterSize(tc, 16<<10)
	c.tls = tls.VersionName(tc.ConnectionState().Version)
	return nil
}

// startTLS says STARTTLS and runs the handshake (RFC 3207); the caller
// says EHLO again. Any failure wraps errTLSFailed.
func (c *smtpClient) startTLS(ctx context.Context, cfg *tls.Config) error {
	r, err := c.cmd("STARTTLS")
	if err != nil {
		return &peerError{enhanced: enhancedOf(err), msg: "TLS not started", err: err, mark: errTLSFailed}
	}
	if r.code != 220 {
		return &peerError{enhanced: enhConnection, msg: "STARTTLS refused: " + r.String(), mark: errTLSFailed}
	}
	if c.br.Buffered() > 0 {
		// Data after the 220 before the handshake: a STARTTLS injection
		// attempt (CVE-2011-0411 style). Never read it as protected.
		return &peerError{enhanced: enhConnection, msg: "peer sent data after 220 to STARTTLS", mark: errTLSFailed}
	}
	return c.handshake(ctx, cfg)
}

// authPlain authenticates with AUTH PLAIN (RFC 4616) and an initial
// response. The caller makes sure TLS is on.
func (c *smtpClient) authPlain(user, password string) error {
	if !strings.Contains(" "+strings.ToUpper(c.ext["AUTH"])+" ", " PLAIN ") {
		return &peerError{enhanced: enhConnection, msg: "smarthost does not offer AUTH PLAIN"}
	}
	_, ir, err := sasl.NewPlainClient("", user, password).Start()
	if err != nil {
		return fmt.Errorf("AUTH as %s: %w", user, err)
	}
	r, err := c.cmd("AUTH PLAIN " + base64.StdEncoding.EncodeToString(ir))
	if err != nil {
		return err
	}
	if r.code == 334 {
		// A challenge to an initial response: cancel (RFC 4954 4).
		if r, err = c.cmd("*"); err != nil {
			return err
		}
	}
	if r.code != 235 {
		// Wrong credentials are the operator's to fix: retry, never bounce.
		return &peerError{enhanced: enhConnection, msg: "AUTH as " + user + ": " + r.String()}
	}
	return nil
}

// quit says QUIT and waits briefly for the answer, which changes nothing.
func (c *smtpClient) quit() {
	if c.send("QUIT") == nil {
		c.read("QUIT", quitTimeout)
	}
}
