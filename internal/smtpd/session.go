package smtpd

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"kanmon/internal/address"
	"kanmon/internal/forgery"
	"kanmon/internal/listener"
	"kanmon/internal/policy"
)

// errClose ends a session after the pending reply is sent.
var errClose = errors.New("close connection")

type rcpt struct {
	addr    address.Addr
	account string // local account, "" for remote
	// verified is how a relay-domain recipient was verified, for the queue.
	verified string
}

// conn is one SMTP session.
type conn struct {
	s    *Server
	nc   net.Conn
	role Role
	id   string
	ip   netip.Addr
	log  *slog.Logger
	br   *bufio.Reader
	bw   *bufio.Writer

	tls      *tls.ConnectionState
	helo     string
	esmtp    bool
	authUser string
	local    string // RoleLocal: "user NAME uid N", for Received and logs

	// transaction
	inMail   bool
	from     address.Addr
	smtputf8 bool
	body8bit bool
	size     int64 // SIZE= of MAIL FROM, 0 when not given
	rcpts    []rcpt

	errors   int
	commands int
	messages int
	started  time.Time

	closing atomic.Bool // server shutdown requested
	inTx    atomic.Bool // a DATA transfer is in progress

	raw net.Conn      // the accepted connection, for deadlines set from other goroutines
	lc  listener.Conn // the listener's view: stress mode

	scr *screening // inbound checks (MX only; nil when they do not apply)
}

func newConn(s *Server, nc net.Conn, role Role, id string, ip netip.Addr, log *slog.Logger) *conn {
	c := &conn{
		s: s, nc: nc, role: role, id: id, ip: ip, log: log,
		br:      bufio.NewReaderSize(nc, 8192),
		started: time.Now(),
	}
	c.bw = bufio.NewWriterSize(deadlineWriter{c}, 4096)
	return c
}

// deadlineWriter gives every write to the client a deadline: a client
// that stops reading must not hold its connection (and a slot) forever.
type deadlineWriter struct{ c *conn }

func (w deadlineWriter) Write(p []byte) (int, error) {
	cmdTimeout, _ := w.c.cfgLimits()
	w.c.nc.SetWriteDeadline(time.Now().Add(cmdTimeout))
	return w.c.nc.Write(p)
}

func (c *conn) cfgLimits() (cmdTimeout, dataTimeout time.Duration) {
	return c.commandTimeout(), c.s.cfg.Limits.DataTimeout.Duration
}

// shutdown asks an idle session to end; a session receiving DATA finishes
// its message first.
func (c *conn) shutdown() {
	c.closing.Store(true)
	if !c.inTx.Load() {
		c.raw.SetReadDeadline(time.Now())
	}
}

// client is what the relay rule may know about this client; policy
// computes it from facts the server established (internal/policy relay.go).
func (c *conn) client() policy.Client {
	return c.s.d.Policy.ClientOf(c.ip, string(c.role), c.authUser)
}

// serve runs the dialogue and closes the connection. The close is not
// deferred: after a panic the listener has the client told (goodbye)
// over the open connection, then closes it.
func (c *conn) serve() {
	cmdTimeout, _ := c.cfgLimits()
	c.log.Info("connect", "remote", c.nc.RemoteAddr().String())
	if c.role == RoleSMTPS {
		tc := tls.Server(c.nc, c.s.d.TLS)
		tc.SetDeadline(time.Now().Add(cmdTimeout))
		if err := tc.Handshake(); err != nil {
			c.log.Info("disconnect", "reason", "tls handshake failed", "err", err.Error())
			c.nc.Close()
			return
		}
		tc.SetDeadline(time.Time{})
		st := tc.ConnectionState()
		c.tls = &st
		c.nc = tc
		c.br.Reset(tc)
		c.bw.Reset(deadlineWriter{c})
		c.log.Info("tls", "tls", tlsDesc(&st))
	}
	c.startScreen()
	defer c.stopScreen()
	if !c.greetDelay() {
		c.flush()
		c.nc.Close()
		c.log.Info("disconnect", "reason", "before greeting", "duration_ms", time.Since(c.started).Milliseconds())
		return
	}
	c.reply(220, "", c.s.cfg.Hostname+" ESMTP ready")
	reason := "quit"
	for {
		line, err := c.readCommand(c.commandTimeout())
		if err != nil {
			reason = c.readFailed(err)
			break
		}
		c.commands++
		if err := c.dispatch(line); err != nil {
			reason = err.Error()
			break
		}
		if c.commands >= c.s.cfg.Limits.MaxCommands {
			c.reject("limit.commands", 421, "4.7.0", "too many commands in one session, closing connection")
			reason = "too many commands"
			break
		}
	}
	c.flush()
	c.nc.Close()
	c.log.Info("disconnect", "reason", reason, "messages", c.messages, "commands", c.commands,
		"duration_ms", time.Since(c.started).Milliseconds())
}

