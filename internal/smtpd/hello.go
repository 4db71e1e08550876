package smtpd

import (
	"crypto/tls"
	"errors"
	"strconv"
	"strings"
	"time"
)

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
