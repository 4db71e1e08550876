package delivery

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"regexp"
	"strings"
	"time"

	"kanmon/internal/queue"
)

// pipelined runs one mail transaction with PIPELINING (RFC 2920): MAIL,
// every RCPT and DATA go out in one write, and the replies are read in
// order. go-smtp's client waits for each reply before the next command,
// which costs a round trip per recipient, so the transaction is spoken
// here once the client has done greeting, EHLO (and AUTH). Nothing is
// left in go-smtp's read buffer at that point: the peer has answered
// EHLO/AUTH and waits for us.
//
// It returns per-recipient results, or an error when the connection
// failed in a way that leaves the outcome unknown (the caller retries).
func pipelined(conn net.Conn, env *queue.Envelope, rcpts []string, body func() io.Reader,
	ext func(string) bool, cmdTimeout, dataTimeout time.Duration,
	res func(rcpt string, ok, perm bool, code int, enh, text string) Result) ([]Result, error) {
	bw := bufio.NewWriterSize(conn, 16*1024)
	tr := textproto.NewReader(bufio.NewReader(conn))
	read := func(d time.Duration) (int, string, string, error) {
		conn.SetReadDeadline(time.Now().Add(d))
		code, msg, err := tr.ReadResponse(0)
		var te *textproto.Error
		if err != nil && !errors.As(err, &te) {
			return 0, "", "", err
		}
		enh, text := splitEnhanced(msg)
		return code, enh, text, nil
	}
	conn.SetWriteDeadline(time.Now().Add(cmdTimeout))
	params := ""
	if env.Body8Bit && ext("8BITMIME") {
		params += " BODY=8BITMIME"
	}
	if env.SMTPUTF8 {
		params += " SMTPUTF8"
	}
	fmt.Fprintf(bw, "MAIL FROM:<%s>%s\r\n", env.From, params)
	for _, a := range rcpts {
		fmt.Fprintf(bw, "RCPT TO:<%s>\r\n", a)
	}
	bw.WriteString("DATA\r\n")
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("sending MAIL/RCPT/DATA: %w", err)
	}
	out := make([]Result, len(rcpts))
	mcode, menh, mtext, err := read(cmdTimeout)
	if err != nil {
		return nil, fmt.Errorf("MAIL: %w", err)
	}
	var accepted []int
	for i, a := range rcpts {
		code, enh, text, err := read(cmdTimeout)
		if err != nil {
			return nil, fmt.Errorf("RCPT: %w", err)
		}
		switch {
		case mcode/100 != 2:
			out[i] = res(a, false, mcode >= 500, mcode, menh, mtext)
		case code/100 != 2:
			out[i] = res(a, false, code >= 500, code, enh, text)
		default:
			accepted = append(accepted, i)
		}
	}
	dcode, denh, dtext, err := read(cmdTimeout)
	if err != nil {
		return nil, fmt.Errorf("DATA: %w", err)
	}
	quit := func() {
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		bw.WriteString("QUIT\r\n")
		if bw.Flush() == nil {
			tr.ReadResponse(0)
		}
	}
	setAll := func(ok, perm bool, code int, enh, text string) {
		for _, i := range accepted {
			out[i] = res(rcpts[i], ok, perm, code, enh, text)
		}
	}
	if dcode != 354 {
		setAll(false, dcode >= 500, dcode, denh, dtext)
		quit()
		return out, nil
	}
	if len(accepted) == 0 {
		// RFC 2920 3.1: DATA was accepted although no recipient was; send
		// an empty message to end it, and deliver nothing.
		conn.SetWriteDeadline(time.Now().Add(cmdTimeout))
		bw.WriteString(".\r\n")
		if bw.Flush() == nil {
			read(dataTimeout)
		}
		quit()
		return out, nil
	}
	conn.SetWriteDeadline(time.Now().Add(dataTimeout))
	dw := textproto.NewWriter(bw).DotWriter()
	if _, err := io.Copy(dw, body()); err != nil {
		return nil, fmt.Errorf("sending message: %w", err)
	}
	if err := dw.Close(); err != nil {
		return nil, fmt.Errorf("sending message: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("sending message: %w", err)
	}
	fcode, fenh, ftext, err := read(dataTimeout)
	if err != nil {
		// No answer after the final dot: the peer may have the message.
		// Retrying may deliver twice, which is better than losing it.
		return nil, fmt.Errorf("end of data: %w", err)
	}
	if fcode/100 == 2 {
		setAll(true, false, fcode, fenh, ftext)
	} else {
		setAll(false, fcode >= 500, fcode, fenh, ftext)
	}
	quit()
	return out, nil
}

var enhancedRe = regexp.MustCompile(`^([245]\.\d{1,3}\.\d{1,3}) `)

// splitEnhanced separates an RFC 3463 enhanced status code from the text
// of the last reply line.
func splitEnhanced(msg string) (string, string) {
	last := msg
	if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
		last = msg[i+1:]
	}
	if m := enhancedRe.FindStringSubmatch(last); m != nil {
		return m[1], strings.TrimSpace(last[len(m[0]):])
	}
	return "", last
}
