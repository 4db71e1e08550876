package audit

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
	"unicode/utf8"
)

// maxTranscript bounds the lines one session keeps for evidence.
const maxTranscript = 2000

// session is one SMTP connection driven line by line. It is our own small
// client rather than net/smtp or go-smtp because the audit must send
// addresses those clients refuse (source routes, bare addresses, quoted
// local parts with "@") and must see every reply line exactly.
type session struct {
	conn    net.Conn
	r       *bufio.Reader
	timeout time.Duration
	stop    func() bool // detaches the context watcher

	transcript []string
	greeting   *Reply
	helo       string
	heloCmd    string // the EHLO or HELO command line that was accepted
	ehlo       *Reply
	ext        map[string]string // EHLO keywords (upper case) to parameters
	tlsState   *tls.ConnectionState
	broken     error  // set once the connection failed; later calls fail fast
	proto      string // "pop3" or "imap" for those dialogues; "" is SMTP
}

// dial connects to addr and returns the session without reading anything.
func dial(ctx context.Context, addr string, timeout time.Duration) (*session, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", addr, wrapDial(err))
	}
	s := &session{conn: c, r: bufio.NewReaderSize(c, 4096), timeout: timeout}
	s.stop = context.AfterFunc(ctx, func() { _ = c.Close() })
	return s, nil
}

// deadline is the time limit for the next read or write.
func (s *session) deadline() time.Time { return time.Now().Add(s.timeout) }

func (s *session) record(prefix, line string) {
	if len(s.transcript) < maxTranscript {
		s.transcript = append(s.transcript, prefix+sanitize(line))
	}
}

// mark returns a position in the transcript for evidence(mark).
func (s *session) mark() int { return len(s.transcript) }

// evidence returns a copy of the transcript since mark.
func (s *session) evidence(mark int) []string {
	if mark > len(s.transcript) {
		return nil
	}
	return append([]string(nil), s.transcript[mark:]...)
}

// send writes one command line. Lines are sent exactly as given, CRLF
// appended.
func (s *session) send(line string) error {
	return s.sendRaw(line+"\r\n", []string{line})
}

// sendRaw writes data in one write (for pipelining and early-talker
// probes) and records lines in the transcript.
func (s *session) sendRaw(data string, lines []string) error {
	if s.broken != nil {
		return s.broken
	}
	for _, l := range lines {
		s.record("C: ", l)
	}
	_ = s.conn.SetWriteDeadline(s.deadline())
	if _, err := s.conn.Write([]byte(data)); err != nil {
		s.broken = fmt.Errorf("writing to server: %w", err)
		s.record("-- ", s.broken.Error())
		return s.broken
	}
	return nil
}

// read reads one reply.
func (s *session) read() (*Reply, error) {
	if s.broken != nil {
		return nil, s.broken
	}
	_ = s.conn.SetReadDeadline(s.deadline())
	rep, err := readReply(s.r)
	if rep != nil {
		for _, l := range rep.Lines {
			s.record("S: ", l)
		}
	}
	if err != nil {
		s.broken = fmt.Errorf("reading reply: %w", err)
		s.record("-- ", s.broken.Error())
		return nil, s.broken
	}
	if rep.Code == 421 {
		// The server is closing the connection (RFC 5321 3.8).
		s.broken = fmt.Errorf("server closing connection: %s", rep.Lines[0])
	}
	return rep, nil
}

// cmd sends line and reads its reply.
func (s *session) cmd(line string) (*Reply, error) {
	if err := s.send(line); err != nil {
		return nil, err
	}
	return s.read()
}

// greet reads the greeting; anything but 220 is an error.
func (s *session) greet() error {
	rep, err := s.read()
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	s.greeting = rep
	if rep.Code != 220 {
		return fmt.Errorf("server refused the session: %s", rep.Lines[0])
	}
	return nil
}

// hello sends EHLO, falling back to HELO when EHLO is refused, and records
// the extensions.
func (s *session) hello(name string) error {
	s.helo = name
	s.heloCmd = "EHLO " + name
	rep, err := s.cmd(s.heloCmd)
	if err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	if rep.Permanent() {
		s.heloCmd = "HELO " + name
		rep, err = s.cmd(s.heloCmd)
		if err != nil {
			return fmt.Errorf("HELO: %w", err)
		}
		if !rep.Positive() {
			return fmt.Errorf("HELO refused: %s", rep.Lines[0])
		}
		s.ehlo, s.ext = rep, map[string]string{}
		return nil
	}
	if !rep.Positive() {
		return fmt.Errorf("EHLO refused: %s", rep.Lines[0])
	}
	s.ehlo, s.ext = rep, parseExtensions(rep)
	return nil
}

