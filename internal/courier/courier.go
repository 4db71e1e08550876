// Package courier is the seam between the scheduler and the ways a
// message leaves the queue. A Courier makes one delivery attempt for some
// recipients of one queued message and says, per recipient, what came of
// it; the scheduler decides what to do next (record, retry, report).
//
// Two couriers exist: internal/courier/local writes to local accounts'
// Maildirs, internal/courier/remote speaks SMTP to other servers (MX,
// static route, address literal or smarthost). Tests put a fake Courier
// under the scheduler to drive it without files or sockets.
//
// SECURITY: a Result carries what a sender may see (Code, Enhanced, Text:
// it ends up in a DSN and in `kanmon queue show`) apart from what only the
// operator may see (Detail: Go error text with file paths, which goes to
// the log line only).
package courier

import (
	"context"
	"strconv"
	"strings"

	"kanmon/internal/queue"
)

// Courier delivers recipients of one message.
type Courier interface {
	// Deliver makes one attempt to deliver msg to rcpts and returns one
	// Result per recipient, in the same order. It must honour ctx: when
	// ctx ends, the attempt ends soon after.
	Deliver(ctx context.Context, msg *queue.Message, rcpts []queue.Recipient) []Result
}

// Result is the outcome of one attempt for one recipient.
type Result struct {
	Rcpt string
	// OK is set when the recipient's mailbox or the next server took the
	// message.
	OK bool
	// Permanent is set on a final failure (5xx, null MX, no such domain).
	Permanent bool
	// Code and Enhanced are the peer's reply (or ours, for a local
	// decision such as a null MX); Text the reply text or a plain
	// sentence. All three may reach the sender in a DSN.
	Code     int
	Enhanced string
	Text     string
	// MX is the host that answered ("" when none was reached); TLS the
	// TLS version used ("" for plain text).
	MX  string
	TLS string
	// Detail is the underlying error for the log only (it may name
	// files); never shown to a sender.
	Detail string
}

// Reply renders the result as an SMTP-style reply line.
func (r Result) Reply() string {
	var b strings.Builder
	if r.Code != 0 {
		b.WriteString(strconv.Itoa(r.Code))
		b.WriteByte(' ')
	}
	if r.Enhanced != "" {
		b.WriteString(r.Enhanced)
		b.WriteByte(' ')
	}
	b.WriteString(r.Text)
	return b.String()
}

// All returns r for every recipient in rcpts.
func All(rcpts []string, r Result) []Result {
	out := make([]Result, len(rcpts))
	for i, a := range rcpts {
		out[i] = r
		out[i].Rcpt = a
	}
	return out
}

// Addrs returns the addresses of rcpts.
func Addrs(rcpts []queue.Recipient) []string {
	out := make([]string, len(rcpts))
	for i, r := range rcpts {
		out[i] = r.Addr
	}
	return out
}

// DomainOf returns the lower-case domain of addr ("" without an @).
func DomainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}
