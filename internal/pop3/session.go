package pop3

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"kanmon/internal/auth"
	"kanmon/internal/directory"
	"kanmon/internal/maildir"
)

// Errors that end a session; their text is the disconnect reason.
var (
	errQuit        = errors.New("quit")
	errClose       = errors.New("closed by server")
	errLineTooLong = errors.New("line too long")
	errShutdown    = errors.New("server shutdown")
)

// session is one POP3 connection.
type session struct {
	srv    *Server
	raw    net.Conn // the accepted connection (deadlines, forced close)
	conn   net.Conn // raw, or the TLS connection over it
	id     string
	ip     netip.Addr
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	br     *bufio.Reader
	bw     *bufio.Writer
	msgBuf *bufio.Reader // streams message files, allocated on first use

	tls      bool
	loggedIn atomic.Bool // TRANSACTION state; read by Shutdown

	user    string // from USER, until PASS
	account string
	mailbox maildir.Dir
	lockKey string // mailbox path held in mailboxLocks
	msgs    []maildir.Message
	deleted []bool
	ndel    int
	delSize int64
	size    int64 // all messages

	commands  int
	errors    int
	retrieved int
	removed   int
	bytesOut  int64
	started   time.Time
}

func newSession(srv *Server, c net.Conn, id string, ip netip.Addr, log *slog.Logger) *session {
	ctx, cancel := context.WithCancel(srv.baseCtx)
	s := &session{srv: srv, raw: c, conn: c, id: id, ip: ip, log: log, ctx: ctx, cancel: cancel, started: time.Now()}
	s.br = bufio.NewReaderSize(c, srv.cfg.MaxLineLength)
	s.bw = bufio.NewWriterSize(timeoutWriter{s}, 16*1024)
	return s
}

// timeoutWriter gives every write to the client IdleTimeout to progress,
// so a client that stops reading cannot hold a session forever.
type timeoutWriter struct{ s *session }

func (w timeoutWriter) Write(p []byte) (int, error) {
	w.s.raw.SetWriteDeadline(time.Now().Add(w.s.srv.cfg.IdleTimeout))
	return w.s.conn.Write(p)
}

// interrupt is called by Shutdown: a session that has not logged in ends
// at once; a logged-in one goes on until QUIT or the Shutdown deadline.
func (s *session) interrupt() {
	if !s.loggedIn.Load() {
		s.raw.SetReadDeadline(time.Now())
	}
}

func tlsDesc(st tls.ConnectionState) string {
	return tls.VersionName(st.Version) + " " + tls.CipherSuiteName(st.CipherSuite)
}

// serve runs the dialogue and closes the connection. The mailbox lock
// is released in any case (deferred), but the close is not deferred:
// after a panic the listener has the client told (goodbye) over the open
// connection, then closes it.
func (s *session) serve() {
	defer s.cancel()
	defer func() {
		if s.lockKey != "" {
			unlockMailbox(s.lockKey, s.id)
		}
	}()
	s.dialogue()
	s.conn.Close()
}

// goodbye answers a session that panicked (listener.Session.Goodbye):
// replies still buffered are dropped, the client gets -ERR [SYS/TEMP]
// with the connection id, and nothing it marked for deletion is deleted.
func (s *session) goodbye() {
	line := "-ERR [SYS/TEMP] Internal error, closing connection (" + s.id + ")"
	s.log.Info("reply", "line", line)
	s.bw.Reset(s.conn)
	s.bw.WriteString(line + "\r\n")
	s.bw.Flush()
	s.conn.Close()
}

