package policy

// Mailboxes answers the mailbox quota questions (directory.Mailboxes).
type Mailboxes interface {
	// Quota returns the account's mailbox quota in octets; 0 means none.
	Quota(account string) int64
	// Usage returns the octets the account's mailbox holds; the figure
	// may be a few seconds old.
	Usage(account string) (int64, error)
	// Charge counts an accepted message of n octets against the account
	// before it is delivered.
	Charge(account string, n int64)
}

// CheckMailboxQuota refuses a local recipient whose mailbox is full with
// 452 4.2.2, a temporary error: the sender retries, and the mail arrives
// once the owner makes room. It is said at RCPT, never as a bounce later
// (law 3). A mailbox is full when its usage has reached the quota, or
// when the size the client announced with SIZE= would take it past the
// quota. Without SIZE= a message is accepted while the mailbox is below
// its quota, so a mailbox can end up over its quota by at most one
// message per transaction in flight (max_message_size each).
func CheckMailboxQuota(e *Engine, s *Session, r *Recipient) (Verdict, bool) {
	// The account is CheckLocalRecipient's: the directory is asked once.
	account := r.Account
	if e.Mailboxes == nil || r.Class != RcptLocal || account == "" {
		return Verdict{}, false
	}
	quota := e.Mailboxes.Quota(account)
	if quota <= 0 {
		return Verdict{}, false
	}
	used, err := e.Mailboxes.Usage(account)
	if err != nil {
		// An unreadable Maildir fails at delivery, where it is retried
		// and logged; the quota check does not guess.
		return Verdict{}, false
	}
	if used >= quota || s.Size > 0 && used+s.Size > quota {
		// The reply says nothing of the figures: a stranger learns only
		// that the mailbox is full, which the sender needs to know.
		return Rejected("rcpt.mailbox_full", 452, "4.2.2", "<"+r.Addr.String()+">: mailbox full, try again later"), true
	}
	return Verdict{}, false
}

// Charge counts an accepted message against the mailbox of a local
// account, so the next RCPT sees it before delivery does.
func (e *Engine) Charge(account string, n int64) {
	if e.Mailboxes != nil && account != "" {
		e.Mailboxes.Charge(account, n)
	}
}
