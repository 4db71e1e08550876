package smtpd

import (
	"bytes"
	"strconv"
	"strings"

	"kanmon/internal/policy"
	"kanmon/internal/queue"
)

// The header binding needs the From: and Sender: fields of a message our
// own user submits, while the message streams into its queue file: the
// header section is kept (at most maxBoundHeader octets, and only for
// sessions the binding may concern), the fields are read at the end of
// DATA, and internal/policy decides before the "250". A refused message's
// queue file is discarded.

// maxBoundHeader bounds the header section kept for the binding; a longer
// one cannot be checked and is refused (552 5.3.4).
const maxBoundHeader = 64 << 10

// fromCollector keeps the header section of one message.
type fromCollector struct {
	buf      []byte
	over     bool // the header section passed maxBoundHeader
	done     bool // the empty line ending the header section was seen
	lineNext bool // the next chunk starts a line
}

// newFromCollector returns a collector when the session is one the
// binding may concern (authenticated, the sendmail socket, a trusted
// network), nil otherwise: mail from outside costs nothing.
func (c *conn) newFromCollector() *fromCollector {
	cl := c.client()
	if !cl.Authenticated && !cl.Trusted {
		return nil
	}
	return &fromCollector{lineNext: true}
}

// add takes the next chunk of the message (dot stuffing undone) while the
// reader is in the header section. It is safe on a nil collector.
func (f *fromCollector) add(chunk []byte) {
	if f == nil || f.done || f.over {
		return
	}
	if f.lineNext && (bytes.Equal(chunk, []byte("\r\n")) || bytes.Equal(chunk, []byte("\n"))) {
		f.done = true
		return
	}
	f.lineNext = len(chunk) > 0 && chunk[len(chunk)-1] == '\n'
	if len(f.buf)+len(chunk) > maxBoundHeader {
		f.over, f.buf = true, nil
		return
	}
	f.buf = append(f.buf, chunk...)
}

// originators unfolds the kept header section and picks the From: and
// Sender: fields. A name is matched without case and with blanks before
// the colon ("From :", RFC 5322 obsolete syntax), as mail programs read it.
func (f *fromCollector) originators() policy.Originators {
	var o policy.Originators
	if f.over {
		o.Unread = "the header section is over " + strconv.Itoa(maxBoundHeader) + " octets"
		return o
	}
	var name string
	var value []byte
	flush := func() {
		switch strings.ToLower(name) {
		case "from":
			o.From = append(o.From, strings.TrimSpace(string(value)))
		case "sender":
			o.Sender = append(o.Sender, strings.TrimSpace(string(value)))
		}
		name, value = "", nil
	}
	for _, line := range bytes.Split(f.buf, []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			if name != "" {
				value = append(value, line...) // unfolding: the line break goes
			}
			continue
		}
		flush()
		if n, v, ok := bytes.Cut(line, []byte(":")); ok {
			name, value = strings.TrimRight(string(n), " \t"), append([]byte(nil), v...)
		}
	}
	flush()
	return o
}

// checkHeaderFrom applies the header binding at the end of DATA, before
// the message is committed. It reports false when the message is refused
// (the reply is sent and the queue file discarded).
func (c *conn) checkHeaderFrom(w *queue.Writer, f *fromCollector) bool {
	if f == nil {
		return true
	}
	sess := &policy.Session{Client: c.client(), Listener: string(c.role), AuthUser: c.authUser, Conn: c.id}
	o := f.originators()
	v, applies := c.s.d.Policy.HeaderFrom(sess, c.ip, o)
	if !applies || v.Accept {
		return true
	}
	attrs := []any{"user", c.authUser, "header_from", clip(strings.Join(o.From, " | "), 300)}
	if len(o.Sender) > 0 {
		attrs = append(attrs, "header_sender", clip(strings.Join(o.Sender, " | "), 300))
	}
	if c.s.d.Policy.HeaderBinding.Action == policy.BindingLog {
		c.log.Info("decision", append([]any{"rule", v.Rule, "action", "log", "reason", v.Reason, "queue_id", w.ID(),
			"would", strconv.Itoa(v.Code) + " " + v.Enhanced + " " + v.Reason}, attrs...)...)
		return true
	}
	w.Abort()
	c.reject(v.Rule, v.Code, v.Enhanced, v.Reason, append([]any{"action", "reject"}, attrs...)...)
	return false
}

// clip cuts s to at most n octets for a log line.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