// parseExtensions maps the EHLO keywords to their parameters.
func parseExtensions(rep *Reply) map[string]string {
	ext := map[string]string{}
	for _, t := range rep.Text()[1:] {
		kw, params, _ := strings.Cut(strings.TrimSpace(t), " ")
		if kw != "" {
			ext[strings.ToUpper(kw)] = strings.TrimSpace(params)
		}
	}
	return ext
}

// startTLS sends STARTTLS and, on 220, runs the handshake with cfg. The
// returned reply is the STARTTLS reply; err is set when the command could
// not be sent or the handshake failed.
func (s *session) startTLS(ctx context.Context, cfg *tls.Config) (*Reply, error) {
	rep, err := s.cmd("STARTTLS")
	if err != nil {
		return nil, err
	}
	if rep.Code != 220 {
		return rep, nil
	}
	if s.r.Buffered() > 0 {
		s.broken = errors.New("server sent data after 220 to STARTTLS (response injection)")
		s.record("-- ", s.broken.Error())
		return rep, s.broken
	}
	if err := s.upgrade(ctx, cfg); err != nil {
		return rep, err
	}
	s.ehlo, s.ext = nil, nil
	return rep, nil
}

// upgrade runs the TLS handshake on the connection (after STARTTLS, STLS,
// or at once for implicit TLS) and reads through it from then on.
func (s *session) upgrade(ctx context.Context, cfg *tls.Config) error {
	tc := tls.Client(s.conn, cfg)
	hctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		s.broken = fmt.Errorf("TLS handshake: %w", err)
		s.record("-- ", s.broken.Error())
		return s.broken
	}
	st := tc.ConnectionState()
	s.tlsState = &st
	s.conn = tc
	s.r = bufio.NewReaderSize(tc, 4096)
	s.record("-- ", "TLS established: "+describeTLS(&st))
	return nil
}

// dialTLS connects to addr and runs the TLS handshake at once (implicit
// TLS). When the connection opens but the handshake fails, the session
// is returned with the error, so the caller can tell a closed port from a
// failed handshake.
func dialTLS(ctx context.Context, addr string, timeout time.Duration, cfg *tls.Config) (*session, error) {
	s, err := dial(ctx, addr, timeout)
	if err != nil {
		return nil, err
	}
	s.record("-- ", "connected; TLS handshake at once (implicit TLS)")
	if err := s.upgrade(ctx, cfg); err != nil {
		return s, err
	}
	return s, nil
}

// line reads one line of a POP3 or IMAP dialogue.
func (s *session) line() (string, error) {
	if s.broken != nil {
		return "", s.broken
	}
	_ = s.conn.SetReadDeadline(s.deadline())
	l, err := readLine(s.r, maxReplyLine)
	if err != nil {
		s.broken = fmt.Errorf("reading response: %w", err)
		s.record("-- ", s.broken.Error())
		return "", s.broken
	}
	s.record("S: ", l)
	return l, nil
}

// close says QUIT (briefly, best effort) and closes the connection.
func (s *session) close() {
	if s == nil {
		return
	}
	if s.broken == nil {
		s.timeout = 2 * time.Second
		switch s.proto {
		case "pop3":
			_ = s.send("QUIT")
		case "imap":
			_ = s.send("Z LOGOUT")
		default:
			_, _ = s.cmd("QUIT")
		}
	}
	s.stop()
	_ = s.conn.Close()
}

// sanitize makes a dialogue line safe to print on a terminal: control
// characters and invalid UTF-8 are shown as \xNN, so a hostile server
// cannot send escape sequences through the report.
func sanitize(line string) string {
	clean := true
	for i := 0; i < len(line); i++ {
		if c := line[i]; c < 0x20 && c != '\t' || c == 0x7f || c >= 0x80 {
			clean = false
			break
		}
	}
	if clean {
		return line
	}
	var b strings.Builder
	for i := 0; i < len(line); {
		r, size := utf8.DecodeRuneInString(line[i:])
		switch {
		case r == utf8.RuneError && size <= 1, r < 0x20 && r != '\t', r == 0x7f, r >= 0x80 && r < 0xa0:
			fmt.Fprintf(&b, `\x%02x`, line[i])
			size = 1
		default:
			b.WriteString(line[i : i+size])
		}
		i += size
	}
	return b.String()
}

// describeTLS summarises a connection state for evidence.
func describeTLS(st *tls.ConnectionState) string {
	return tls.VersionName(st.Version) + ", " + tls.CipherSuiteName(st.CipherSuite)
}
