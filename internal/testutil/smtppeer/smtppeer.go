// Package smtppeer is a small scripted SMTP server on loopback for tests
// of kanmon's SMTP client and scheduler: it gives on demand the replies a
// real MTA will not (451, 550, silence), and records what it received.
//
// SECURITY: test code only; it listens on loopback and trusts nothing it
// reads beyond the test's lifetime (every connection has a 30-second
// deadline and ends with the test).
package smtppeer

import (
	"bufio"
	"crypto/tls"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"kanmon/internal/tlsutil"
)

// Msg is one transaction the peer received.
type Msg struct {
	Helo  string
	From  string
	Rcpts []string
	Data  string
	TLS   bool
}

// Peer is the scripted server. Set the options, then Start it.
type Peer struct {
	// Addr is the address it listens on, once started.
	Addr string
	// Listen is the address to listen on (default 127.0.0.1:0).
	Listen string
	// TLS offers STARTTLS when set.
	TLS *tls.Config
	// UTF8 offers SMTPUTF8.
	UTF8 bool
	// Rcpt returns the reply to RCPT number n (counting from 0 over the
	// peer's life); nil or "" accepts.
	Rcpt func(n int, addr string) string
	// Hang keeps every connection silent after accepting it until closed.
	Hang chan struct{}
	// DropAfter closes a connection without a word after it carried
	// this many messages (0: never), as a peer that drops idle
	// connections does.
	DropAfter int
	// Rset is the reply to RSET ("" accepts).
	Rset string

	mu    sync.Mutex
	n     int
	conns int
	quits int
	msgs  []Msg
}

// Start listens and serves until the test ends.
func Start(t testing.TB, p *Peer) *Peer {
	t.Helper()
	if p.Listen == "" {
		p.Listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", p.Listen)
	if err != nil {
		t.Fatal(err)
	}
	p.Addr = ln.Addr().String()
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

// Messages returns the transactions completed so far.
func (p *Peer) Messages() []Msg {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Msg(nil), p.msgs...)
}

// Conns returns the number of connections accepted so far.
func (p *Peer) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns
}

// Quits returns the number of QUIT commands received so far.
func (p *Peer) Quits() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.quits
}

func (p *Peer) serve(c net.Conn) {
	defer c.Close()
	p.mu.Lock()
	p.conns++
	p.mu.Unlock()
	if p.Hang != nil {
		<-p.Hang
		return
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	s := &session{p: p, c: c, br: bufio.NewReader(c)}
	s.w("220 peer.test ESMTP")
	for s.step() {
	}
	s.c.Close() // the TLS side, when STARTTLS replaced c
}

// session is one connection's state.
type session struct {
	p     *Peer
	c     net.Conn
	br    *bufio.Reader
	cur   Msg
	inTLS bool
	sent  int
}

func (s *session) w(line string) { s.c.Write([]byte(line + "\r\n")) }

// step answers one command; false ends the session.
func (s *session) step() bool {
	line, err := s.br.ReadString('\n')
	if err != nil {
		return false
	}
	line = strings.TrimRight(line, "\r\n")
	verb := strings.ToUpper(line)
	switch {
	case strings.HasPrefix(verb, "EHLO"):
		s.ehlo(strings.TrimSpace(line[4:]))
	case verb == "STARTTLS":
		s.w("220 2.0.0 go ahead")
		tc := tls.Server(s.c, s.p.TLS)
		if tc.Handshake() != nil {
			return false
		}
		s.c, s.br, s.inTLS = tc, bufio.NewReader(tc), true
	case strings.HasPrefix(verb, "MAIL FROM:"):
		s.cur.From = strings.Trim(strings.Fields(line[10:] + " ")[0], "<>")
		s.cur.Rcpts = nil
		s.w("250 2.1.0 ok")
	case strings.HasPrefix(verb, "RCPT TO:"):
		s.rcpt(strings.Trim(line[8:], "<> "))
	case verb == "DATA" && len(s.cur.Rcpts) == 0:
		// RFC 2920 3.1: with no valid recipient, DATA is refused.
		s.w("554 5.5.1 no valid recipients")
	case verb == "DATA":
		return s.data()
	case verb == "RSET" && s.p.Rset != "":
		s.w(s.p.Rset)
	case verb == "RSET" || verb == "NOOP":
		s.w("250 2.0.0 ok")
	case verb == "QUIT":
		s.p.mu.Lock()
		s.p.quits++
		s.p.mu.Unlock()
		s.w("221 2.0.0 bye")
		return false
	default:
		s.w("502 5.5.1 unknown")
	}
	return true
}

func (s *session) ehlo(helo string) {
	s.cur = Msg{Helo: helo, TLS: s.inTLS}
	ext := []string{"peer.test", "PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"}
	if s.p.UTF8 {
		ext = append(ext, "SMTPUTF8")
	}
	if s.p.TLS != nil && !s.inTLS {
		ext = append(ext, "STARTTLS")
	}
	for i, e := range ext {
		if i == len(ext)-1 {
			s.w("250 " + e)
		} else {
			s.w("250-" + e)
		}
	}
}

func (s *session) rcpt(addr string) {
	s.p.mu.Lock()
	n := s.p.n
	s.p.n++
	s.p.mu.Unlock()
	reply := "250 2.1.5 ok"
	if s.p.Rcpt != nil {
		if r := s.p.Rcpt(n, addr); r != "" {
			reply = r
		}
	}
	if strings.HasPrefix(reply, "2") {
		s.cur.Rcpts = append(s.cur.Rcpts, addr)
	}
	s.w(reply)
}

func (s *session) data() bool {
	s.w("354 go on")
	var data strings.Builder
	for {
		l, err := s.br.ReadString('\n')
		if err != nil {
			return false
		}
		if l == ".\r\n" {
			break
		}
		data.WriteString(strings.TrimPrefix(l, "."))
	}
	s.cur.Data = data.String()
	s.p.mu.Lock()
	s.p.msgs = append(s.p.msgs, s.cur)
	s.p.mu.Unlock()
	s.w("250 2.0.0 queued as PEER1")
	s.sent++
	return s.p.DropAfter == 0 || s.sent < s.p.DropAfter
}

// TLSConfig returns a server TLS config with a fresh self-signed
// certificate for peer.test and 127.0.0.1.
func TLSConfig(t testing.TB) *tls.Config {
	t.Helper()
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if _, err := tlsutil.WriteSelfSigned(cert, key, []string{"peer.test", "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	st, err := tlsutil.Load(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return st.Config()
}