// goodbye answers a session that panicked (listener.Session.Goodbye):
// replies still buffered are dropped, since one may be half written, and
// the client gets 421 4.3.0 with the connection id, which leads to the
// panic's log line. The listener closes the connection afterwards.
func (c *conn) goodbye() {
	text := "internal error, closing connection [" + c.id + "]"
	c.log.Info("reply", "code", 421, "line", "421 4.3.0 "+text)
	// Straight to the connection: the listener has set a short write
	// deadline, which deadlineWriter would replace with the long one.
	c.bw.Reset(c.nc)
	c.write(421, "4.3.0", text)
	c.flush()
	c.nc.Close()
}

// readFailed answers a failed command read and returns the reason logged.
func (c *conn) readFailed(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, errLineTooLong):
		c.reject("protocol.line_too_long", 500, "5.5.2", "line too long (limit "+strconv.Itoa(c.s.cfg.Limits.MaxLineLength)+" octets), closing connection")
		return "line too long"
	case c.closing.Load():
		c.reply(421, "4.3.2", "service shutting down, try again later")
		return "server shutdown"
	case errors.As(err, &ne) && ne.Timeout():
		c.reply(421, "4.4.2", "idle too long, closing connection")
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return "client closed"
	default:
		return "read error: " + err.Error()
	}
}

var errLineTooLong = errors.New("line too long")

// readCommand reads one command line (without CRLF). Pending replies are
// flushed first unless more pipelined input is already buffered, so a
// pipelined group of commands costs one write.
func (c *conn) readCommand(timeout time.Duration) (string, error) {
	if c.br.Buffered() == 0 {
		if err := c.flush(); err != nil {
			return "", err
		}
		c.nc.SetReadDeadline(time.Now().Add(timeout))
		if c.closing.Load() {
			return "", errors.New("shutdown")
		}
		c.stressDeadline(timeout)
	}
	max := c.s.cfg.Limits.MaxLineLength
	var buf []byte
	for {
		chunk, err := c.br.ReadSlice('\n')
		if len(buf)+len(chunk) > max+2 {
			return "", errLineTooLong
		}
		if err == bufio.ErrBufferFull {
			buf = append(buf, chunk...)
			continue
		}
		if err != nil {
			return "", err
		}
		if buf != nil {
			buf = append(buf, chunk...)
			chunk = buf
		}
		line := bytes.TrimRight(chunk, "\r\n")
		return string(line), nil
	}
}

func (c *conn) flush() error {
	if c.bw.Buffered() == 0 {
		return nil
	}
	return c.bw.Flush()
}

// reply queues a reply; multi-line text is split on '\n'. enhanced may be "".
func (c *conn) reply(code int, enhanced, text string) {
	if code >= 400 {
		// Negative replies go into the trace; positive ones are implied by
		// the next step and would double the log volume of every message.
		c.log.Info("reply", "code", code, "line", strconv.Itoa(code)+" "+enhanced+" "+text)
	}
	c.write(code, enhanced, text)
}

// write queues a reply without logging it (the caller logged a decision
// line that carries it).
func (c *conn) write(code int, enhanced, text string) {
	lines := strings.Split(text, "\n")
	cs := strconv.Itoa(code)
	for i, l := range lines {
		c.bw.WriteString(cs)
		if i < len(lines)-1 {
			c.bw.WriteByte('-')
		} else {
			c.bw.WriteByte(' ')
		}
		if enhanced != "" {
			c.bw.WriteString(enhanced)
			c.bw.WriteByte(' ')
		}
		c.bw.WriteString(l)
		c.bw.WriteString("\r\n")
	}
}

// reject sends a negative reply for a rule, counts it toward the error
// limit, logs the decision and bumps the rule's metric.
func (c *conn) reject(rule string, code int, enhanced, reason string, attrs ...any) {
	c.errors++
	c.s.d.Metrics.Rejected.WithLabelValues(rule).Inc()
	if k := forgery.KindOfAttrs(rule, attrs, c.isLocalDomain); k != "" {
		c.s.d.Metrics.Forgery.WithLabelValues(k).Inc()
	}
	text := reason + " [" + c.id + "]"
	// One line per refusal: the decision carries the reply sent.
	c.log.Info("decision", append([]any{"rule", rule, "code", code, "enhanced", enhanced, "reason", reason,
		"line", strconv.Itoa(code) + " " + enhanced + " " + text}, attrs...)...)
	c.write(code, enhanced, text)
}