// dialogue greets the client and serves its commands until the session
// ends.
func (s *session) dialogue() {
	s.log.Info("connect", "remote", s.raw.RemoteAddr().String())
	reason := "quit"
	if tc, ok := s.raw.(*tls.Conn); ok {
		if err := s.handshake(tc); err != nil {
			s.log.Info("disconnect", "remote", s.raw.RemoteAddr().String(), "reason", "tls handshake failed", "err", err.Error(),
				"duration_ms", time.Since(s.started).Milliseconds())
			return
		}
	}
	s.reply("+OK " + s.srv.cfg.Hostname + " POP3 server ready (" + s.id + ")")
	for {
		line, err := s.readLine()
		if err != nil {
			reason = s.readFailed(err)
			break
		}
		s.commands++
		if err := s.dispatch(line); err != nil {
			reason = err.Error()
			break
		}
		if s.commands >= s.commandLimit() {
			s.refuse("limit.commands", "-ERR [SYS/TEMP] Too many commands in one session, reconnect ("+s.id+")")
			reason = "too many commands"
			break
		}
	}
	s.flush()
	attrs := []any{"remote", s.raw.RemoteAddr().String(), "reason", reason}
	if s.account != "" {
		attrs = append(attrs, "user", s.account)
	}
	s.log.Info("disconnect", append(attrs, "commands", s.commands, "retrieved", s.retrieved, "deleted", s.removed,
		"bytes_out", s.bytesOut, "duration_ms", time.Since(s.started).Milliseconds())...)
}

// handshake completes a TLS handshake (implicit TLS or after STLS).
func (s *session) handshake(tc *tls.Conn) error {
	s.raw.SetDeadline(time.Now().Add(min(handshakeTimeout, max(s.srv.cfg.IdleTimeout, time.Second))))
	err := tc.HandshakeContext(s.ctx)
	s.raw.SetDeadline(time.Time{})
	if err != nil {
		return err
	}
	s.conn = tc
	s.tls = true
	s.br.Reset(tc)
	s.bw.Reset(timeoutWriter{s})
	s.log.Info("tls", "tls", tlsDesc(tc.ConnectionState()))
	return nil
}

func (s *session) commandLimit() int {
	return s.srv.cfg.MaxCommands + commandsPerMessage*len(s.msgs)
}

// readLine reads one line, CRLF included. Pending replies are flushed
// first unless pipelined input is already buffered, so a pipelined burst
// of commands is answered with few writes.
func (s *session) readLine() ([]byte, error) {
	if s.br.Buffered() == 0 {
		if err := s.flush(); err != nil {
			return nil, err
		}
	}
	s.raw.SetReadDeadline(time.Now().Add(s.srv.cfg.IdleTimeout))
	// Checked after setting the deadline: Shutdown sets closing, then
	// expires the deadline of sessions not logged in, so one of the two
	// catches this session.
	if s.srv.closing.Load() && !s.loggedIn.Load() {
		return nil, errShutdown
	}
	line, err := s.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, errLineTooLong
	}
	if err != nil {
		return nil, err
	}
	return line, nil
}

func (s *session) readFailed(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, errLineTooLong):
		s.refuse("protocol.line_too_long", "-ERR Line too long (limit "+strconv.Itoa(s.srv.cfg.MaxLineLength)+" octets), closing ("+s.id+")")
		return "line too long"
	case s.srv.closing.Load() && (errors.Is(err, errShutdown) || errors.As(err, &ne) && ne.Timeout()):
		s.reply("-ERR [SYS/TEMP] Server shutting down, try again later")
		return "server shutdown"
	case errors.As(err, &ne) && ne.Timeout():
		s.reply("-ERR Idle too long, closing (autologout)")
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return "client closed"
	default:
		return "read error: " + err.Error()
	}
}

func (s *session) flush() error {
	if s.bw.Buffered() == 0 {
		return nil
	}
	return s.bw.Flush()
}

// reply writes one response line and logs it.
func (s *session) reply(line string) {
	s.bw.WriteString(line)
	s.bw.WriteString("\r\n")
	s.log.Info("reply", "line", line, "ok", strings.HasPrefix(line, "+"))
}

// fail answers a refused command and counts it toward MaxErrors; past the
// limit the session is closed.
func (s *session) fail(line string) error {
	s.reply(line)
	s.errors++
	if s.errors >= s.srv.cfg.MaxErrors {
		s.refuse("limit.errors", "-ERR Too many errors, closing ("+s.id+")")
		return errClose
	}
	return nil
}

// refuse sends a final refusal and logs the decision.
func (s *session) refuse(rule, line string) {
	s.log.Info("decision", "rule", rule, "reason", line)
	s.reply(line)
}

// authAllowed reports whether credentials may be sent now.
func (s *session) authAllowed() bool { return s.tls || s.srv.cfg.AllowPlaintextAuth }

