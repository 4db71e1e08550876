package smtpd

import (
	"context"
	"errors"
	"io"
	"net"
	"time"

	"kanmon/internal/address"
	"kanmon/internal/inbound"
)

// screening is the inbound checks' state of one MX session: the
// connection stage runs in the background from the moment the client
// connects (during the greet delay, and while the client says EHLO), and
// its outcome is given at the first MAIL.
type screening struct {
	conn   *inbound.Conn
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	out    inbound.Outcome
	// spf is the SPF result of the last MAIL stage, for the DATA stage.
	spf string
}

// screenBudget bounds the whole connection stage, every lookup included.
func (c *conn) screenBudget() time.Duration {
	return 2*c.s.cfg.DNS.Timeout.Duration + c.s.cfg.Inbound.DNSBLTimeout.Duration
}

// startScreen starts the connection stage when the inbound checks apply
// to this client (MX listener, not trusted).
func (c *conn) startScreen() {
	if c.s.d.Inbound == nil || !inbound.Applies(string(c.role), c.client()) {
		return
	}
	sc := &screening{conn: &inbound.Conn{ID: c.id, IP: c.ip, Log: c.log}, done: make(chan struct{})}
	sc.ctx, sc.cancel = context.WithCancel(context.Background())
	c.scr = sc
	go func() {
		defer close(sc.done)
		ctx, cancel := context.WithTimeout(sc.ctx, c.screenBudget())
		defer cancel()
		sc.out = c.s.d.Inbound.Connect(ctx, sc.conn)
	}()
}

// stopScreen cancels lookups still running when the session ends.
func (c *conn) stopScreen() {
	if c.scr != nil {
		c.scr.cancel()
	}
}

// greetDelay waits before the greeting and refuses a client that talks
// first (early talker). It returns false when the session must end.
func (c *conn) greetDelay() bool {
	if c.scr == nil {
		return true
	}
	scr := c.s.d.Inbound
	d := scr.GreetDelay(c.ip)
	if d <= 0 {
		return true
	}
	c.nc.SetReadDeadline(time.Now().Add(d))
	_, err := c.br.Peek(1)
	c.nc.SetReadDeadline(time.Time{})
	var ne net.Error
	switch {
	case c.closing.Load():
		c.reply(421, "4.3.2", "service shutting down, try again later")
		return false
	case errors.As(err, &ne) && ne.Timeout():
		scr.Waited(c.ip)
		return true
	case err != nil:
		if !errors.Is(err, io.EOF) {
			c.log.Info("disconnect", "reason", "read error: "+err.Error())
		}
		return false
	}
	r := scr.EarlyTalker(c.scr.conn)
	if !r.Refuses() {
		if r.Rule != "" {
			scr.Note(c.scr.conn, r)
		}
		return true
	}
	scr.Count(r)
	v := r.Verdict
	c.reject(v.Rule, v.Code, v.Enhanced, v.Reason, "action", r.Action, "delay_ms", d.Milliseconds())
	return false
}

// screenConnect gives the connection stage's outcome at MAIL: false when
// the client is refused (the reply is sent).
func (c *conn) screenConnect() bool {
	if c.scr == nil {
		return true
	}
	<-c.scr.done // bounded by screenBudget
	if o := c.scr.out; o.Refused {
		c.reject(o.Verdict.Rule, o.Verdict.Code, o.Verdict.Enhanced, o.Verdict.Reason, o.Attrs...)
		return false
	}
	return true
}

// screenMail runs the MAIL FROM stage: false when the sender is refused
// (the reply is sent).
func (c *conn) screenMail(from address.Addr) bool {
	if c.scr == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(c.scr.ctx, c.screenBudget())
	defer cancel()
	o := c.s.d.Inbound.Mail(ctx, c.scr.conn, c.helo, from)
	c.scr.spf = o.SPF
	if o.Refused {
		c.reject(o.Verdict.Rule, o.Verdict.Code, o.Verdict.Enhanced, o.Verdict.Reason, append([]any{"addr", from.String()}, o.Attrs...)...)
		return false
	}
	return true
}
