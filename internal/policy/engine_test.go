package policy_test

import (
	"strings"
	"sync"
	"testing"

	"kanmon/internal/policy"
)

// countingDir is a directory of fixed accounts that counts its lookups.
type countingDir struct {
	mu       sync.Mutex
	accounts map[string]string // address -> account
	resolves map[string]int
}

func (d *countingDir) Resolve(addr string) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.resolves[addr]++
	a, ok := d.accounts[strings.ToLower(addr)]
	return a, ok
}

func (d *countingDir) MaySendAs(account, addr string) bool { return account == addr }

// quotaOf gives every account a quota and no usage.
type quotaOf struct{}

func (quotaOf) Quota(string) int64          { return 1 << 20 }
func (quotaOf) Usage(string) (int64, error) { return 0, nil }
func (quotaOf) Charge(string, int64)        {}

func newCountingEngine() (*policy.Engine, *countingDir) {
	dir := &countingDir{accounts: map[string]string{
		"user@example.org":       "user@example.org",
		"postmaster@example.org": "user@example.org",
	}, resolves: map[string]int{}}
	e := policy.NewEngine(testDomains, dir, true)
	e.Mailboxes = quotaOf{}
	return e, dir
}

// TestRcptAsksTheDirectoryOnce: the directory is asked once per local
// recipient, whatever the checks that need its account (existence,
// quota), and never for other recipients; the verdict carries what was
// learnt.
func TestRcptAsksTheDirectoryOnce(t *testing.T) {
	e, dir := newCountingEngine()
	s := &policy.Session{Listener: policy.ListenerMX}

	v := e.Rcpt(s, mustParse(t, "postmaster@example.org"))
	checkVerdict(t, v.Verdict, true, "rcpt.local", 250, "2.1.5")
	if v.Account != "user@example.org" || v.Class != policy.RcptLocal {
		t.Errorf("verdict carries account %q, class %v; want user@example.org, local", v.Account, v.Class)
	}
	v = e.Rcpt(s, mustParse(t, "nobody@example.org"))
	checkVerdict(t, v.Verdict, false, "rcpt.unknown", 550, "5.1.1")
	v = e.Rcpt(s, mustParse(t, relayRcpt))
	checkVerdict(t, v.Verdict, true, "relay.relay_domain", 250, "2.1.5")
	if v.Account != "" || v.Class != policy.RcptRelayDomain {
		t.Errorf("relay-domain verdict carries account %q, class %v", v.Account, v.Class)
	}
	s.Client.Authenticated = true
	v = e.Rcpt(s, mustParse(t, remoteRcpt))
	checkVerdict(t, v.Verdict, true, "relay.authenticated", 250, "2.1.5")
	if v.Class != policy.RcptRemote {
		t.Errorf("remote verdict class %v", v.Class)
	}

	want := map[string]int{"postmaster@example.org": 1, "nobody@example.org": 1}
	for addr, n := range dir.resolves {
		if want[addr] != n {
			t.Errorf("directory asked %d times for %s, want %d", n, addr, want[addr])
		}
	}
	if len(dir.resolves) != len(want) {
		t.Errorf("directory lookups %v, want %v", dir.resolves, want)
	}
}

// TestRcptFailsClosedWithoutRelayCheck: a check list that lost the relay
// rule or the recipient lookup refuses (temporarily) rather than relay.
func TestRcptFailsClosedWithoutRelayCheck(t *testing.T) {
	e, _ := newCountingEngine()
	e.RcptChecks = []policy.RcptCheck{policy.CheckLocalRecipient}
	v := e.Rcpt(&policy.Session{}, mustParse(t, remoteRcpt))
	checkVerdict(t, v.Verdict, false, "policy.incomplete", 451, "4.3.0")
	e.RcptChecks = []policy.RcptCheck{policy.CheckRelay}
	v = e.Rcpt(&policy.Session{}, mustParse(t, localRcpt))
	checkVerdict(t, v.Verdict, false, "policy.incomplete", 451, "4.3.0")
}
