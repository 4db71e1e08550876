package policy_test

import (
	"strings"
	"testing"

	"kanmon/internal/policy"
)

// fullMailbox is a mailbox at its quota.
type fullMailbox struct{}

func (fullMailbox) Quota(string) int64          { return 1000 }
func (fullMailbox) Usage(string) (int64, error) { return 1000, nil }
func (fullMailbox) Charge(string, int64)        {}

// TestRcptMailboxFull: a local recipient whose mailbox is at its quota is
// refused with the temporary 452 4.2.2, and the text names the recipient
// but none of the figures.
func TestRcptMailboxFull(t *testing.T) {
	e, _ := newCountingEngine()
	e.Mailboxes = fullMailbox{}
	v := e.Rcpt(&policy.Session{Listener: policy.ListenerMX}, mustParse(t, "user@example.org"))
	checkVerdict(t, v.Verdict, false, "rcpt.mailbox_full", 452, "4.2.2")
	if !v.Temporary() {
		t.Errorf("mailbox full is not temporary: %v", v)
	}
	if want := "<user@example.org>: mailbox full"; !strings.HasPrefix(v.Reason, want) || strings.Contains(v.Reason, "1000") {
		t.Errorf("reason %q, want it to start %q and hold no figures", v.Reason, want)
	}
}
