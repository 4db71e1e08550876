package policy_test

import (
	"testing"

	"kanmon/internal/address"
	"kanmon/internal/policy"
)

// TestMailStage: the MAIL FROM checks of NewEngine, one row per rule and
// per way around it: authentication required on submission and smtps,
// the sender binding of authenticated users, forged local senders on MX.
func TestMailStage(t *testing.T) {
	e, _ := newCountingEngine()
	anon := policy.Client{}
	authed := policy.Client{Authenticated: true}
	for _, c := range []struct {
		name     string
		s        policy.Session
		from     string
		accept   bool
		rule     string
		code     int
		enhanced string
	}{
		{"submission without AUTH", policy.Session{Client: anon, Listener: policy.ListenerSubmission}, "user@example.org", false, "sender.auth_required", 530, "5.7.0"},
		{"smtps without AUTH", policy.Session{Client: anon, Listener: policy.ListenerSMTPS}, "user@example.org", false, "sender.auth_required", 530, "5.7.0"},
		{"submission with AUTH, own address", policy.Session{Client: authed, Listener: policy.ListenerSubmission, AuthUser: "user@example.org"}, "user@example.org", true, "mail.ok", 250, "2.1.0"},
		{"smtps with AUTH, own address", policy.Session{Client: authed, Listener: policy.ListenerSMTPS, AuthUser: "user@example.org"}, "user@example.org", true, "mail.ok", 250, "2.1.0"},
		{"AUTH, someone else's address", policy.Session{Client: authed, Listener: policy.ListenerSubmission, AuthUser: "user@example.org"}, "other@example.org", false, "sender.binding", 553, "5.7.1"},
		{"AUTH, null sender", policy.Session{Client: authed, Listener: policy.ListenerSubmission, AuthUser: "user@example.org"}, "", false, "sender.binding", 553, "5.7.1"},
		{"MX, stranger claims our domain", policy.Session{Client: anon, Listener: policy.ListenerMX}, "user@example.org", false, "sender.forged_local", 550, "5.7.1"},
		{"MX, stranger from elsewhere", policy.Session{Client: anon, Listener: policy.ListenerMX}, "someone@remote.test", true, "mail.ok", 250, "2.1.0"},
		{"MX, null sender", policy.Session{Client: anon, Listener: policy.ListenerMX}, "", true, "mail.ok", 250, "2.1.0"},
		{"MX, trusted network, our domain", policy.Session{Client: policy.Client{Trusted: true}, Listener: policy.ListenerMX}, "user@example.org", true, "mail.ok", 250, "2.1.0"},
		{"MX, POP-before-SMTP, our domain", policy.Session{Client: policy.Client{PopBeforeSMTP: true}, Listener: policy.ListenerMX}, "user@example.org", true, "mail.ok", 250, "2.1.0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := c.s
			from := address.Addr{} // <>
			if c.from != "" {
				from = mustParse(t, c.from)
			}
			v := e.Mail(&s, from)
			checkVerdict(t, v, c.accept, c.rule, c.code, c.enhanced)
			if got, want := v.Temporary(), c.code/100 == 4; got != want {
				t.Errorf("Temporary() = %v for %d", got, c.code)
			}
		})
	}
}

// TestForgedLocalSenderSwitchedOff: with reject_forged_local_sender off,
// a stranger on MX may use our domain as sender.
func TestForgedLocalSenderSwitchedOff(t *testing.T) {
	e := policy.NewEngine(testDomains, &countingDir{accounts: map[string]string{}, resolves: map[string]int{}}, false)
	v := e.Mail(&policy.Session{Listener: policy.ListenerMX}, mustParse(t, "user@example.org"))
	checkVerdict(t, v, true, "mail.ok", 250, "2.1.0")
}

// TestVerdictTemporary: only 4xx replies are temporary.
func TestVerdictTemporary(t *testing.T) {
	for code, want := range map[int]bool{250: false, 421: true, 452: true, 499: true, 500: false, 550: false, 399: false} {
		if got := (policy.Verdict{Code: code}).Temporary(); got != want {
			t.Errorf("Verdict{Code: %d}.Temporary() = %v, want %v", code, got, want)
		}
	}
}

// chargeLog records Charge calls.
type chargeLog struct {
	quotaOf
	charged map[string]int64
}

func (c *chargeLog) Charge(account string, n int64) { c.charged[account] += n }

// TestCharge: an accepted message is counted against its account's
// mailbox; a message without a local account charges nothing.
func TestCharge(t *testing.T) {
	e, _ := newCountingEngine()
	c := &chargeLog{charged: map[string]int64{}}
	e.Mailboxes = c
	e.Charge("user@example.org", 1000)
	e.Charge("", 500)
	if len(c.charged) != 1 || c.charged["user@example.org"] != 1000 {
		t.Errorf("charged %v, want user@example.org 1000 only", c.charged)
	}
	e.Mailboxes = nil
	e.Charge("user@example.org", 1) // no mailboxes: nothing to charge, no panic
}
