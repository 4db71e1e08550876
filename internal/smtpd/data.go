package smtpd

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
	"time"

	"kanmon/internal/dkim"
	"kanmon/internal/msgauth"
	"kanmon/internal/queue"
)

type dataResult struct {
	ioErr     error // reading failed: the client is gone or too slow
	bareLF    bool  // a bare CR or LF was seen (SMTP smuggling defence)
	nul       bool  // a NUL octet was seen (SMTP smuggling toward NUL-stripping peers)
	tooBig    bool
	longLine  bool
	messageID string
	hdrs      *fromCollector // the header section for the From: binding (fromcheck.go)
}

// readData reads the message after "354" up to the end marker, undoing dot
// stuffing, and writes it to w. It always reads to the end marker (unless
// the connection fails), so the session stays in step whatever the verdict.
//
// The end of data is only <CRLF>.<CRLF>: a "." line after a bare LF is not
// an end, and any bare CR or LF makes the message rejected, which closes
// the SMTP smuggling hole (a message ending differently for us and for
// the next hop). A NUL octet anywhere makes the message rejected too:
// RFC 5322 forbids it, we offer no BINARYMIME, and a next hop that strips
// NULs before looking for the end of data would read "<CRLF><NUL>.<CRLF>"
// as "<CRLF>.<CRLF>" and take the rest as new commands.
func (c *conn) readData(w io.Writer) dataResult {
	res := dataResult{hdrs: c.newFromCollector()}
	maxSize := int64(c.s.cfg.Limits.MaxMessageSize)
	maxLine := c.s.cfg.Limits.MaxDataLineLength
	var written int64
	prevCRLF := true // the previous line ended with CRLF
	atLineStart := true
	pendingCR := false // the previous chunk ended with '\r'
	lineLen := 0
	inHeaders := true
	var hdr []byte // current header field, for Message-ID
	failed := func() bool { return res.bareLF || res.nul || res.tooBig || res.longLine }
	write := func(p []byte) {
		if failed() || len(p) == 0 {
			return
		}
		if written+int64(len(p)) > maxSize {
			res.tooBig = true
			return
		}
		written += int64(len(p))
		if _, err := w.Write(p); err != nil {
			// A write error (full disk) is reported by Commit; keep reading.
			return
		}
	}
	for {
		chunk, err := c.br.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			res.ioErr = err
			return res
		}
		partial := err == bufio.ErrBufferFull
		wasCR := pendingCR
		pendingCR = false
		if wasCR && (len(chunk) == 0 || chunk[0] != '\n') {
			res.bareLF = true
		}
		if atLineStart && !partial && prevCRLF && len(chunk) == 3 && chunk[0] == '.' && chunk[1] == '\r' {
			return res // <CRLF>.<CRLF>
		}
		if atLineStart && len(chunk) > 0 && chunk[0] == '.' {
			chunk = chunk[1:] // dot stuffing (RFC 5321 4.5.2)
		}
		lineLen += len(chunk)
		if lineLen > maxLine+2 {
			res.longLine = true
		}
		body := chunk
		n := len(chunk)
		switch {
		case partial:
			if n > 0 && chunk[n-1] == '\r' {
				body = chunk[:n-1]
				pendingCR = true // maybe a CRLF split across reads
			}
		case n >= 2 && chunk[n-2] == '\r':
			body = chunk[:n-2]
			prevCRLF = true
		case n == 1 && wasCR:
			body = nil // the LF of a CRLF split across reads
			prevCRLF = true
		default:
			body = chunk[:max(n-1, 0)]
			prevCRLF = false
			res.bareLF = true
		}
		if bytes.IndexByte(body, '\r') >= 0 {
			res.bareLF = true
		}
		if bytes.IndexByte(chunk, 0) >= 0 {
			res.nul = true
		}
		if inHeaders {
			res.hdrs.add(chunk)
		}
		if inHeaders && !failed() {
			c.scanHeader(&res, &hdr, chunk, partial, &inHeaders)
		}
		write(chunk)
		atLineStart = !partial
		if !partial {
			lineLen = 0
		}
	}
}

// scanHeader follows the header section to pick up Message-ID for the log.
func (c *conn) scanHeader(res *dataResult, hdr *[]byte, chunk []byte, partial bool, inHeaders *bool) {
	if partial {
		return // header lines this long are not worth reading for the log
	}
	line := bytes.TrimRight(chunk, "\r\n")
	if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
		if len(*hdr) > 0 && len(*hdr) < 998 {
			*hdr = append(*hdr, line...)
		}
		return
	}
	c.finishHeader(res, *hdr)
	*hdr = (*hdr)[:0]
	if len(line) == 0 {
		*inHeaders = false
		return
	}
	*hdr = append(*hdr, line...)
}

func (c *conn) finishHeader(res *dataResult, h []byte) {
	const name = "message-id:"
	if res.messageID == "" && len(h) > len(name) && bytes.EqualFold(h[:len(name)], []byte(name)) {
		v := bytes.TrimSpace(h[len(name):])
		if len(v) > 250 {
			v = v[:250]
		}
		res.messageID = string(v)
	}
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
		env.Recipients = append(env.Recipients, queue.Recipient{Addr: r.addr.String(), Account: r.account, Verified: r.verified})
	}
	w, sig, out, err := c.createQueueFile(env)
	if err != nil {
		code, enh, reason := 451, "4.3.0", "local error in processing, try again later"
		if queue.IsNoSpace(err) {
			code, enh, reason = 452, "4.3.1", "insufficient system storage, try again later"
		}
		c.reject("queue.error", code, enh, reason, "err", err.Error())
		c.resetTx()
		return c.tooManyErrors()
	}
	// Whatever ends this transfer, even a panic, gives the file and its
	// place in the queue's bounds back; after Commit it does nothing.
	defer w.Abort()
	if sig != nil {
		defer sig.Abort() // its goroutines end with the transfer
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

	out.Write(c.receivedHeader(w.ID()))
	ma := c.startMsgAuth(out)
	if ma != nil {
		defer ma.Abort()
		out = ma
	}
	res := c.readData(out)
	if res.ioErr != nil {
		// The client is gone or too slow: nothing was acknowledged.
		w.Abort()
		c.resetTx()
		return res.ioErr
	}
	c.finishData(w, sig, ma, env, res)
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

// finishData gives the verdict on a message read to its end: refused for
// its content or size, or committed to the queue and acknowledged (law 1:
// "250" only once it is on disk).
func (c *conn) finishData(w *queue.Writer, sig *dkim.Stream, ma *msgauth.Stream, env queue.Envelope, res dataResult) {
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
	case !c.checkHeaderFrom(w, res.hdrs):
		// refused: the reply is sent, the file discarded
	default:
		if !c.finishMsgAuth(w, ma) {
			return
		}
		c.finishSignature(w, sig)
		if err := w.Commit(); err != nil {
			code, enh, reason := 451, "4.3.0", "local error in processing, try again later"
			if queue.IsNoSpace(err) {
				code, enh, reason = 452, "4.3.1", "insufficient system storage, try again later"
			}
			c.reject("queue.error", code, enh, reason, "err", err.Error())
			return
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
}