// isLocalDomain reports whether domain is one of ours (the forgery
// metric counts DMARC failures of our domains only).
func (c *conn) isLocalDomain(domain string) bool { return c.s.d.Policy.Domains().Local[domain] }

// tooManyErrors closes the session once the error allowance is spent.
func (c *conn) tooManyErrors() error {
	if c.errors >= c.maxErrors() {
		c.s.d.Metrics.Rejected.WithLabelValues("limit.errors").Inc()
		text := "too many errors, closing connection [" + c.id + "]"
		c.log.Info("decision", "rule", "limit.errors", "code", 421, "enhanced", "4.7.0", "reason", "too many errors",
			"errors", c.errors, "line", "421 4.7.0 "+text)
		c.write(421, "4.7.0", text)
		return errors.New("too many errors")
	}
	return nil
}

// knownCommands are the label values for the command metric.
var knownCommands = map[string]bool{"HELO": true, "EHLO": true, "MAIL": true, "RCPT": true, "DATA": true, "RSET": true,
	"NOOP": true, "QUIT": true, "VRFY": true, "EXPN": true, "HELP": true, "AUTH": true, "STARTTLS": true, "BDAT": true}

// httpVerbs end the session at once: a browser or proxy talking HTTP to the
// SMTP port (cross-protocol attacks) gets nothing to work with.
var httpVerbs = map[string]bool{"GET": true, "POST": true, "HEAD": true, "PUT": true, "CONNECT": true,
	"OPTIONS": true, "DELETE": true, "PATCH": true, "TRACE": true}

func (c *conn) dispatch(line string) error {
	verb, arg, _ := strings.Cut(line, " ")
	verb = strings.ToUpper(verb)
	arg = strings.TrimSpace(arg)
	label := verb
	if !knownCommands[verb] {
		label = "other"
	}
	c.s.d.Metrics.Commands.WithLabelValues(string(c.role), label).Inc()
	logged := line
	if t := strings.ToUpper(strings.TrimSpace(line)); strings.HasPrefix(t, "AUTH") {
		// Whatever follows AUTH may be a credential, however it is spaced.
		mech, _, _ := strings.Cut(arg, " ")
		if verb != "AUTH" || hasControl(mech) || len(mech) > 20 {
			mech = "?"
		}
		logged = "AUTH " + mech + " [redacted]"
	} else if len(logged) > 256 {
		logged = logged[:256] + "..."
	}
	c.log.Info("cmd", "line", logged)

	if strings.IndexByte(line, 0) >= 0 || hasControl(line) {
		c.reject("protocol.control_chars", 500, "5.5.2", "control characters or NUL in command")
		return c.tooManyErrors()
	}
	switch verb {
	case "EHLO", "HELO":
		return c.cmdHello(verb, arg)
	case "MAIL":
		return c.cmdMail(arg)
	case "RCPT":
		return c.cmdRcpt(arg)
	case "DATA":
		return c.cmdData(arg)
	case "RSET":
		c.resetTx()
		c.reply(250, "2.0.0", "OK")
	case "NOOP":
		c.reply(250, "2.0.0", "OK")
	case "QUIT":
		c.reply(221, "2.0.0", "bye")
		return errClose
	case "VRFY":
		// Law 7 and seed 004: VRFY discloses nothing about accounts.
		c.reply(252, "2.5.0", "cannot verify users, send a message to find out")
	case "EXPN":
		c.reject("protocol.expn", 502, "5.5.1", "EXPN is not available")
		return c.tooManyErrors()
	case "HELP":
		c.reply(214, "2.0.0", "see RFC 5321")
	case "STARTTLS":
		return c.cmdStartTLS(arg)
	case "AUTH":
		return c.cmdAuth(arg)
	default:
		if httpVerbs[verb] {
			c.s.d.Metrics.Rejected.WithLabelValues("protocol.http").Inc()
			c.log.Info("decision", "rule", "protocol.http", "reason", "HTTP request on an SMTP port, closing")
			return errors.New("http verb")
		}
		c.reject("protocol.unknown_command", 500, "5.5.2", "command not recognized")
		return c.tooManyErrors()
	}
	return nil
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < 0x20 && b != '\t' || b == 0x7f {
			return true
		}
	}
	return false
}

func (c *conn) resetTx() {
	c.inMail = false
	c.from = address.Addr{}
	c.rcpts = c.rcpts[:0]
	c.smtputf8 = false
	c.body8bit = false
	c.size = 0
}
