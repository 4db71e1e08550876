package pop3

import (
	"bufio"
	"io"
)

// writeMessage copies a stored message from r to w as the body of a
// multi-line response: every line ending becomes CRLF (a bare LF gains a
// CR; CRLF is kept), a line starting with "." gets another "." in front
// (RFC 1939 byte-stuffing), a final CRLF is added when the message lacks
// one, and the terminating ".\r\n" is written. The octets sent before the
// terminator, less the stuffing, are what maildir.WireSize counts.
//
// With bodyLines >= 0 (TOP) only the header, the empty line after it and
// bodyLines lines of the body are sent. The message is streamed through
// br, so memory does not depend on the message or line length.
func writeMessage(w *bufio.Writer, br *bufio.Reader, r io.Reader, bodyLines int) (int64, error) {
	br.Reset(r)
	defer br.Reset(nil)
	var sent int64
	atStart := true  // at the start of a line
	prevCR := false  // the last byte written in this line was CR
	inHeader := true // TOP: still in the header section
	lineLen := 0     // length of the current line so far (capped)
	body := 0        // TOP: body lines sent
	top := bodyLines >= 0
	done := false
	for !done {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			if atStart && chunk[0] == '.' {
				if err := w.WriteByte('.'); err != nil {
					return sent, err
				}
			}
			if chunk[len(chunk)-1] == '\n' {
				content := chunk[:len(chunk)-1]
				hasCR := len(content) > 0 && content[len(content)-1] == '\r' || len(content) == 0 && prevCR
				if _, err := w.Write(content); err != nil {
					return sent, err
				}
				sent += int64(len(content)) + 1
				if !hasCR {
					if err := w.WriteByte('\r'); err != nil {
						return sent, err
					}
					sent++
				}
				if err := w.WriteByte('\n'); err != nil {
					return sent, err
				}
				lineLen += len(content)
				if top {
					if inHeader {
						// The empty line ends the header: "" or "\r".
						if lineLen == 0 || lineLen == 1 && hasCR {
							inHeader = false
							done = bodyLines == 0
						}
					} else {
						body++
						done = body >= bodyLines
					}
				}
				atStart, prevCR, lineLen = true, false, 0
			} else {
				if _, err := w.Write(chunk); err != nil {
					return sent, err
				}
				sent += int64(len(chunk))
				atStart, prevCR = false, chunk[len(chunk)-1] == '\r'
				if lineLen < 2 {
					lineLen += len(chunk)
				}
			}
		}
		if err == bufio.ErrBufferFull || err == nil {
			continue
		}
		if err != io.EOF {
			return sent, err
		}
		if !atStart {
			if _, err := w.WriteString("\r\n"); err != nil {
				return sent, err
			}
			sent += 2
		}
		break
	}
	_, err := w.WriteString(".\r\n")
	return sent, err
}
