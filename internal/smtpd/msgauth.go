package smtpd

import (
	"io"

	"kanmon/internal/msgauth"
	"kanmon/internal/queue"
)

// The DATA stage of the inbound checks (header From:, DKIM, DMARC,
// Authentication-Results) lives in internal/msgauth; these are its hooks.
// It applies where the connection and MAIL stages do (MX, not trusted,
// not authenticated), and records without enforcing for a client on the
// allow list.

// msgAuthApplies reports whether this message goes through the stage.
func (c *conn) msgAuthApplies() bool {
	return c.scr != nil && c.s.d.MsgAuth != nil
}

// startMsgAuth returns the stage's stream writing to out, or nil.
func (c *conn) startMsgAuth(out io.Writer) *msgauth.Stream {
	if !c.msgAuthApplies() {
		return nil
	}
	from := ""
	if !c.from.IsNull() {
		from = c.from.String()
	}
	return c.s.d.MsgAuth.Start(out, msgauth.Session{ConnID: c.id, Log: c.log, Helo: c.helo,
		MailFrom: from, SPF: c.scr.spf, Enforce: !c.scr.conn.Allowed})
}

// finishMsgAuth gives the stage's verdict on a message read to its end:
// false when it is refused (the reply is sent, the file dropped);
// otherwise its header fields go into the prepend block.
func (c *conn) finishMsgAuth(w *queue.Writer, st *msgauth.Stream) bool {
	if st == nil {
		return true
	}
	r := st.Finish()
	if r.Refused {
		w.Abort()
		v := r.Verdict
		c.reject(v.Rule, v.Code, v.Enhanced, v.Reason, r.Attrs...)
		return false
	}
	if err := w.SetPrepend(r.Prepend); err != nil {
		c.log.Warn("msgauth", "queue_id", w.ID(), "reason", "Authentication-Results not added", "err", err.Error())
	}
	return true
}
