package smtpd

import (
	"bufio"
	"bytes"
	"io"
)

type dataResult struct {
	ioErr     error // reading failed: the client is gone or too slow
	bareLF    bool  // a bare CR or LF was seen (SMTP smuggling defence)
	nul       bool  // a NUL octet was seen (SMTP smuggling toward NUL-stripping peers)
	tooBig    bool
	longLine  bool
	messageID string
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
	var res dataResult
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
