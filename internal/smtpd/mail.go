package smtpd

import (
	"errors"
	"strconv"
	"strings"

	"kanmon/internal/address"
	"kanmon/internal/policy"
)

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
	p, ok := c.parseMailParams(params)
	if !ok {
		return c.tooManyErrors()
	}
	utf8, body8, size := p.smtputf8, p.body8bit, p.size
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
	if !c.screenConnect() {
		return c.tooManyErrors()
	}
	sess := &policy.Session{Client: c.client(), Listener: string(c.role), AuthUser: c.authUser}
	if v := c.s.d.Policy.Mail(sess, from); !v.Accept {
		c.reject(v.Rule, v.Code, v.Enhanced, v.Reason, "addr", from.String())
		return c.tooManyErrors()
	}
	if !c.limitMail() {
		return c.tooManyErrors()
	}
	if !from.IsNull() && !c.screenMail(from) {
		// A bounce is screened at its RCPT, once it passed BATV.
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

// mailParams are the MAIL FROM parameters kanmon honours.
type mailParams struct {
	size     int64 // SIZE=, 0 when not given
	body8bit bool  // BODY=8BITMIME
	smtputf8 bool  // SMTPUTF8
}

// parseMailParams parses the parameters after MAIL FROM:<path>. An unknown or
// malformed one is refused (the reply is sent) and ok is false.
func (c *conn) parseMailParams(params string) (p mailParams, ok bool) {
	for _, kv := range strings.Fields(params) {
		k, v, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "SIZE":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				c.reject("protocol.syntax", 501, "5.5.4", "SIZE needs a number")
				return p, false
			}
			p.size = n
		case "BODY":
			switch strings.ToUpper(v) {
			case "7BIT":
			case "8BITMIME":
				p.body8bit = true
			default:
				c.reject("protocol.syntax", 501, "5.5.4", "BODY must be 7BIT or 8BITMIME")
				return p, false
			}
		case "SMTPUTF8":
			p.smtputf8 = true
		case "AUTH":
			// RFC 4954 AUTH= is informational; we ignore it (never trusted).
		default:
			c.reject("protocol.syntax", 555, "5.5.4", "unsupported MAIL parameter "+strings.ToUpper(k))
			return p, false
		}
	}
	return p, true
}
