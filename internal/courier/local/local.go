// Package local is the courier for recipients with a local account: it
// writes one copy per recipient into the account's Maildir (tmp/ → fsync
// → new/ → fsync, see internal/maildir) with Return-Path and Delivered-To
// on top (RFC 5321 4.4: the final delivery adds Return-Path). A message
// the DATA stage quarantined goes into the Maildir++ folder ".Junk".
//
// SECURITY: the Maildir path comes from the account resolved at RCPT time
// and validated by the directory package, never from message content. A
// failure's Go error (which names files) goes to Result.Detail, for the
// log; what a sender may see in a DSN is a plain sentence.
package local

import (
	"context"
	"errors"
	"io"
	"strings"
	"syscall"

	"kanmon/internal/courier"
	"kanmon/internal/directory"
	"kanmon/internal/maildir"
	"kanmon/internal/msgauth"
	"kanmon/internal/queue"
)

// Courier delivers to Maildirs under MailRoot.
type Courier struct {
	// MailRoot holds the accounts' Maildirs (directory.MailboxPath).
	MailRoot string
}

// Deliver writes msg into the Maildir of each recipient's account. A
// recipient without an account is deferred (the scheduler never sends
// one here). The writes are short and bounded by the disk, so an attempt
// runs to its end even when ctx ends: a clean stop then records every
// copy written, and none is delivered twice after the restart.
func (c *Courier) Deliver(_ context.Context, msg *queue.Message, rcpts []queue.Recipient) []courier.Result {
	out := make([]courier.Result, len(rcpts))
	for i, r := range rcpts {
		out[i] = c.deliverOne(msg, r)
	}
	return out
}

func (c *Courier) deliverOne(msg *queue.Message, r queue.Recipient) courier.Result {
	if r.Account == "" {
		return courier.Result{Rcpt: r.Addr, Code: 451, Enhanced: "4.3.0", Text: "no local mailbox for this recipient", Detail: "local: recipient without an account"}
	}
	dir := maildir.Dir(directory.MailboxPath(c.MailRoot, r.Account))
	if quarantined(msg) {
		dir = dir.Folder(JunkFolder)
	}
	var head strings.Builder
	head.WriteString("Return-Path: <")
	head.WriteString(msg.Envelope.From)
	head.WriteString(">\r\nDelivered-To: ")
	head.WriteString(r.Account)
	head.WriteString("\r\n")
	name, err := dir.Deliver(io.MultiReader(strings.NewReader(head.String()), msg.Body()))
	if err != nil {
		return failure(r.Addr, err)
	}
	return courier.Result{Rcpt: r.Addr, OK: true, Text: "delivered to Maildir " + name}
}

// JunkFolder is the Maildir++ folder (".Junk") that gets a message the
// DATA stage quarantined (a DMARC p=quarantine failure).
const JunkFolder = "Junk"

// quarantined reports whether msg carries our quarantine mark. Only the
// prepend block is read, which only kanmon writes: a sender cannot put
// its message into the Junk folder, nor out of it.
func quarantined(msg *queue.Message) bool {
	p, err := msg.Prepend()
	return err == nil && msgauth.Quarantined(p)
}

// failure turns a Maildir error into a reply a person can read; the
// error itself, with its paths, is kept for the log only.
func failure(rcpt string, err error) courier.Result {
	res := courier.Result{Rcpt: rcpt, Code: 451, Enhanced: "4.2.0",
		Text: "the recipient's mailbox could not be written; delivery is retried", Detail: err.Error()}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		res.Code, res.Enhanced, res.Text = 452, "4.3.1", "the mail system is out of storage; delivery is retried"
	}
	return res
}