func (s *session) plaintextRefused() string {
	if s.srv.cfg.TLS != nil {
		return "-ERR [AUTH] Plaintext authentication is disabled on unencrypted connections; use STLS first"
	}
	return "-ERR [AUTH] Plaintext authentication is disabled on unencrypted connections; use the POP3S port"
}

var httpVerbs = map[string]bool{"GET": true, "POST": true, "PUT": true, "HEAD": true, "CONNECT": true,
	"OPTIONS": true, "DELETE": true, "PATCH": true, "TRACE": true}

func (s *session) dispatch(line []byte) error {
	s.log.Info("cmd", "line", logLine(line))
	cmd, err := parseCommand(line)
	if err != nil {
		return s.fail("-ERR Malformed command")
	}
	if httpVerbs[cmd.verb] {
		s.refuse("protocol.http", "-ERR This is a POP3 server, closing ("+s.id+")")
		return errClose
	}
	switch cmd.verb {
	case "CAPA":
		return s.cmdCapa()
	case "QUIT":
		return s.cmdQuit()
	}
	if !s.loggedIn.Load() {
		switch cmd.verb {
		case "STLS":
			return s.cmdSTLS(cmd)
		case "USER":
			return s.cmdUser(cmd)
		case "PASS":
			return s.cmdPass(cmd)
		case "AUTH":
			return s.cmdAuth(cmd)
		case "APOP":
			return s.fail("-ERR APOP is not supported; use USER/PASS or AUTH PLAIN over TLS")
		case "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL":
			return s.fail("-ERR Log in first")
		}
		return s.fail("-ERR Unknown command")
	}
	switch cmd.verb {
	case "STAT":
		return s.cmdStat(cmd)
	case "LIST":
		return s.cmdList(cmd, false)
	case "UIDL":
		return s.cmdList(cmd, true)
	case "RETR":
		return s.cmdRetr(cmd, false)
	case "TOP":
		return s.cmdRetr(cmd, true)
	case "DELE":
		return s.cmdDele(cmd)
	case "NOOP":
		if len(cmd.args) != 0 {
			return s.fail("-ERR NOOP takes no arguments")
		}
		s.reply("+OK")
		return nil
	case "RSET":
		return s.cmdRset(cmd)
	case "STLS", "USER", "PASS", "AUTH", "APOP":
		return s.fail("-ERR Already logged in")
	}
	return s.fail("-ERR Unknown command")
}

func (s *session) cmdCapa() error {
	caps := []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"}
	if !s.loggedIn.Load() {
		if !s.tls && s.srv.cfg.TLS != nil {
			caps = append(caps, "STLS")
		}
		if s.authAllowed() {
			caps = append(caps, "USER", "SASL PLAIN")
		}
	}
	s.multi("+OK Capability list follows", caps)
	return nil
}

// multi sends a multi-line response of short lines (none starts with ".").
func (s *session) multi(first string, lines []string) {
	s.bw.WriteString(first)
	s.bw.WriteString("\r\n")
	for _, l := range lines {
		s.bw.WriteString(l)
		s.bw.WriteString("\r\n")
	}
	s.bw.WriteString(".\r\n")
	s.log.Info("reply", "line", first, "ok", true, "lines", len(lines))
}

func (s *session) cmdQuit() error {
	if !s.loggedIn.Load() {
		s.reply("+OK Bye")
		return errQuit
	}
	// UPDATE state.
	var keys []string
	for i, d := range s.deleted {
		if d {
			keys = append(keys, s.msgs[i].Key)
		}
	}
	if err := s.mailbox.Remove(keys); err != nil {
		s.log.Error("update", "user", s.account, "err", err.Error())
		s.reply("-ERR [SYS/TEMP] Some deleted messages were not removed (" + s.id + ")")
		return errQuit
	}
	s.removed = len(keys)
	s.reply("+OK Bye, " + strconv.Itoa(len(keys)) + " messages deleted")
	return errQuit
}

