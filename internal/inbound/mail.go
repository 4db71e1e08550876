package inbound

import (
	"context"

	"kanmon/internal/address"
)

// Mail is what the MAIL FROM stage's checks see.
type Mail struct {
	Conn *Conn
	// Helo is the name the client gave in HELO/EHLO.
	Helo string
	From address.Addr
	// spf is CheckSPF's result, for the outcome.
	spf string
}

// MailCheck is one check of the MAIL FROM stage. The checks of the list
// run concurrently; their findings are weighed in list order.
type MailCheck func(ctx context.Context, s *Screen, m *Mail) Result

// MailChecks is the MAIL FROM stage.
var MailChecks = []MailCheck{
	CheckSenderDomain,
	CheckSPF,
}

// Mail runs the MAIL FROM stage. A client the allow list matched skips
// it.
func (s *Screen) Mail(ctx context.Context, c *Conn, helo string, from address.Addr) Outcome {
	if c.Allowed {
		return Outcome{}
	}
	m := &Mail{Conn: c, Helo: helo, From: from}
	out := s.decide(c, runAll(s.mail, func(ch MailCheck) Result { return ch(ctx, s, m) }))
	out.SPF = m.spf
	return out
}
