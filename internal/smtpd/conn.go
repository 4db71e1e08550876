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
	"kanmon/internal/listener"
	"kanmon/internal/policy"
	"kanmon/internal/queue"
)

// errClose ends a session after the pending reply is sent.
var errClose = errors.New("close connection")

type rcpt struct {
	addr    address.Addr
	account string // local account, "" for remote
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

func (c *conn) client() policy.Client {
	cl := policy.Client{Authenticated: c.authUser != "", Trusted: c.s.cfg.IsTrusted(c.ip)}
	if c.s.d.PopBefore != nil && (c.role != RoleMX || c.s.d.PopBeforeOnMX) {
		cl.PopBeforeSMTP = c.s.d.PopBefore.Allowed(c.ip)
	}
	return cl
}

func (c *conn) serve() {
	defer c.nc.Close()
	cmdTimeout, _ := c.cfgLimits()
	c.log.Info("connect", "remote", c.nc.RemoteAddr().String())
	if c.role == RoleSMTPS {
		tc := tls.Server(c.nc, c.s.d.TLS)
		tc.SetDeadline(time.Now().Add(cmdTimeout))
		if err := tc.Handshake(); err != nil {
			c.log.Info("disconnect", "reason", "tls handshake failed", "err", err.Error())
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
	c.log.Info("disconnect", "reason", reason, "messages", c.messages, "commands", c.commands,
		"duration_ms", time.Since(c.started).Milliseconds())
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
	text := reason + " [" + c.id + "]"
	// One line per refusal: the decision carries the reply sent.
	c.log.Info("decision", append([]any{"rule", rule, "code", code, "enhanced", enhanced, "reason", reason,
		"line", strconv.Itoa(code) + " " + enhanced + " " + text}, attrs...)...)
	c.write(code, enhanced, text)
}

// tooManyErrors closes the session once the error allowance is spent.
func (c *conn) tooManyErrors() error {
	if c.errors >= c.maxErrors() {
		c.s.d.Metrics.Rejected.WithLabelValues("limit.errors").Inc()
		text := "too many errors, closing connection [" + c.id + "]"
		c.log.Info("decision", "rule", "limit.errors", "code", 421, "enhanced", "4.7.0", "errors", c.errors,
			"line", "421 4.7.0 "+text)
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

func (c *conn) cmdHello(verb, arg string) error {
	host, _, _ := strings.Cut(arg, " ")
	if host == "" || !validHelo(host) {
		c.reject("protocol.helo_syntax", 501, "5.5.4", verb+" needs your host name or address literal")
		return c.tooManyErrors()
	}
	c.resetTx()
	c.helo = host
	c.esmtp = verb == "EHLO"
	if !c.esmtp {
		c.reply(250, "", c.s.cfg.Hostname)
		return nil
	}
	ext := []string{c.s.cfg.Hostname, "PIPELINING", "SIZE " + strconv.FormatInt(int64(c.s.cfg.Limits.MaxMessageSize), 10),
		"8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8"}
	if c.tls == nil && c.s.d.TLS != nil && c.role != RoleLocal {
		ext = append(ext, "STARTTLS")
	}
	if c.authOffered() {
		ext = append(ext, "AUTH PLAIN LOGIN")
	}
	c.reply(250, "", strings.Join(ext, "\n"))
	return nil
}

// validHelo accepts a host name or address literal made of printable ASCII;
// it is only ever logged and written into Received, never trusted.
func validHelo(h string) bool {
	if len(h) > 255 {
		return false
	}
	for i := 0; i < len(h); i++ {
		if h[i] <= ' ' || h[i] >= 0x7f || h[i] == '(' || h[i] == ')' || h[i] == ';' || h[i] == '\\' {
			return false
		}
	}
	return true
}

// authOffered: AUTH only on submission and smtps, and only over TLS.
func (c *conn) authOffered() bool {
	return c.role != RoleMX && c.role != RoleLocal && c.tls != nil && c.authUser == ""
}

func (c *conn) cmdStartTLS(arg string) error {
	if c.tls != nil {
		c.reject("protocol.tls_active", 503, "5.5.1", "TLS is already active")
		return c.tooManyErrors()
	}
	if c.s.d.TLS == nil || c.role == RoleLocal {
		c.reject("protocol.no_tls", 502, "5.5.1", "STARTTLS not available")
		return c.tooManyErrors()
	}
	if arg != "" {
		c.reject("protocol.syntax", 501, "5.5.4", "STARTTLS takes no argument")
		return c.tooManyErrors()
	}
	if c.br.Buffered() > 0 {
		// Commands pipelined after STARTTLS would be taken as if they came
		// over TLS (CVE-2011-0411): refuse and close.
		c.reject("protocol.starttls_injection", 554, "5.5.1", "commands after STARTTLS before the handshake, closing")
		return errors.New("starttls injection")
	}
	c.reply(220, "2.0.0", "ready to start TLS")
	if err := c.flush(); err != nil {
		return err
	}
	cmdTimeout, _ := c.cfgLimits()
	tc := tls.Server(c.nc, c.s.d.TLS)
	tc.SetDeadline(time.Now().Add(cmdTimeout))
	if err := tc.Handshake(); err != nil {
		c.log.Info("tls", "err", err.Error())
		return errors.New("tls handshake failed")
	}
	tc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	c.tls = &st
	c.nc = tc
	c.br.Reset(tc)
	c.bw.Reset(deadlineWriter{c})
	// RFC 3207: forget everything learnt before TLS.
	c.helo, c.esmtp, c.authUser = "", false, ""
	c.resetTx()
	c.log.Info("tls", "tls", tlsDesc(&st))
	return nil
}

func tlsDesc(st *tls.ConnectionState) string {
	return tls.VersionName(st.Version) + " " + tls.CipherSuiteName(st.CipherSuite)
}

// splitPath splits `<path> params` (after "FROM:" / "TO:").
func splitPath(arg string) (path, params string, ok bool) {
	arg = strings.TrimLeft(arg, " ")
	if !strings.HasPrefix(arg, "<") {
		return "", "", false
	}
	inQuote := false
	for i := 1; i < len(arg); i++ {
		switch arg[i] {
		case '\\':
			if inQuote {
				i++
			}
		case '"':
			inQuote = !inQuote
		case '>':
			if !inQuote {
				return arg[:i+1], strings.TrimSpace(arg[i+1:]), true
			}
		}
	}
	return "", "", false
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

func (c *conn) cmdMail(arg string) error {
	if c.helo == "" {
		c.reject("protocol.sequence", 503, "5.5.1", "send EHLO first")
		return c.tooManyErrors()
	}
	if c.inMail {
		c.reject("protocol.sequence", 503, "5.5.1", "nested MAIL command")
		return c.tooManyErrors()
	}
	rest, ok := cutPrefixFold(arg, "FROM:")
	path, params, ok2 := splitPath(rest)
	if !ok || !ok2 {
		c.reject("protocol.syntax", 501, "5.5.4", "syntax: MAIL FROM:<address>")
		return c.tooManyErrors()
	}
	utf8 := false
	body8 := false
	var size int64
	for _, p := range strings.Fields(params) {
		k, v, _ := strings.Cut(p, "=")
		switch strings.ToUpper(k) {
		case "SIZE":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				c.reject("protocol.syntax", 501, "5.5.4", "SIZE needs a number")
				return c.tooManyErrors()
			}
			size = n
		case "BODY":
			switch strings.ToUpper(v) {
			case "7BIT":
			case "8BITMIME":
				body8 = true
			default:
				c.reject("protocol.syntax", 501, "5.5.4", "BODY must be 7BIT or 8BITMIME")
				return c.tooManyErrors()
			}
		case "SMTPUTF8":
			utf8 = true
		case "AUTH":
			// RFC 4954 AUTH= is informational; we ignore it (never trusted).
		default:
			c.reject("protocol.syntax", 555, "5.5.4", "unsupported MAIL parameter "+strings.ToUpper(k))
			return c.tooManyErrors()
		}
	}
	if size > int64(c.s.cfg.Limits.MaxMessageSize) {
		c.reject("limit.message_size", 552, "5.3.4", "message too big: the limit is "+strconv.FormatInt(int64(c.s.cfg.Limits.MaxMessageSize), 10)+" octets")
		return c.tooManyErrors()
	}
	from, err := address.ParseReversePath(path, utf8)
	if err != nil {
		var ae *address.Error
		if errors.As(err, &ae) {
			c.reject("address.syntax", ae.Code, ae.Enhanced, "sender "+ae.Reason)
		} else {
			c.reject("address.syntax", 501, "5.1.7", "bad sender address syntax")
		}
		return c.tooManyErrors()
	}
	if err := c.s.d.Spool.CheckSpace(size); err != nil {
		c.reject("queue.full", 452, "4.3.1", "insufficient system storage, try again later", "err", err.Error())
		return c.tooManyErrors()
	}
	sess := &policy.Session{Client: c.client(), Listener: string(c.role), AuthUser: c.authUser}
	if v := c.s.d.Policy.Mail(sess, from); !v.Accept {
		c.reject(v.Rule, v.Code, v.Enhanced, v.Reason, "addr", from.String())
		return c.tooManyErrors()
	}
	c.inMail = true
	c.from = from
	c.smtputf8 = utf8
	c.body8bit = body8
	c.size = size
	c.reply(250, "2.1.0", "sender OK")
	return nil
}

func (c *conn) cmdRcpt(arg string) error {
	if !c.inMail {
		c.reject("protocol.sequence", 503, "5.5.1", "send MAIL first")
		return c.tooManyErrors()
	}
	rest, ok := cutPrefixFold(arg, "TO:")
	if r := strings.TrimSpace(rest); len(r) >= 12 && strings.EqualFold(r[:12], "<postmaster>") && len(c.s.cfg.Domains) > 0 {
		// RFC 5321 4.5.1: "RCPT TO:<Postmaster>" without a domain must be
		// accepted; it means the postmaster of our first domain.
		rest = "<postmaster@" + c.s.cfg.Domains[0] + ">" + r[12:]
	}
	path, params, ok2 := splitPath(rest)
	if !ok || !ok2 {
		c.reject("protocol.syntax", 501, "5.5.4", "syntax: RCPT TO:<address>")
		return c.tooManyErrors()
	}
	if params != "" {
		k, _, _ := strings.Cut(params, "=")
		c.reject("protocol.syntax", 555, "5.5.4", "unsupported RCPT parameter "+strings.ToUpper(k))
		return c.tooManyErrors()
	}
	if len(c.rcpts) >= c.s.cfg.Limits.MaxRecipients {
		c.reject("limit.recipients", 452, "4.5.3", "too many recipients: send the rest in another message")
		return c.tooManyErrors()
	}
	to, err := address.Parse(path, c.smtputf8)
	if err != nil {
		var ae *address.Error
		if errors.As(err, &ae) {
			c.reject("address.syntax", ae.Code, ae.Enhanced, "recipient "+ae.Reason)
		} else {
			c.reject("address.syntax", 501, "5.1.3", "bad recipient address syntax")
		}
		return c.tooManyErrors()
	}
	sess := &policy.Session{Client: c.client(), Listener: string(c.role), AuthUser: c.authUser, Size: c.size}
	v, account := c.s.d.Policy.Rcpt(sess, to)
	if !v.Accept {
		c.reject(v.Rule, v.Code, v.Enhanced, v.Reason, "addr", to.String(), "from", c.from.String())
		return c.tooManyErrors()
	}
	if prev, dup := c.duplicate(to, account); dup {
		// One copy per mailbox per message: a repeated recipient, or
		// another alias of the same account, is answered 250 as other
		// MTAs do, but adds no second recipient.
		c.log.Info("decision", "rule", "rcpt.duplicate", "code", 250, "addr", to.String(), "account", account, "same_as", prev)
		c.reply(250, "2.1.5", "recipient OK (already a recipient of this message)")
		return nil
	}
	c.log.Info("decision", "rule", v.Rule, "code", 250, "addr", to.String())
	c.rcpts = append(c.rcpts, rcpt{addr: to, account: account})
	c.reply(250, "2.1.5", "recipient OK")
	return nil
}

// duplicate reports whether the transaction already has a recipient for
// the same mailbox: the same local account (whatever address or alias
// named it), or the same remote address. It returns that recipient.
func (c *conn) duplicate(to address.Addr, account string) (string, bool) {
	for _, r := range c.rcpts {
		if account != "" && r.account == account || account == "" && r.account == "" && r.addr == to {
			return r.addr.String(), true
		}
	}
	return "", false
}

func (c *conn) origin() queue.Origin {
	cl := c.client()
	switch {
	case cl.Authenticated:
		return queue.OriginAuthenticated
	case cl.Trusted:
		return queue.OriginTrusted
	case cl.PopBeforeSMTP:
		return queue.OriginPopBeforeSMTP
	}
	return queue.OriginInbound
}

func (c *conn) cmdData(arg string) error {
	if arg != "" {
		c.reject("protocol.syntax", 501, "5.5.4", "DATA takes no argument")
		return c.tooManyErrors()
	}
	if !c.inMail {
		c.reject("protocol.sequence", 503, "5.5.1", "send MAIL first")
		return c.tooManyErrors()
	}
	if len(c.rcpts) == 0 {
		c.reject("protocol.sequence", 554, "5.5.1", "no valid recipients")
		return c.tooManyErrors()
	}
	if err := c.s.d.Spool.CheckSpace(0); err != nil {
		c.reject("queue.full", 452, "4.3.1", "insufficient system storage, try again later", "err", err.Error())
		c.resetTx()
		return c.tooManyErrors()
	}
	env := queue.Envelope{
		From: c.from.String(), Received: time.Now().UTC(), Origin: c.origin(), AuthUser: c.authUser,
		ClientIP: c.clientIP(), ConnID: c.id, Listener: string(c.role), SMTPUTF8: c.smtputf8, Body8Bit: c.body8bit,
	}
	if c.from.IsNull() {
		env.From = ""
	}
	for _, r := range c.rcpts {
		env.Recipients = append(env.Recipients, queue.Recipient{Addr: r.addr.String(), Account: r.account})
	}
	w, err := c.s.d.Spool.Create(env)
	if err != nil {
		code, enh, reason := 451, "4.3.0", "local error in processing, try again later"
		if queue.IsNoSpace(err) {
			code, enh, reason = 452, "4.3.1", "insufficient system storage, try again later"
		}
		c.reject("queue.error", code, enh, reason, "err", err.Error())
		c.resetTx()
		return c.tooManyErrors()
	}
	c.reply(354, "", "end data with <CR><LF>.<CR><LF>")
	c.inTx.Store(true)
	defer c.inTx.Store(false)
	if err := c.flush(); err != nil {
		w.Abort()
		return err
	}
	_, dataTimeout := c.cfgLimits()
	c.nc.SetReadDeadline(time.Now().Add(dataTimeout))

	w.Write(c.receivedHeader(w.ID()))
	res := c.readData(w)
	if res.ioErr != nil {
		// The client is gone or too slow: nothing was acknowledged.
		w.Abort()
		c.resetTx()
		return res.ioErr
	}
	switch {
	case res.nul:
		w.Abort()
		c.reject("data.nul", 554, "5.6.0", "NUL character in message: not allowed in Internet mail (RFC 5322)")
	case res.bareLF:
		w.Abort()
		c.reject("data.bare_lf", 554, "5.5.2", "bare CR or LF in message: SMTP requires CRLF line endings")
	case res.tooBig:
		w.Abort()
		c.reject("limit.message_size", 552, "5.3.4", "message too big: the limit is "+strconv.FormatInt(int64(c.s.cfg.Limits.MaxMessageSize), 10)+" octets")
	case res.longLine:
		w.Abort()
		c.reject("limit.data_line_length", 500, "5.5.2", "a line of the message is longer than "+strconv.Itoa(c.s.cfg.Limits.MaxDataLineLength)+" octets")
	default:
		if err := w.Commit(); err != nil {
			code, enh, reason := 451, "4.3.0", "local error in processing, try again later"
			if queue.IsNoSpace(err) {
				code, enh, reason = 452, "4.3.1", "insufficient system storage, try again later"
			}
			c.reject("queue.error", code, enh, reason, "err", err.Error())
			break
		}
		c.messages++
		for _, r := range c.rcpts {
			c.s.d.Policy.Charge(r.account, w.Size())
		}
		c.s.d.Metrics.Accepted.WithLabelValues(string(c.role)).Inc()
		c.s.d.Metrics.AcceptedBytes.Add(float64(w.Size()))
		rcpts := make([]string, len(env.Recipients))
		for i, r := range env.Recipients {
			rcpts[i] = r.Addr
		}
		c.log.Info("queued", "queue_id", w.ID(), "from", env.From, "rcpts", rcpts, "size", w.Size(),
			"message_id", res.messageID, "origin", string(env.Origin))
		c.reply(250, "2.0.0", "OK queued as "+w.ID())
		if c.s.d.Scheduler != nil {
			c.s.d.Scheduler.Enqueue(w.Envelope())
		}
	}
	c.resetTx()
	return c.tooManyErrors()
}

// clientIP is the client address recorded in the envelope ("local" for
// the sendmail socket).
func (c *conn) clientIP() string {
	if c.role == RoleLocal {
		return "local"
	}
	return c.ip.String()
}

// identifyLocal authenticates a RoleLocal session as the address mapped
// to the peer's Unix user. The uid comes from the kernel (SO_PEERCRED);
// nothing the client sends can change it. It reports false, after
// answering and closing, when the user may not send.
func (c *conn) identifyLocal() bool {
	refuse := func(rule, reason string, attrs ...any) bool {
		c.s.d.Metrics.Rejected.WithLabelValues(rule).Inc()
		c.log.Info("decision", append([]any{"rule", rule, "code", 554, "enhanced", "5.7.1", "reason", reason}, attrs...)...)
		c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c.nc, "554 5.7.1 "+reason+" ["+c.id+"]\r\n")
		c.nc.Close()
		return false
	}
	uid, err := peerUID(c.nc)
	if err != nil {
		return refuse("local.peer_unknown", "cannot identify the local user", "err", err.Error())
	}
	var user, addr string
	if c.s.d.LocalIdentity != nil {
		user, addr = c.s.d.LocalIdentity(uid)
	}
	if addr == "" {
		return refuse("local.user_not_allowed", "local user "+user+" (uid "+strconv.FormatUint(uint64(uid), 10)+
			") has no sending address: add it to [sendmail] users or set default_domain", "uid", uid, "user", user)
	}
	c.authUser = addr
	c.local = "user " + user + " uid " + strconv.FormatUint(uint64(uid), 10)
	c.log.Info("auth", "method", "peercred", "uid", uid, "user", user, "account", addr)
	return true
}
