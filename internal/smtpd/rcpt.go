package smtpd

import (
	"errors"
	"strconv"
	"strings"

	"kanmon/internal/address"
	"kanmon/internal/policy"
)

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
	if c.from.IsNull() && len(c.rcpts) >= 1 {
		// A real bounce answers one message for one sender: it never
		// needs a second recipient, a flood of forged ones might.
		c.reject("rcpt.bounce_recipients", 452, "4.5.3", "a bounce (MAIL FROM:<>) may have only one recipient: send the rest in another message")
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
	sess := &policy.Session{Client: c.client(), Listener: string(c.role), AuthUser: c.authUser, Size: c.size, Conn: c.id,
		NullSender: c.from.IsNull()}
	v := c.s.d.Policy.Rcpt(sess, to)
	c.logFindings(v.Findings)
	if !v.Accept {
		c.reject(v.Rule, v.Code, v.Enhanced, v.Reason, append([]any{"addr", to.String(), "from", c.from.String(),
			"client", c.ip.String(), "helo", c.helo}, v.Attrs...)...)
		return c.tooManyErrors()
	}
	to = v.Addr // less its bounce address tag
	if c.from.IsNull() && !c.screenMail(c.from) {
		// The MAIL stage's DNS checks of a bounce wait until its
		// recipient passed BATV (cmdMail): a flood of forged bounces
		// costs no lookup. Refused here, the transaction ends.
		c.resetTx()
		return c.tooManyErrors()
	}
	if prev, dup := c.duplicate(to, v.Account); dup {
		// One copy per mailbox per message: a repeated recipient, or
		// another alias of the same account, is answered 250 as other
		// MTAs do, but adds no second recipient.
		reason := "recipient OK (already a recipient of this message)"
		c.log.Info("decision", "rule", "rcpt.duplicate", "code", 250, "enhanced", "2.1.5", "reason", reason,
			"addr", to.String(), "account", v.Account, "same_as", prev)
		c.reply(250, "2.1.5", reason)
		return nil
	}
	if ok, counted := c.limitRcpt(c.from, to); !ok {
		if counted {
			return c.tooManyErrors()
		}
		return nil
	}
	c.log.Info("decision", append([]any{"rule", v.Rule, "code", v.Code, "enhanced", v.Enhanced, "reason", v.Reason,
		"addr", to.String(), "class", v.Class.String()}, v.Attrs...)...)
	c.rcpts = append(c.rcpts, rcpt{addr: to, account: v.Account, verified: v.Verified})
	c.reply(v.Code, v.Enhanced, v.Reason)
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

// logFindings logs the refusals a check found but did not enforce
// (action log): one decision line each, with the reply it would have
// sent and the facts of the transaction (client, HELO, sender).
func (c *conn) logFindings(fs []policy.Finding) {
	for _, f := range fs {
		c.log.Info("decision", append([]any{"rule", f.Rule, "action", "log", "code", f.Code, "enhanced", f.Enhanced,
			"reason", f.Reason, "would", strconv.Itoa(f.Code) + " " + f.Enhanced + " " + f.Reason,
			"from", c.from.String(), "client", c.ip.String(), "helo", c.helo}, f.Attrs...)...)
	}
}