func (s *session) cmdSTLS(cmd command) error {
	switch {
	case len(cmd.args) != 0:
		return s.fail("-ERR STLS takes no arguments")
	case s.tls:
		return s.fail("-ERR Already using TLS")
	case s.srv.cfg.TLS == nil:
		return s.fail("-ERR STLS not available")
	case s.br.Buffered() > 0:
		// Commands pipelined after STLS were sent in clear and could be
		// injected by a man in the middle (CVE-2011-0411's class of bug):
		// never carry them into the TLS session.
		s.refuse("protocol.stls_pipelining", "-ERR Commands after STLS before the TLS handshake, closing ("+s.id+")")
		return errClose
	}
	s.reply("+OK Begin TLS negotiation")
	if err := s.flush(); err != nil {
		return err
	}
	if err := s.handshake(tls.Server(s.raw, s.srv.cfg.TLS)); err != nil {
		return errors.New("tls handshake failed: " + err.Error())
	}
	s.user = "" // RFC 2595: forget anything said in clear
	return nil
}

func (s *session) cmdUser(cmd command) error {
	if !s.authAllowed() {
		s.log.Info("auth", "remote", s.raw.RemoteAddr().String(), "user", truncate(cmd.rest, 100), "mech", "USER", "ok", false, "rule", "auth.plaintext_refused")
		return s.fail(s.plaintextRefused())
	}
	name := strings.TrimSpace(cmd.rest)
	if name == "" || len(name) > 255 {
		return s.fail("-ERR USER needs a user name")
	}
	s.user = name
	s.reply("+OK Send PASS")
	return nil
}

func (s *session) cmdPass(cmd command) error {
	if !s.authAllowed() {
		s.log.Info("auth", "remote", s.raw.RemoteAddr().String(), "user", truncate(s.user, 100), "mech", "USER", "ok", false, "rule", "auth.plaintext_refused")
		return s.fail(s.plaintextRefused())
	}
	if s.user == "" {
		return s.fail("-ERR Send USER first")
	}
	user := s.user
	s.user = ""
	if cmd.rest == "" {
		return s.fail("-ERR PASS needs a password")
	}
	return s.login("USER", user, cmd.rest)
}

// cmdAuth implements RFC 5034 AUTH with the PLAIN mechanism (RFC 4616).
// "AUTH" alone lists the mechanisms, as some clients expect.
func (s *session) cmdAuth(cmd command) error {
	if !s.authAllowed() {
		s.log.Info("auth", "remote", s.raw.RemoteAddr().String(), "mech", "SASL", "ok", false, "rule", "auth.plaintext_refused")
		return s.fail(s.plaintextRefused())
	}
	if len(cmd.args) == 0 {
		s.multi("+OK SASL mechanisms follow", []string{"PLAIN"})
		return nil
	}
	if len(cmd.args) > 2 {
		return s.fail("-ERR Malformed AUTH command")
	}
	if !strings.EqualFold(cmd.args[0], "PLAIN") {
		return s.fail("-ERR Unsupported SASL mechanism; PLAIN is offered")
	}
	var resp string
	if len(cmd.args) == 2 {
		resp = cmd.args[1]
		if resp == "=" {
			resp = ""
		}
	} else {
		s.reply("+ ")
		line, err := s.readLine()
		if err != nil {
			return errors.New(s.readFailed(err))
		}
		s.commands++
		s.log.Info("cmd", "line", "[redacted]")
		resp = strings.TrimRight(string(line), "\r\n")
		if resp == "*" {
			return s.fail("-ERR Authentication cancelled")
		}
	}
	data, err := base64.StdEncoding.DecodeString(resp)
	if err != nil {
		s.log.Info("auth", "remote", s.raw.RemoteAddr().String(), "mech", "PLAIN", "ok", false, "rule", "auth.malformed")
		return s.fail("-ERR [AUTH] Malformed SASL response")
	}
	identity, user, password, ok := parsePlain(data)
	rule, text := "", ""
	switch {
	case !ok:
		rule, text = "auth.malformed", "-ERR [AUTH] Malformed SASL PLAIN response"
	case identity != "" && !strings.EqualFold(strings.TrimSpace(identity), strings.TrimSpace(user)):
		rule, text = "auth.authzid", "-ERR [AUTH] Logging in as another user is not supported"
	default:
		return s.login("PLAIN", user, password)
	}
	s.log.Info("auth", "remote", s.raw.RemoteAddr().String(), "user", truncate(user, 100), "mech", "PLAIN", "ok", false, "rule", rule)
	return s.fail(text)
}

