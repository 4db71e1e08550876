package remote

import (
	"io"
	"net/textproto"
	"time"

	"kanmon/internal/courier"
	"kanmon/internal/queue"
)

// txReplies are the replies to one mail transaction. rcpt holds the
// replies to the RCPTs sent, in order (none when MAIL was refused and the
// commands went one at a time); data is nil when DATA was not sent, final
// when the message was not.
type txReplies struct {
	mail  reply
	rcpt  []reply
	data  *reply
	final *reply
}

// accepted counts the recipients the peer took at RCPT.
func (t *txReplies) accepted() int {
	n := 0
	for _, r := range t.rcpt {
		if r.positive() {
			n++
		}
	}
	return n
}

// results is the one place replies become per-recipient results, however
// the commands were sent: each recipient gets the first refusal on its
// way (MAIL, its RCPT, DATA) or else the reply after the final dot.
func (t *txReplies) results(rcpts []string, mx, tlsVer string) []courier.Result {
	out := make([]courier.Result, len(rcpts))
	for i, a := range rcpts {
		rp := t.final
		switch {
		case !t.mail.positive():
			rp = &t.mail
		case i >= len(t.rcpt):
			rp = nil
		case !t.rcpt[i].positive():
			rp = &t.rcpt[i]
		case t.data == nil || t.data.code != 354:
			rp = t.data
		}
		if rp == nil {
			// Cannot happen with the replies transaction collects; never
			// report a delivery that was not confirmed.
			out[i] = courier.Result{Rcpt: a, Code: 451, Enhanced: enhProtocol, Text: "no reply for this recipient", MX: mx, TLS: tlsVer}
			continue
		}
		out[i] = courier.Result{Rcpt: a, OK: rp.positive(), Permanent: rp.code >= 500, Code: rp.code,
			Enhanced: rp.enhanced, Text: rp.text, MX: mx, TLS: tlsVer}
	}
	return out
}

// closing reports a 421 among the replies: the peer is closing the
// connection (RFC 5321 3.8), so it is not kept for another message.
func (t *txReplies) closing() bool {
	if t == nil {
		return false
	}
	all := append([]reply{t.mail}, t.rcpt...)
	for _, p := range []*reply{t.data, t.final} {
		if p != nil {
			all = append(all, *p)
		}
	}
	for _, r := range all {
		if r.code == 421 {
			return true
		}
	}
	return false
}

// rset starts a clean transaction on a reused connection (RFC 5321
// 4.1.1.5); an error means the connection is not usable.
func (c *smtpClient) rset() error {
	if err := c.send("RSET"); err != nil {
		return err
	}
	r, err := c.read("RSET", rsetTimeout)
	if err != nil {
		return err
	}
	if !r.positive() {
		return &peerError{enhanced: enhProtocol, msg: "reply to RSET: " + r.String()}
	}
	return nil
}

// transaction sends one message from the envelope sender from (Remote.mailFrom): MAIL, RCPT for each recipient and DATA
// in one write when pipeline is set (RFC 2920), else one at a time,
// stopping at the first step that leaves nothing to send. An error means
// the outcome is unknown (the connection failed, or the peer broke a
// bound): the caller defers every recipient.
func (c *smtpClient) transaction(env *queue.Envelope, from string, rcpts []string, body func() io.Reader, pipeline bool, dataTimeout time.Duration) (*txReplies, error) {
	mail := "MAIL FROM:<" + from + ">"
	if c.has("8BITMIME") {
		// Declared whenever offered, as go-smtp and most MTAs do: a 7-bit
		// body is valid 8BITMIME, and an undeclared 8-bit one is not.
		mail += " BODY=8BITMIME"
	}
	if env.SMTPUTF8 {
		mail += " SMTPUTF8"
	}
	t := &txReplies{}
	var err error
	if pipeline {
		err = c.pipelined(t, mail, rcpts)
	} else {
		err = c.stepwise(t, mail, rcpts)
	}
	if err != nil || t.data == nil || t.data.code != 354 {
		return t, err
	}
	var msg io.Reader = emptyReader{}
	if t.accepted() > 0 {
		msg = body()
	}
	// RFC 2920 3.1: DATA may be accepted although no recipient was; an
	// empty message ends it, and nothing is delivered.
	if err := c.sendBody(msg, dataTimeout); err != nil {
		return nil, err
	}
	final, err := c.read("end of data", dataTimeout)
	if err != nil {
		// No answer after the final dot: the peer may have the message.
		// Retrying may deliver twice, which is better than losing it.
		return nil, err
	}
	t.final = &final
	return t, nil
}

// pipelined sends MAIL, every RCPT and DATA together and reads the
// replies in order.
func (c *smtpClient) pipelined(t *txReplies, mail string, rcpts []string) error {
	cmds := make([]string, 0, len(rcpts)+2)
	cmds = append(cmds, mail)
	for _, a := range rcpts {
		cmds = append(cmds, "RCPT TO:<"+a+">")
	}
	if err := c.send(append(cmds, "DATA")...); err != nil {
		return err
	}
	var err error
	if t.mail, err = c.read("MAIL", c.cmdTimeout); err != nil {
		return err
	}
	for range rcpts {
		r, err := c.read("RCPT", c.cmdTimeout)
		if err != nil {
			return err
		}
		t.rcpt = append(t.rcpt, r)
	}
	d, err := c.read("DATA", c.cmdTimeout)
	if err != nil {
		return err
	}
	t.data = &d
	return nil
}

// stepwise sends MAIL, each RCPT and DATA waiting for each reply.
func (c *smtpClient) stepwise(t *txReplies, mail string, rcpts []string) error {
	var err error
	if t.mail, err = c.cmd(mail); err != nil || !t.mail.positive() {
		return err
	}
	for _, a := range rcpts {
		r, err := c.cmd("RCPT TO:<" + a + ">")
		if err != nil {
			return err
		}
		t.rcpt = append(t.rcpt, r)
	}
	if t.accepted() == 0 {
		return nil
	}
	d, err := c.cmd("DATA")
	if err != nil {
		return err
	}
	t.data = &d
	return nil
}

// sendBody writes the message dot-stuffed, with the final dot, within
// the DATA timeout.
func (c *smtpClient) sendBody(msg io.Reader, dataTimeout time.Duration) error {
	c.conn.SetWriteDeadline(c.until(dataTimeout))
	dw := textproto.NewWriter(c.bw).DotWriter()
	if _, err := io.Copy(dw, msg); err != nil {
		return &peerError{enhanced: enhConnection, msg: "sending the message", err: err}
	}
	if err := dw.Close(); err != nil {
		return &peerError{enhanced: enhConnection, msg: "sending the message", err: err}
	}
	if err := c.bw.Flush(); err != nil {
		return &peerError{enhanced: enhConnection, msg: "sending the message", err: err}
	}
	return nil
}

type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, io.EOF }
