package smtpd

import (
	"strings"
	"time"

	"kanmon/internal/address"
)

// receivedHeader builds our Received: line (RFC 5321 4.4, with RFC 3848
// protocol keywords).
func (c *conn) receivedHeader(id string) []byte {
	proto := "SMTP"
	if c.role == RoleLocal {
		proto = "LOCAL"
	} else if c.esmtp {
		proto = "ESMTP"
		if c.tls != nil {
			proto += "S"
		}
		if c.authUser != "" {
			proto += "A"
		}
	}
	var b strings.Builder
	b.WriteString("Received: from ")
	c.writeFrom(&b)
	b.WriteString("\r\n\tby ")
	b.WriteString(c.s.cfg.Hostname)
	b.WriteString(" with ")
	b.WriteString(proto)
	b.WriteString(" id ")
	b.WriteString(id)
	if c.tls != nil {
		b.WriteString("\r\n\t(using ")
		b.WriteString(tlsDesc(c.tls))
		b.WriteString(")")
	}
	if c.authUser != "" {
		b.WriteString("\r\n\t(authenticated user ")
		b.WriteString(c.authUser)
		b.WriteString(")")
	}
	if len(c.rcpts) == 1 {
		b.WriteString("\r\n\tfor <")
		b.WriteString(c.rcpts[0].addr.String())
		b.WriteString(">")
	}
	b.WriteString(";\r\n\t")
	b.WriteString(time.Now().Format(time.RFC1123Z))
	b.WriteString("\r\n")
	return []byte(b.String())
}

// writeFrom writes the "from" clause of our Received line. The client's
// HELO name is written as the clause's domain only when it is a valid
// domain or address literal; anything else goes into a comment, escaped,
// so a HELO like `evil.example]by:mx.example.test<>"'` cannot forge clauses
// of the trace header that a reader (or our own `kanmon trace`) would take
// for ours.
func (c *conn) writeFrom(b *strings.Builder) {
	valid := validHeloDomain(c.helo)
	switch {
	case c.role == RoleLocal && valid:
		b.WriteString(c.helo + " (local " + c.local + ")")
	case c.role == RoleLocal:
		b.WriteString("localhost (bad-helo " + quoteComment(c.helo) + " local " + c.local + ")")
	case valid:
		b.WriteString(c.helo + " ([" + c.ip.String() + "])")
	default:
		b.WriteString("[" + c.ip.String() + "] (bad-helo " + quoteComment(c.helo) + ")")
	}
}

// validHeloDomain reports whether a HELO argument is a domain or an
// address literal by RFC 5321's syntax (ASCII only).
func validHeloDomain(h string) bool {
	_, err := address.ParseDomain(h, false)
	return err == nil
}

// quoteComment renders s as a quoted string inside an RFC 5322 comment:
// '(', ')', '\' and '"' are escaped as quoted-pairs, control characters and
// non-ASCII octets are dropped, and the text is cut at 255 octets.
func quoteComment(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s) && b.Len() < 256; i++ {
		switch ch := s[i]; {
		case ch < 0x20 || ch >= 0x7f:
			// dropped: no controls or raw 8-bit octets in a header
		case ch == '(' || ch == ')' || ch == '\\' || ch == '"':
			b.WriteByte('\\')
			b.WriteByte(ch)
		default:
			b.WriteByte(ch)
		}
	}
	b.WriteByte('"')
	return b.String()
}