// parsePlain splits an RFC 4616 PLAIN message: authzid NUL authcid NUL
// passwd, the last two not empty.
func parsePlain(b []byte) (identity, user, password string, ok bool) {
	parts := strings.Split(string(b), "\x00")
	if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// login verifies credentials, takes the mailbox lock and lists the
// mailbox: the move from AUTHORIZATION to TRANSACTION.
func (s *session) login(mech, user, password string) error {
	remote := s.raw.RemoteAddr().String()
	logUser := truncate(user, 100)
	account, err := s.srv.cfg.Auth.Authenticate(s.ctx, user, password, s.ip)
	switch {
	case errors.Is(err, auth.ErrThrottled):
		s.log.Info("auth", "remote", remote, "user", logUser, "mech", mech, "ok", false, "rule", "auth.throttled")
		return s.fail("-ERR [SYS/TEMP] Too many failed logins, try again later (" + s.id + ")")
	case err != nil:
		s.log.Info("auth", "remote", remote, "user", logUser, "mech", mech, "ok", false, "rule", "auth.invalid")
		return s.fail("-ERR [AUTH] Invalid user name or password (" + s.id + ")")
	}
	// The directory validated account names when they were created;
	// check again before the name becomes a path.
	acct, err := directory.Normalize(account)
	if err != nil {
		s.log.Error("auth", "remote", remote, "user", logUser, "mech", mech, "ok", false, "rule", "pop3.bad_account", "err", err.Error())
		return s.fail("-ERR [SYS/PERM] This account has no usable mailbox (" + s.id + ")")
	}
	path := directory.MailboxPath(s.srv.cfg.MailRoot, acct)
	if !lockMailbox(path, s.id) {
		s.log.Info("auth", "remote", remote, "user", acct, "mech", mech, "ok", false, "rule", "pop3.in_use")
		return s.fail("-ERR [IN-USE] Mailbox is in use by another session (" + s.id + ")")
	}
	box := maildir.Dir(path)
	msgs, err := box.List()
	if err != nil {
		unlockMailbox(path, s.id)
		s.log.Error("auth", "remote", remote, "user", acct, "mech", mech, "ok", false, "rule", "pop3.mailbox_error", "err", err.Error())
		return s.fail("-ERR [SYS/TEMP] Cannot open the mailbox (" + s.id + ")")
	}
	s.lockKey, s.account, s.mailbox, s.msgs = path, acct, box, msgs
	s.deleted = make([]bool, len(msgs))
	for _, m := range msgs {
		s.size += m.Size
	}
	s.loggedIn.Store(true)
	popBefore := false
	if s.srv.cfg.PopBefore != nil && s.srv.cfg.PopBefore.Window() > 0 {
		s.srv.cfg.PopBefore.Record(s.ip)
		popBefore = true
	}
	s.log.Info("auth", "remote", remote, "user", acct, "mech", mech, "ok", true, "messages", len(msgs), "pop_before_smtp", popBefore)
	s.reply("+OK Logged in, " + strconv.Itoa(len(msgs)) + " messages (" + strconv.FormatInt(s.size, 10) + " octets)")
	return nil
}

// message resolves a message-number argument; text is the -ERR reply when
// it does not name a message that is not deleted.
func (s *session) message(arg string) (int, string) {
	n, ok := parseNumber(arg)
	if !ok {
		return 0, "-ERR Invalid message number"
	}
	if n < 1 || n > len(s.msgs) {
		return 0, "-ERR No such message"
	}
	if s.deleted[n-1] {
		return 0, "-ERR Message " + arg + " already deleted"
	}
	return n - 1, ""
}

func (s *session) cmdStat(cmd command) error {
	if len(cmd.args) != 0 {
		return s.fail("-ERR STAT takes no arguments")
	}
	s.reply("+OK " + strconv.Itoa(len(s.msgs)-s.ndel) + " " + strconv.FormatInt(s.size-s.delSize, 10))
	return nil
}

// cmdList answers LIST (sizes) and UIDL (unique ids).
func (s *session) cmdList(cmd command, uidl bool) error {
	column := func(i int) string {
		if uidl {
			return s.msgs[i].UID()
		}
		return strconv.FormatInt(s.msgs[i].Size, 10)
	}
	switch len(cmd.args) {
	case 0:
	case 1:
		i, errText := s.message(cmd.args[0])
		if errText != "" {
			return s.fail(errText)
		}
		s.reply("+OK " + strconv.Itoa(i+1) + " " + column(i))
		return nil
	default:
		return s.fail("-ERR Too many arguments")
	}
	first := "+OK " + strconv.Itoa(len(s.msgs)-s.ndel) + " messages (" + strconv.FormatInt(s.size-s.delSize, 10) + " octets)"
	if uidl {
		first = "+OK Unique-id listing follows"
	}
	s.bw.WriteString(first)
	s.bw.WriteString("\r\n")
	var num [20]byte
	n := 0
	for i := range s.msgs {
		if s.deleted[i] {
			continue
		}
		s.bw.Write(strconv.AppendInt(num[:0], int64(i+1), 10))
		s.bw.WriteByte(' ')
		s.bw.WriteString(column(i))
		s.bw.WriteString("\r\n")
		n++
	}
	s.bw.WriteString(".\r\n")
	s.log.Info("reply", "line", first, "ok", true, "lines", n)
	return nil
}

// cmdRetr answers RETR n and TOP n lines, streaming the file.
func (s *session) cmdRetr(cmd command, top bool) error {
	bodyLines := -1
	if top {
		if len(cmd.args) != 2 {
			return s.fail("-ERR Usage: TOP message lines")
		}
		n, ok := parseNumber(cmd.args[1])
		if !ok {
			return s.fail("-ERR Invalid line count")
		}
		bodyLines = n
	} else if len(cmd.args) != 1 {
		return s.fail("-ERR Usage: RETR message")
	}
	i, errText := s.message(cmd.args[0])
	if errText != "" {
		return s.fail(errText)
	}
	m := s.msgs[i]
	f, err := s.mailbox.Open(m)
	if err != nil {
		s.log.Error("retrieve", "user", s.account, "key", m.Key, "err", err.Error())
		s.reply("-ERR [SYS/TEMP] Message " + cmd.args[0] + " cannot be read now (" + s.id + ")")
		return nil
	}
	defer f.Close()
	first := "+OK " + strconv.FormatInt(m.Size, 10) + " octets"
	if top {
		first = "+OK Top of message follows"
	}
	s.bw.WriteString(first)
	s.bw.WriteString("\r\n")
	if s.msgBuf == nil {
		s.msgBuf = bufio.NewReaderSize(nil, 32*1024)
	}
	sent, err := writeMessage(s.bw, s.msgBuf, f, bodyLines)
	s.bytesOut += sent
	if err != nil {
		// The multi-line response cannot be finished: the only honest
		// thing is to drop the connection (deleting nothing).
		s.log.Error("retrieve", "user", s.account, "key", m.Key, "err", err.Error())
		return errors.New("retrieve failed: " + err.Error())
	}
	if !top {
		s.retrieved++
	}
	s.log.Info("reply", "line", first, "ok", true, "bytes", sent)
	return nil
}

func (s *session) cmdDele(cmd command) error {
	if len(cmd.args) != 1 {
		return s.fail("-ERR Usage: DELE message")
	}
	i, errText := s.message(cmd.args[0])
	if errText != "" {
		return s.fail(errText)
	}
	s.deleted[i] = true
	s.ndel++
	s.delSize += s.msgs[i].Size
	s.reply("+OK Message " + cmd.args[0] + " deleted")
	return nil
}

func (s *session) cmdRset(cmd command) error {
	if len(cmd.args) != 0 {
		return s.fail("-ERR RSET takes no arguments")
	}
	clear(s.deleted)
	s.ndel, s.delSize = 0, 0
	s.reply("+OK Maildrop has " + strconv.Itoa(len(s.msgs)) + " messages (" + strconv.FormatInt(s.size, 10) + " octets)")
	return nil
}
