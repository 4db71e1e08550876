package smtpd

import (
	"io"
	"strings"

	"kanmon/internal/dkim"
	"kanmon/internal/queue"
)

// DKIM signing happens here, at receive time, while the message streams
// into its queue file: one pass over the message, one signature for every
// recipient and every later attempt, and the queue file still holds the
// message exactly as it is delivered (the signatures in the file's prepend
// block, read on top of it). Signing at delivery instead would read the
// file twice per attempt and sign again at each one.

// dkimSigner returns the signer for env's message, or nil when it is not
// ours to sign: only mail from our own users (authenticated, which
// includes the sendmail socket, or a trusted network) whose envelope
// sender is in a local domain with active keys.
func (c *conn) dkimSigner(env queue.Envelope) *dkim.Stream {
	if !c.s.cfg.DKIM.Sign || c.s.d.DKIM == nil || env.From == "" {
		return nil
	}
	if env.Origin != queue.OriginAuthenticated && env.Origin != queue.OriginTrusted {
		return nil
	}
	domain := strings.ToLower(c.from.Domain)
	if !c.s.d.Policy.Domains().Local[domain] {
		return nil
	}
	keys, err := c.s.d.DKIM.Active(domain)
	if err != nil {
		c.log.Warn("dkim", "op", "unsigned", "domain", domain, "reason", "keys unreadable", "err", err.Error())
		return nil
	}
	if len(keys) == 0 {
		c.log.Warn("dkim", "op", "unsigned", "domain", domain, "reason", "no active key: kanmon dkim keygen "+domain)
		return nil
	}
	st, err := dkim.NewStream(keys)
	if err != nil {
		c.log.Warn("dkim", "op", "unsigned", "domain", domain, "reason", "signer", "err", err.Error())
		return nil
	}
	return st
}

// createQueueFile opens the message's queue file and, when the message is
// signed, the signer it is streamed through as well. The returned writer
// feeds both.
func (c *conn) createQueueFile(env queue.Envelope) (*queue.Writer, *dkim.Stream, io.Writer, error) {
	sig := c.dkimSigner(env)
	if sig == nil {
		create := c.s.d.Spool.Create
		if c.msgAuthApplies() {
			create = c.s.d.Spool.CreateWithPrepend // for Authentication-Results
		}
		w, err := create(env)
		return w, nil, w, err
	}
	w, err := c.s.d.Spool.CreateWithPrepend(env)
	if err != nil {
		sig.Abort()
		return nil, nil, nil, err
	}
	// The signer never fails a write, so the queue file's own errors are
	// the ones the writer reports.
	return w, sig, io.MultiWriter(sig, w), nil
}

// finishSignature puts the signatures on top of the message before it is
// committed. A message that cannot be signed is still accepted, unsigned,
// and the reason logged: refusing our own user's mail for it would help
// no one.
func (c *conn) finishSignature(w *queue.Writer, sig *dkim.Stream) {
	if sig == nil {
		return
	}
	hdr, err := sig.Close()
	if err == nil {
		err = w.SetPrepend(hdr)
	}
	domain := strings.ToLower(c.from.Domain)
	if err != nil {
		c.log.Warn("dkim", "op", "unsigned", "queue_id", w.ID(), "domain", domain, "reason", "signing failed", "err", err.Error())
		return
	}
	c.log.Info("dkim", "op", "signed", "queue_id", w.ID(), "domain", domain, "selectors", sig.Selectors())
}
